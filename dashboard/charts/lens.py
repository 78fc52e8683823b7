"""The block lens (Jastrzębski et al. 2018) as a chart: tables in, figure out."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboard.charts import base_layout, f32, figure, i32, model_colors


def lens_figure(lens: pd.DataFrame, models: list[str], chance: float | None = None, height: int = 360) -> go.Figure:
    """Each model's training error read at every block's output (the latest analysis), against the
    block; a dotted line at chance."""
    colors = model_colors(models)
    traces = []
    for model in models:
        rows = lens[lens["model"] == model]
        if rows.empty:
            continue
        step = int(rows["step"].max())
        at = rows[rows["step"] == step].sort_values("block")
        traces.append(dict(type="scatter", x=i32(at["block"]), y=f32(at["train_error"] * 100), mode="lines+markers",
                           name=model, line=dict(color=colors[model], width=2.4), marker=dict(size=4),
                           hovertemplate=f"{model}, step {step}, read after block %{{x}}: %{{y:.1f}} %<extra></extra>"))
    shapes = []
    if chance is not None:
        shapes.append(dict(type="line", x0=0, x1=1, xref="paper", y0=100 * chance, y1=100 * chance,
                           line=dict(dash="dot", width=1.5, color="#6C757D")))
    return figure(traces, base_layout(height, hovermode="x unified", shapes=shapes,
                                      xaxis=dict(title=dict(text="head read after block")),
                                      yaxis=dict(title=dict(text="training error (%)"), range=[0, 100])))
