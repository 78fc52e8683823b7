"""Per-layer chart builders: gradient norms (heatmap of layer x step, latest profile), the spread of
every layer's response (He et al. 2015, Fig. 7) and the size of each residual branch, ||F(x)||/||x||.

Inputs are the record's matrices (``RunRecord.layer_matrix``: steps and values[step, layer]) or
single snapshots, outputs plotly figures. Heatmaps are the heavy part of a live page: they are
sent as log10 in float32, thinned to a cell budget shared by all models, on one colour scale.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import plotly.graph_objects as go

from dashboard.charts import (MARKERS, base_layout, f32, figure, i32, model_colors, model_symbols, panel_title,
                              side_by_side)

HEATMAP_CELLS = 8000   # all models together, per refresh: ~43 KB as base64 float32
TINY = 1e-30           # norms at or below this are drawn as "vanished", not as -inf


def log10_safe(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(np.where(v > TINY, v, TINY))
    out[~np.isfinite(v)] = np.nan
    return out


def thin(steps: np.ndarray, logs: np.ndarray, max_cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, layer centres, logs) with at most ``max_cells`` cells: layers are averaged in groups
    (a mean of logs: the geometric mean of the norms) once a net is too deep to draw every layer,
    then steps are evenly subsampled."""
    n_steps, n_layers = logs.shape if logs.ndim == 2 else (0, 0)
    layers = np.arange(n_layers, dtype=np.float64)
    max_layers = max(16, int(math.sqrt(max_cells * 2)))
    if n_layers > max_layers and n_steps:
        groups = np.array_split(np.arange(n_layers), max_layers)
        with warnings.catch_warnings():  # a group that is all NaN (a diverged step) stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            logs = np.stack([np.nanmean(logs[:, g], axis=1) for g in groups], 1)
        layers = np.array([g.mean() for g in groups])
    max_steps = max(8, max_cells // max(len(layers), 1))
    if n_steps > max_steps:
        keep = np.unique(np.linspace(0, n_steps - 1, max_steps).round().astype(int))
        steps, logs = steps[keep], logs[keep]
    return steps, layers, logs


def shared_log_range(matrices: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """One colour range for all models (2nd to 98th percentile of log10), so colours compare."""
    logs = [log10_safe(v).ravel() for _, v in matrices.values() if np.size(v)]
    finite = np.concatenate(logs) if logs else np.array([])
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return -3.0, 1.0
    lo, hi = np.percentile(finite, [2, 98])
    if hi - lo < 1:
        mid = (hi + lo) / 2
        lo, hi = mid - 0.5, mid + 0.5
    return float(math.floor(lo * 2) / 2), float(math.ceil(hi * 2) / 2)


def _decade_ticks(lo: float, hi: float) -> dict:
    step = max(1, int(math.ceil((hi - lo) / 8)))
    ticks = list(range(int(math.ceil(lo)), int(math.floor(hi)) + 1, step))
    return dict(tickvals=ticks, ticktext=[f"1e{t}" if t else "1" for t in ticks])


def gradient_heatmaps(matrices: dict[str, tuple[np.ndarray, np.ndarray]], quantity: str = "‖∂L/∂W‖",
                      height: int = 360, max_cells: int = HEATMAP_CELLS) -> go.Figure:
    """One heatmap per model (layer up, step across), log colour shared by all of them. The cell
    budget is split between the models in proportion to their depth."""
    models = list(matrices)
    lo, hi = shared_log_range(matrices)
    domains = side_by_side(max(len(models), 1))
    depth = {m: max(np.shape(v)[1] if np.ndim(v) == 2 else 1, 1) for m, (_, v) in matrices.items()}
    total = sum(depth.values()) or 1
    data, layout = [], base_layout(height, legend=False, annotations=[])
    for i, model in enumerate(models):
        steps, values = matrices[model]
        budget = max(200, int(max_cells * depth[model] / total))
        steps, layers, logs = thin(np.asarray(steps), log10_safe(values), budget)
        axis = "" if i == 0 else str(i + 1)
        data.append(dict(
            type="heatmap", x=i32(steps), y=f32(layers), z=f32(logs.T) if logs.size else f32(np.empty((0, 0))),
            coloraxis="coloraxis", name=model, xaxis=f"x{axis}", yaxis=f"y{axis}",
            hovertemplate=f"{model}<br>step %{{x}}<br>layer %{{y:.0f}}<br>log10 {quantity} = %{{z:.2f}}<extra></extra>"))
        layout[f"xaxis{axis}"] = dict(domain=domains[i], anchor=f"y{axis}", title=dict(text="step"))
        layout[f"yaxis{axis}"] = dict(anchor=f"x{axis}", title=dict(text="layer (input → output)" if i == 0 else ""))
        layout["annotations"].append(panel_title(model, domains[i]))
    layout["coloraxis"] = dict(colorscale="Viridis", cmin=lo, cmax=hi, colorbar=dict(
        title=dict(text=quantity, side="top"), thickness=14, **_decade_ticks(lo, hi)))
    return figure(data, layout)


def profile_figure(profiles: dict[str, tuple[int, np.ndarray]], y_title: str, log_y: bool = True,
                   sort: bool = False, height: int = 360) -> go.Figure:
    """The latest value of every layer, all models overlaid: x = layer (input to output), or the
    layers sorted by magnitude (``sort``, the lower plot of the paper's Fig. 7)."""
    colors, symbols = model_colors(list(profiles)), model_symbols(list(profiles))
    data = []
    for model, (step, values) in profiles.items():
        y = np.asarray(values, dtype=np.float64)
        if sort:
            y = np.sort(y[np.isfinite(y)])[::-1]
        if log_y:
            y = np.where(y > TINY, y, np.nan)
        data.append(dict(
            type="scatter", x=i32(np.arange(len(y))), y=f32(y), mode="lines+markers", name=f"{model} (step {step})",
            line=dict(color=colors[model], width=2.2), marker=dict(symbol=symbols[model], size=6, maxdisplayed=MARKERS), hovertemplate=f"{model}<br>layer %{{x}}: %{{y:.3g}}<extra></extra>"))
    return figure(data, base_layout(
        height, yaxis=dict(title=dict(text=y_title), type="log" if log_y else "linear", exponentformat="power"),
        xaxis=dict(title=dict(text="layers sorted by magnitude" if sort else "layer (input → output)"))))


def block_values(snapshot_ratio: np.ndarray) -> np.ndarray:
    """The per-block values of a snapshot's branch_ratio (NaN on layers that end no block)."""
    r = np.asarray(snapshot_ratio, dtype=np.float64)
    return r[~np.isnan(r)]


def branch_ratio_figure(latest: dict[str, tuple[int, np.ndarray]], initial: dict[str, tuple[int, np.ndarray]] | None = None,
                        height: int = 340) -> go.Figure:
    """||F(x)|| / ||x|| for each residual block: the latest (solid) and at step 0 (dotted).
    Small values mean each block is close to the identity, as He et al. (2015, Sec. 4.2) found."""
    colors, symbols = model_colors(list(latest)), model_symbols(list(latest))
    data = []
    for model, (step, ratios) in latest.items():
        data.append(dict(
            type="scatter", x=i32(np.arange(1, len(ratios) + 1)), y=f32(ratios),
            mode="lines+markers", name=f"{model} (step {step})",
            line=dict(color=colors[model], width=2.4), marker=dict(size=6, symbol=symbols[model], maxdisplayed=MARKERS),
            hovertemplate=f"{model}<br>block %{{x}}: %{{y:.3f}}<extra></extra>"))
        if initial and model in initial:
            s0, r0 = initial[model]
            data.append(dict(
                type="scatter", x=i32(np.arange(1, len(r0) + 1)), y=f32(r0), mode="lines", name=f"{model} (step {s0})",
                line=dict(color=colors[model], width=1.4, dash="dot"),
                hovertemplate=f"{model} at step {s0}<br>block %{{x}}: %{{y:.3f}}<extra></extra>"))
    return figure(data, base_layout(height, yaxis=dict(title=dict(text="‖F(x)‖ / ‖x‖"), rangemode="tozero"),
                                    xaxis=dict(title=dict(text="residual block"))))
