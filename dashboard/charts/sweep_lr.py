"""The learning-rate x depth sweep as heatmaps (tables in, figure out): training error over learning
rate and depth, one panel per family, the best learning rate of each depth marked (depth-μP: Yang et
al. 2023; Bordelon et al. 2023 predict it stays put when branches are scaled by 1/√L)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.charts import base_layout, f32, figure, panel_title, side_by_side


def best_lr_per_depth(frame: pd.DataFrame, family: str) -> dict[int, float]:
    """depth -> the learning rate with the lowest mean final training error over seeds (a diverged
    run counts as 100 %: it did not train)."""
    rows = frame[frame["family"] == family].assign(error=lambda f: f["train_error"].fillna(1.0))
    means = rows.groupby(["depth", "lr"])["error"].mean().reset_index()
    return {int(d): float(g.loc[g["error"].idxmin(), "lr"]) for d, g in means.groupby("depth")}


def lr_depth_figure(frame: pd.DataFrame, title: str = "", height: int = 380) -> go.Figure:
    families = [f for f in ("plain", "resnet") if (frame["family"] == f).any()]
    lrs = sorted(frame["lr"].dropna().unique())
    depths = sorted(frame["depth"].unique())
    labels = [f"{lr:g}" for lr in lrs]
    domains = side_by_side(len(families), gap=0.08)
    traces, layout = [], base_layout(height, legend=False, hovermode="closest")
    for p, family in enumerate(families):
        axis = "" if p == 0 else str(p + 1)
        rows = frame[frame["family"] == family].assign(error=lambda f: f["train_error"].fillna(1.0))
        means = rows.groupby(["depth", "lr"])["error"].mean()
        z = np.array([[means.get((d, lr), np.nan) for lr in lrs] for d in depths]) * 100
        traces.append(dict(type="heatmap", x=labels, y=[str(d) for d in depths], z=f32(z), xaxis=f"x{axis}",
                           yaxis=f"y{axis}", coloraxis="coloraxis", name=family,
                           hovertemplate=f"{family}-%{{y}}, lr %{{x}}: %{{z:.1f}} % training error<extra></extra>"))
        best = best_lr_per_depth(frame, family)
        traces.append(dict(type="scatter", x=[f"{best[d]:g}" for d in depths], y=[str(d) for d in depths],
                           xaxis=f"x{axis}", yaxis=f"y{axis}", mode="markers", name=f"{family}: best lr",
                           marker=dict(symbol="star", size=14, color="white", line=dict(width=1.5, color="black")),
                           hovertemplate=f"{family}-%{{y}}: best lr %{{x}}<extra></extra>"))
        layout[f"xaxis{axis}"] = dict(domain=domains[p], anchor=f"y{axis}", type="category",
                                      title=dict(text="learning rate"))
        layout[f"yaxis{axis}"] = dict(anchor=f"x{axis}", type="category", title=dict(text="depth" if p == 0 else ""))
    layout["coloraxis"] = dict(colorscale="Viridis", cmin=0, cmax=100,
                               colorbar=dict(title=dict(text="train error (%)")))
    layout["annotations"] = [panel_title(f"{family}{title}", domains[p]) for p, family in enumerate(families)]
    layout["margin"] = dict(l=10, r=10, t=50, b=10)
    return figure(traces, layout)
