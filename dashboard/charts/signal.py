"""Charts of what the + x does to the signal (tables in, figure out): the signal propagation plot
(Brock, De & Smith 2021) and the histogram of the block stack's Jacobian's singular values."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.charts import base_layout, f32, figure, i32, model_colors, panel_title, side_by_side

SIGNAL_PANELS = (("mean_sq", "stream: average squared channel mean"), ("variance", "stream: average channel variance"),
                 ("branch_variance", "branch output: variance"))


def _positive(values: np.ndarray) -> np.ndarray:
    """A log axis cannot show 0 or NaN: those points are left as gaps."""
    v = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(v) & (v > 0), v, np.nan)


def signal_figure(signal: pd.DataFrame, models: list[str], height: int = 400) -> go.Figure:
    """Per block, three panels on log axes: each model at step 0 (dotted) and at its latest step (solid)."""
    colors = model_colors(models)
    domains = side_by_side(len(SIGNAL_PANELS), gap=0.07)
    traces, layout = [], base_layout(height, hovermode="closest", legend_title_text="dotted: step 0 · solid: latest  ")
    for p, (column, title) in enumerate(SIGNAL_PANELS):
        axis = "" if p == 0 else str(p + 1)
        layout[f"xaxis{axis}"] = dict(domain=domains[p], anchor=f"y{axis}", title=dict(text="block"))
        layout[f"yaxis{axis}"] = dict(anchor=f"x{axis}", type="log", exponentformat="power")
        for model in models:
            rows = signal[signal["model"] == model]
            if rows.empty:
                continue
            steps = sorted({int(rows["step"].min()), int(rows["step"].max())})
            for step in steps:
                at = rows[rows["step"] == step].sort_values("block")
                latest = step == steps[-1]
                traces.append(dict(
                    type="scatter", x=i32(at["block"]), y=f32(_positive(at[column])), mode="lines",
                    xaxis=f"x{axis}", yaxis=f"y{axis}", name=model, legendgroup=model,
                    showlegend=p == 0 and latest, connectgaps=False,
                    line=dict(color=colors[model], width=2.4 if latest else 1.6, dash="solid" if latest else "dot"),
                    hovertemplate=f"{model}, step {step}, block %{{x}}: %{{y:.3g}}<extra></extra>"))
    layout["annotations"] = [panel_title(title, domains[p]) for p, (_, title) in enumerate(SIGNAL_PANELS)]
    layout["margin"] = dict(l=10, r=10, t=90, b=10)
    layout["legend"]["y"] = 1.12  # above the panels' titles
    return figure(traces, layout)


def jacobian_figure(jacobian: pd.DataFrame, models: list[str], height: int = 360) -> go.Figure:
    """Each model's singular values at its latest step, as a histogram over log10 σ (bins of a fifth of a
    decade); a dashed line at σ = 1, where an isometry has all of them."""
    colors = model_colors(models)
    traces = []
    lows, highs = [], []
    for model in models:
        rows = jacobian[jacobian["model"] == model]
        if rows.empty:
            continue
        latest = rows[rows["step"] == rows["step"].max()]
        values = _positive(latest["singular_value"].to_numpy())
        logs = np.log10(values[np.isfinite(values)])
        if not len(logs):
            continue
        lows.append(float(logs.min()))
        highs.append(float(logs.max()))
        traces.append(dict(type="histogram", x=f32(logs), name=model, marker=dict(color=colors[model]), opacity=0.6,
                           xbins=dict(size=0.2), hovertemplate=f"{model}: %{{y}} between 10^%{{x}}<extra></extra>"))
    lo = math.floor(min(lows + [-1.0])) - 0.5
    hi = math.ceil(max(highs + [1.0])) + 0.5
    ticks = list(range(math.ceil(lo), math.floor(hi) + 1))
    layout = base_layout(height, barmode="overlay", hovermode="closest",
                         xaxis=dict(title=dict(text="singular value of ∂xₙ/∂x₀"), range=[lo, hi], tickvals=ticks,
                                    ticktext=[f"10<sup>{t}</sup>" for t in ticks]),
                         yaxis=dict(title=dict(text="count (median over the probe points)")),
                         shapes=[dict(type="line", x0=0, x1=0, y0=0, y1=1, yref="paper",
                                      line=dict(dash="dash", width=1.5, color="#6C757D"))])
    return figure(traces, layout)
