"""The chart builders, on the record of a small real run (no mocks, no browser)."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch

import dashboard.charts as charts
import dashboard.charts.layers as charts_layers
import dashboard.charts.regions as charts_regions
from dashboard.panels.live import first, latest
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.analysis.recorders import standard
from resnet_core.records import RunRecord
from resnet_core.settings import Settings

MODELS = ("plain-4", "plain-10", "resnet-10")


@pytest.fixture(scope="module")
def run():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny layers: a second intra-op thread only fights other processes for the cores
    settings = Settings(models=MODELS, width=8, steps=12, eval_every=3, probe_every=2, paths_every=0,
                        dataset_args={"n": 300})
    try:
        trainer = LockstepTrainer(settings, recorders=standard())
        trainer.run()
    finally:
        torch.set_num_threads(threads)
    return trainer


def traces_of(fig: go.Figure, kind: str) -> list:
    go.Figure(fig.to_dict())  # the builders skip plotly's validation for speed: validate here
    return [t for t in fig.data if t.type == kind]


def test_error_figure_has_train_and_test_per_model_on_one_chart(run):
    metrics = run.record.metrics_frame()
    fig = charts.error_figure(metrics, list(MODELS))
    lines = traces_of(fig, "scatter")
    assert [(t.name, t.line.dash) for t in lines] == [(m, d) for m in MODELS for d in ("solid", "dash")]
    train = lines[0]
    rows = metrics[metrics["model"] == "plain-4"]
    assert list(train.x) == list(rows["step"])
    assert np.allclose(train.y, rows["train_error"] * 100, atol=1e-3)  # percent
    assert tuple(fig.layout.yaxis.range) == (0, 100)
    assert fig.layout.xaxis.title.text == "step"


def test_same_model_has_the_same_colour_and_families_differ(run):
    colors = charts.model_colors(list(MODELS))
    assert len(set(colors.values())) == 3
    assert colors["plain-4"] in charts.PLAIN_COLORS and colors["resnet-10"] in charts.RESNET_COLORS
    fig = charts.error_figure(run.record.metrics_frame(), list(MODELS))
    assert {t.line.color for t in fig.data if t.name == "plain-10"} == {colors["plain-10"]}


def test_loss_figure_is_log_scale(run):
    fig = charts.loss_figure(run.record.metrics_frame(), list(MODELS))
    traces_of(fig, "scatter")
    assert fig.layout.yaxis.type == "log"
    assert [t.name for t in fig.data] == list(MODELS)


def test_cards_show_latest_error_and_change():
    record = RunRecord()
    record.add_metrics([
        {"step": 0, "model": "a", "train_loss": 1, "train_error": 0.6, "test_error": 0.6, "wall_s": 0, "status": "ok"},
        {"step": 10, "model": "a", "train_loss": 1, "train_error": 0.25, "test_error": 0.3, "wall_s": 1, "status": "ok"},
        {"step": 0, "model": "b", "train_loss": 1, "train_error": 0.7, "test_error": 0.7, "wall_s": 0, "status": "ok"},
        {"step": 7, "model": "b", "train_loss": math.nan, "train_error": math.nan, "test_error": math.nan,
         "wall_s": 1, "status": "diverged"},
    ])
    a, b = charts.model_cards(record.metrics_frame(), ["a", "b"])
    assert (a.value, a.delta) == ("25.0 %", "-35.0 pts")
    assert b.value == "diverged at step 7" and b.delta is None
    assert charts.separation([a, b]) is None  # a diverged model is not a separation


def test_diverged_model_gets_a_marker(run):
    metrics = run.record.metrics_frame()
    bad = metrics.iloc[:1].copy()
    bad[["model", "status", "step"]] = ["plain-10", "diverged", 5]
    import pandas as pd

    fig = charts.error_figure(pd.concat([metrics, bad]), list(MODELS))
    markers = [t for t in fig.data if t.mode == "markers+text"]
    assert len(markers) == 1 and list(markers[0].x) == [5] and "diverged" in markers[0].text[0]


def test_gradient_heatmaps_one_per_model_log_colour_shared(run):
    record = run.record
    matrices = {m: record.layer_matrix(m, "grad_norm") for m in MODELS}
    fig = charts_layers.gradient_heatmaps(matrices)
    maps = traces_of(fig, "heatmap")
    assert [t.name for t in maps] == list(MODELS)
    assert {t.coloraxis for t in maps} == {"coloraxis"}
    steps, values = matrices["plain-10"]
    z = np.asarray(maps[1].z)
    assert z.shape == (values.shape[1], len(steps))  # layer x step
    assert np.allclose(z, np.log10(values.T), atol=0.01)  # log10 of the norms
    ticks = fig.layout.coloraxis.colorbar.ticktext
    assert [a.text for a in fig.layout.annotations] == list(MODELS)  # a title over each panel
    assert all(t == "1" or t.startswith("1e") for t in ticks)


def test_heatmap_of_a_very_deep_net_is_thinned_to_the_cell_budget():
    steps = np.arange(500)
    values = np.exp(np.random.default_rng(0).normal(size=(500, 1002)))
    fig = charts_layers.gradient_heatmaps({"resnet-1002": (steps, values)}, max_cells=6000)
    z = np.asarray(traces_of(fig, "heatmap")[0].z)
    assert z.size <= 6000 and z.shape[0] < 1002
    assert len(pio.to_json(fig, validate=False)) < 45_000  # what one refresh sends for this panel


def test_profiles_overlay_models_on_a_log_axis(run):
    profiles = latest(run.record, list(MODELS), "grad_norm")
    fig = charts_layers.profile_figure(profiles, "grad")
    traces_of(fig, "scatter")
    assert fig.layout.yaxis.type == "log"
    assert [len(t.y) for t in fig.data] == [4, 10, 10]  # one point per weighted layer
    assert all(name.startswith(m) for name, m in zip((t.name for t in fig.data), MODELS))


def test_response_std_can_be_sorted_by_magnitude(run):
    stds = latest(run.record, list(MODELS), "act_std")
    fig = charts_layers.profile_figure(stds, "std", sort=True)
    for trace in fig.data:
        y = np.asarray(trace.y)
        assert np.all(np.diff(y[np.isfinite(y)]) <= 1e-6)


def test_branch_ratio_has_one_point_per_residual_block(run):
    now = {m: (s, charts_layers.block_values(v)) for m, (s, v) in latest(run.record, ["resnet-10"], "branch_ratio").items()}
    start = {m: (s, charts_layers.block_values(v)) for m, (s, v) in first(run.record, ["resnet-10"], "branch_ratio").items()}
    fig = charts_layers.branch_ratio_figure(now, start)
    traces_of(fig, "scatter")
    assert [len(t.x) for t in fig.data] == [4, 4]  # resnet-10 = stem + 4 two-layer blocks + head
    assert fig.data[1].line.dash == "dot" and "step 0" in fig.data[1].name
    assert all(v > 0 for v in fig.data[0].y)


def test_decision_regions_map_and_points(run):
    data = run.data
    maps = run.record.regions()
    fig = charts_regions.regions_figure(maps, data.x_train.numpy(), data.y_train.numpy(), data.n_classes, list(MODELS))
    heat = traces_of(fig, "heatmap")
    assert [t.name for t in heat] == list(MODELS)
    assert [a.text.split(" · ")[0] for a in fig.layout.annotations] == list(MODELS)
    on_second = [t for t in fig.data if t.yaxis == "y2"]  # the second model's map and its points
    assert [t.name for t in on_second] == ["plain-10"] + [f"class {k}" for k in range(data.n_classes)]
    n = maps["plain-4"][1]["n"]
    codes = np.asarray(heat[0].z)
    assert codes.shape == (n, n) and codes.dtype == np.uint8
    classes = np.asarray(maps["plain-4"][1]["classes"]).reshape(n, n)
    assert np.array_equal(codes // charts_regions.levels_for(data.n_classes), classes)
    points = traces_of(fig, "scatter")
    assert len(points) == len(MODELS) * data.n_classes
    assert sum(len(t.x) for t in points[:data.n_classes]) == min(len(data.x_train), charts_regions.MAX_POINTS)


def test_region_codes_fade_toward_chance():
    grid = {"n": 2, "x": [0, 1], "y": [0, 1], "classes": [0, 1, 2, 0], "confidence": [1.0, 1 / 3, 0.9, 0.5]}
    codes = charts_regions.region_codes(grid, 3)
    levels = charts_regions.levels_for(3)
    assert codes[0, 0] == levels - 1            # class 0, certain: the strongest shade
    assert codes[0, 1] == levels                # class 1 at chance: its palest shade
    assert 2 * levels < codes[1, 0] < 3 * levels
