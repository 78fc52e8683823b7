"""Chart builders for the training view: pure functions from tables to plotly figures.

Nothing here knows about training, Streamlit or the record's lock: a builder takes a metrics table
(the ``metrics.csv`` columns) and returns a figure, so the same code draws a live run and a replay,
and tests check a figure without a browser. Numbers go in as float32/int32 numpy arrays, which
plotly sends base64-packed: a live page redraws these every second.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.charts.palette import (OTHER_COLORS, PLAIN_COLORS, RESNET_COLORS, model_colors,  # noqa: F401
                                      model_symbols)

FONT = dict(family="Source Sans Pro, sans-serif")
MARKERS = 30  # markers drawn per line at most: enough to tell the lines apart, few enough to see the line


def figure(data: list[dict], layout: dict) -> go.Figure:
    """A figure from plain dicts, skipping plotly's per-property validation: building it costs
    ~1 ms instead of ~13, which matters at one redraw a second. The tests validate every builder's
    output (``go.Figure(fig.to_dict())``), so a wrong property still fails there."""
    return go.Figure({"data": data, "layout": layout}, _validate=False)


def base_layout(height: int = 380, legend: bool = True, **extra) -> dict:
    """The common look: tight margins, legend on top, full trace names on hover."""
    layout = dict(height=height, margin=dict(l=10, r=10, t=36, b=10), font=FONT, showlegend=legend,
                  hoverlabel=dict(namelength=-1))
    if legend:
        layout["legend"] = dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0)
    layout.update(extra)
    return layout


def styled(fig: go.Figure, height: int = 380, legend: bool = True) -> go.Figure:
    """``base_layout`` applied to a figure built another way (other panels' builders use this)."""
    fig.update_layout(**base_layout(height, legend))
    return fig


def side_by_side(n: int, gap: float = 0.05) -> list[list[float]]:
    """x domains of ``n`` panels in a row (what make_subplots computes, at a fraction of its cost)."""
    width = (1 - gap * (n - 1)) / max(n, 1)
    return [[round(i * (width + gap), 4), round(i * (width + gap) + width, 4)] for i in range(n)]


def panel_title(text: str, domain: list[float]) -> dict:
    return dict(text=text, x=(domain[0] + domain[1]) / 2, y=1.0, xref="paper", yref="paper", xanchor="center",
                yanchor="bottom", showarrow=False, font=dict(size=14))


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def i32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int32)


# ----------------------------------------------------------------------------------- the cards
@dataclass(frozen=True)
class ModelCard:
    """What one metric card shows: the latest training error and its change since the eval before."""

    model: str
    train_error: float | None      # fraction, None before the first evaluation
    previous: float | None
    step: int | None
    diverged_at: int | None = None

    @property
    def value(self) -> str:
        if self.diverged_at is not None:
            return f"diverged at step {self.diverged_at}"
        return "—" if self.train_error is None else f"{100 * self.train_error:.1f} %"

    @property
    def delta(self) -> str | None:
        if self.diverged_at is not None or self.train_error is None or self.previous is None:
            return None
        return f"{100 * (self.train_error - self.previous):+.1f} pts"


def model_cards(metrics: pd.DataFrame, models: list[str]) -> list[ModelCard]:
    names = metrics["model"].to_numpy()
    status = metrics["status"].to_numpy()
    steps = metrics["step"].to_numpy()
    errors = metrics["train_error"].to_numpy(dtype=float, na_value=np.nan)
    cards = []
    for model in models:
        mine = names == model
        ok = np.flatnonzero(mine & (status == "ok") & np.isfinite(errors))
        diverged = np.flatnonzero(mine & (status == "diverged"))
        cards.append(ModelCard(
            model, float(errors[ok[-1]]) if len(ok) else None, float(errors[ok[-2]]) if len(ok) > 1 else None,
            int(steps[ok[-1]]) if len(ok) else None, int(steps[diverged[0]]) if len(diverged) else None))
    return cards


def separation(cards: list[ModelCard]) -> float | None:
    """How far (in error points) the worst model trails the best: the degradation gap."""
    errors = [c.train_error for c in cards if c.train_error is not None and c.diverged_at is None]
    return 100 * (max(errors) - min(errors)) if len(errors) > 1 else None


# ------------------------------------------------------------------------------ training curves
def columns_by_model(metrics: pd.DataFrame, models: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Each model's rows as numpy columns, split once (pandas filtering per model and column cost
    more than drawing the chart)."""
    names = metrics["model"].to_numpy()
    status = metrics["status"].to_numpy()
    cols = {c: metrics[c].to_numpy(dtype=float, na_value=np.nan) for c in ("step", "train_loss", "train_error", "test_error")}
    out = {}
    for model in models:
        mine = names == model
        ok = mine & (status == "ok")
        out[model] = {c: v[ok] for c, v in cols.items()}
        diverged = np.flatnonzero(mine & (status == "diverged"))
        out[model]["diverged_at"] = cols["step"][diverged[:1]]
    return out


def error_figure(metrics: pd.DataFrame, models: list[str], height: int = 420) -> go.Figure:
    """Training (solid) and test (dashed) error against step, every model on one chart: Fig. 1.
    Each model has its colour and its marker (palette.py): colour is never the only cue."""
    colors, symbols = model_colors(models), model_symbols(models)
    traces = []
    for model, rows in columns_by_model(metrics, models).items():
        steps = i32(rows["step"])
        for column, dash, width, label in (("train_error", "solid", 2.6, "train"), ("test_error", "dash", 1.6, "test")):
            traces.append(dict(
                type="scatter", x=steps, y=f32(rows[column] * 100), mode="lines+markers", name=model, legendgroup=model,
                showlegend=label == "train", line=dict(color=colors[model], width=width, dash=dash),
                marker=dict(symbol=symbols[model], size=7 if label == "train" else 5, maxdisplayed=MARKERS),
                hovertemplate=f"{model} {label}: %{{y:.1f}} %<extra></extra>"))
        traces.extend(_divergence_markers(rows, model, colors[model], y=100.0))
    return figure(traces, base_layout(
        height, hovermode="x unified", legend_title_text="solid: train · dashed: test  ",
        xaxis=dict(title=dict(text="step")), yaxis=dict(title=dict(text="error (%)"), range=[0, 100])))


def loss_figure(metrics: pd.DataFrame, models: list[str], height: int = 420) -> go.Figure:
    """Training loss (cross-entropy on the evaluation points) against step, log scale."""
    colors, symbols = model_colors(models), model_symbols(models)
    traces = []
    for model, rows in columns_by_model(metrics, models).items():
        traces.append(dict(
            type="scatter", x=i32(rows["step"]), y=f32(rows["train_loss"]), mode="lines+markers", name=model,
            line=dict(color=colors[model], width=2.4), marker=dict(symbol=symbols[model], size=7, maxdisplayed=MARKERS), hovertemplate=f"{model}: %{{y:.3g}}<extra></extra>"))
        finite = rows["train_loss"][np.isfinite(rows["train_loss"])]
        traces.extend(_divergence_markers(rows, model, colors[model], y=float(finite.max()) if len(finite) else 1.0))
    return figure(traces, base_layout(height, hovermode="x unified", xaxis=dict(title=dict(text="step")),
                                      yaxis=dict(title=dict(text="training loss"), type="log")))


def _divergence_markers(rows: dict[str, np.ndarray], model: str, color: str, y: float) -> list[dict]:
    if not len(rows["diverged_at"]):
        return []
    step = int(rows["diverged_at"][0])
    return [dict(type="scatter", x=i32([step]), y=f32([y if math.isfinite(y) else 1.0]), mode="markers+text",
                 marker=dict(symbol="x", size=14, color=color, line=dict(width=2)),
                 text=[f"{model} diverged"], textposition="bottom center", showlegend=False,
                 name=f"{model} diverged", hovertemplate=f"{model} diverged at step {step}<extra></extra>")]
