"""Decision regions for 2D data, like TensorFlow Playground's output map: each model's predicted
class over the plane, paler where it is unsure, with the training points on top.

Input: the record's ``regions()`` grids ({"x": [lo, hi], "y": [lo, hi], "n": N, "classes": N*N,
"confidence": N*N}) and the points. The map is one heatmap of one byte per cell: class k with
confidence c is coded k*LEVELS + shade, and a stepped colour scale turns the code back into the
class colour, faded toward white as the confidence drops to chance.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from dashboard.charts import base_layout, f32, figure, panel_title, side_by_side

CLASS_COLORS = ("#F59322", "#0877BD", "#2CA02C", "#9467BD", "#D62728",
                "#8C564B", "#E377C2", "#17BECF", "#BCBD22", "#7F7F7F")
MAX_POINTS = 500  # per map: enough to see the data, light enough to send every refresh


def class_color(k: int) -> str:
    return CLASS_COLORS[k % len(CLASS_COLORS)]


def _mix(hex_color: str, white: float) -> str:
    rgb = [int(hex_color[i:i + 2], 16) for i in (1, 3, 5)]
    return "rgb({},{},{})".format(*(round(c + (255 - c) * white) for c in rgb))


def levels_for(n_classes: int) -> int:
    return max(2, min(25, 256 // max(n_classes, 1)))


def region_codes(grid: dict[str, Any], n_classes: int) -> np.ndarray:
    """(N, N) uint8 codes, row = y: class * LEVELS + how far confidence is above chance."""
    n, levels = int(grid["n"]), levels_for(n_classes)
    cls = np.asarray(grid["classes"], dtype=np.int64).reshape(n, n)
    conf = np.asarray(grid["confidence"], dtype=np.float64).reshape(n, n)
    chance = 1.0 / max(n_classes, 2)
    shade = np.clip((conf - chance) / (1 - chance), 0, 1)
    return (cls * levels + np.round(shade * (levels - 1))).astype(np.uint8)


def region_colorscale(n_classes: int) -> list[list]:
    """For each class a band from a faint tint (unsure) to a strong tint (sure)."""
    levels = levels_for(n_classes)
    top = n_classes * levels - 1
    scale = []
    for k in range(n_classes):
        lo, hi = k * levels / top, (k * levels + levels - 1) / top
        scale += [[lo, _mix(class_color(k), 0.92)], [min(hi, 1.0), _mix(class_color(k), 0.45)]]
    return scale


def sample_points(x: np.ndarray, y: np.ndarray, limit: int = MAX_POINTS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= limit:
        return np.asarray(x), np.asarray(y)
    keep = np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False))
    return np.asarray(x)[keep], np.asarray(y)[keep]


def regions_figure(regions: dict[str, tuple[int, dict[str, Any]]], points: np.ndarray, labels: np.ndarray,
                   n_classes: int, models: list[str] | None = None, height: int = 360) -> go.Figure:
    """One map per model, side by side, the same training points on each."""
    models = [m for m in (models or list(regions)) if m in regions]
    domains = side_by_side(max(len(models), 1), gap=0.03)
    px, py = sample_points(points, labels)
    px = f32(np.round(px, 3))
    data, layout = [], base_layout(height, legend=False, annotations=[])
    for i, model in enumerate(models):
        step, grid = regions[model]
        n = int(grid["n"])
        axis = "" if i == 0 else str(i + 1)
        data.append(dict(
            type="heatmap", x=f32(np.linspace(*grid["x"], n)), y=f32(np.linspace(*grid["y"], n)),
            z=region_codes(grid, n_classes), zmin=0, zmax=n_classes * levels_for(n_classes) - 1,
            colorscale=region_colorscale(n_classes), showscale=False, hoverinfo="skip", name=model,
            xaxis=f"x{axis}", yaxis=f"y{axis}"))
        for k in range(n_classes):
            mask = py == k
            data.append(dict(
                type="scatter", x=px[mask, 0], y=px[mask, 1], mode="markers", name=f"class {k}", showlegend=False,
                marker=dict(size=5, color=class_color(k), line=dict(width=0.6, color="white")), hoverinfo="skip",
                xaxis=f"x{axis}", yaxis=f"y{axis}"))
        bare = dict(showticklabels=False, showgrid=False, zeroline=False, ticks="", constrain="domain")
        layout[f"xaxis{axis}"] = dict(domain=domains[i], anchor=f"y{axis}", range=list(grid["x"]), **bare)
        layout[f"yaxis{axis}"] = dict(anchor=f"x{axis}", range=list(grid["y"]), scaleanchor=f"x{axis}",
                                      scaleratio=1, **bare)
        layout["annotations"].append(panel_title(f"{model} · step {step}", domains[i]))
    return figure(data, layout)
