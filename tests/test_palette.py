"""Colour is never the only cue, and the colours survive colour-vision deficiency: on every chart
that draws one series per model, each pair of models stays distinguishable when deuteranopia,
protanopia and tritanopia are simulated (colorspacious, full severity, distance in CAM02-UCS), and
also differs by marker or dash."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from colorspacious import cspace_convert, deltaE

from dashboard import charts
from dashboard.charts.layers import branch_ratio_figure, profile_figure
from dashboard.charts.paths import lesion_figure
from resnet_core.settings import MAX_MODELS

DEFICIENCIES = ("deuteranomaly", "protanomaly", "tritanomaly")  # at severity 100: -opia
MIN_DELTA_E = 10.0  # CAM02-UCS; about 1 is a just-noticeable difference, 10 is plain at a glance

LINEUPS = {
    "degradation": ["plain-20", "plain-56", "resnet-56"],
    "mixed six": ["plain-8", "plain-20", "plain-56", "resnet-8", "resnet-20", "resnet-56"],
    "six plain": [f"plain-{d}" for d in (8, 14, 20, 32, 44, 56)],
    "six residual": [f"resnet-{d}" for d in (8, 14, 20, 32, 44, 56)],
}


def rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)]) / 255


def seen_with(hex_color: str, deficiency: str) -> np.ndarray:
    simulated = cspace_convert(rgb(hex_color), {"name": "sRGB1+CVD", "cvd_type": deficiency, "severity": 100}, "sRGB1")
    return np.clip(simulated, 0, 1)


def metrics_for(models):
    rows = [{"step": s, "model": m, "train_loss": 1.0 / (s + 1 + i), "train_error": 0.5 / (s + 1 + i),
             "test_error": 0.6 / (s + 1 + i), "wall_s": 0.0, "status": "ok"} for i, m in enumerate(models) for s in (0, 5, 10)]
    return pd.DataFrame(rows)


def figures_for(models):
    profiles = {m: (10, np.linspace(1, 2, 8) * (i + 1)) for i, m in enumerate(models)}
    lesion = pd.DataFrame([{"model": m, "block": b, "train_error": 0.1 * (i + 1)} for i, m in enumerate(models)
                           for b in (-1, 0, 1, 2)])
    return {"error": charts.error_figure(metrics_for(models), models),
            "loss": charts.loss_figure(metrics_for(models), models),
            "profile": profile_figure(profiles, "‖∂L/∂W‖"),
            "branch ratio": branch_ratio_figure(profiles),
            "lesion": lesion_figure(lesion)}


def series(fig) -> dict[str, tuple[str, str, str]]:
    """Each model's (colour, marker, dash), from its first trace in the legend."""
    out = {}
    for trace in fig.to_dict()["data"]:
        model = trace["name"].split(" (step")[0]
        if model not in out and trace.get("showlegend", True) is not False:
            line, marker = trace.get("line", {}), trace.get("marker", {})
            has_marker = "markers" in trace.get("mode", "")
            out[model] = (line["color"], marker.get("symbol", "circle") if has_marker else "none", line.get("dash", "solid"))
    return out


@pytest.mark.parametrize("lineup", list(LINEUPS))
def test_every_pair_of_series_stays_apart_for_colour_blind_eyes(lineup):
    models = LINEUPS[lineup]
    assert len(models) <= MAX_MODELS
    for name, fig in figures_for(models).items():
        drawn = series(fig)
        assert set(drawn) == set(models), name
        for (a, (ca, ma, da)), (b, (cb, mb, db)) in itertools.combinations(drawn.items(), 2):
            assert (ma, da) != (mb, db), f"{name}: {a} and {b} differ by colour alone"
            for deficiency in DEFICIENCIES:
                distance = deltaE(seen_with(ca, deficiency), seen_with(cb, deficiency), input_space="sRGB1")
                assert distance >= MIN_DELTA_E, f"{name}: {a} {ca} and {b} {cb} look alike with {deficiency} ({distance:.1f})"


def test_the_check_would_catch_the_old_reds():
    """The family shades the app drew before: two of its reds merge for a deuteranope."""
    old_plain = ("#F4A259", "#E4572E", "#A4243B", "#6B2737", "#D1495B", "#8F2D56")
    worst = min(deltaE(seen_with(a, "deuteranomaly"), seen_with(b, "deuteranomaly"), input_space="sRGB1")
                for a, b in itertools.combinations(old_plain, 2))
    assert worst < MIN_DELTA_E


def test_a_model_keeps_its_colour_and_marker_in_every_panel():
    models = LINEUPS["mixed six"]
    drawn = [series(fig) for fig in figures_for(models).values()]
    for m in models:
        assert len({d[m][0] for d in drawn}) == 1 and len({d[m][1] for d in drawn}) == 1, m
    assert charts.model_colors(["plain-56", "plain-20"]) == charts.model_colors(["plain-20", "plain-56"])
