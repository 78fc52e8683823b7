"""Each chart in words, computed from its numbers: the text alternative a screen reader reads in
place of the picture (WCAG 1.1.1). Pure functions, like the builders: a table or a figure in, one
or two short sentences out."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go


def error_alt(metrics: pd.DataFrame, models: list[str]) -> str:
    """The degradation chart as the paper states it: "At step 400: plain-56 has 54 % training error,
    50 points above resnet-56 (4 %); plain-20 12 %." Test errors follow."""
    ok = metrics[(metrics["status"] == "ok") & metrics["model"].isin(models)].dropna(subset=["train_error"])
    if ok.empty:
        return "Training and test error against step: nothing evaluated yet."
    last = ok.groupby("model").tail(1).sort_values("train_error", ascending=False)
    worst, best = last.iloc[0], last.iloc[-1]
    step = int(last["step"].max())
    words = f"Training and test error against step. At step {step}: {worst.model} has {_pct(worst.train_error)} training error"
    if len(last) > 1:
        gap = 100 * (worst.train_error - best.train_error)
        words += f", {gap:.0f} points above {best.model} ({_pct(best.train_error)})"
        others = [f"{r.model} {_pct(r.train_error)}" for r in last.iloc[1:-1].itertuples()]
        if others:
            words += "; " + ", ".join(others)
    tests = ", ".join(f"{r.model} {_pct(r.test_error)}" for r in last.itertuples() if _finite(r.test_error))
    diverged = sorted(set(metrics.loc[metrics["status"] == "diverged", "model"]) & set(models))
    return words + (f". Test error: {tests}." if tests else ".") + (
        f" Diverged: {', '.join(diverged)}." if diverged else "")


def figure_alt(fig: go.Figure, title: str = "") -> str:
    """Any chart in words from its traces: each named line's last point, each heatmap's range."""
    layout = fig.layout
    y_title = _title(layout.yaxis) or "value"
    x_title = _title(layout.xaxis) or "x"
    parts = []
    for trace in fig.data:
        kind, name = trace.type, trace.name or ""
        if kind == "heatmap" and trace.z is not None:
            z = np.asarray(trace.z, dtype=float)
            if z.size and np.isfinite(z).any():
                lo, hi = np.nanmin(z), np.nanmax(z)
                parts.append(f"{name}: {z.shape[0]} rows by {z.shape[1] if z.ndim > 1 else 1} columns, "
                             f"from {_num(lo)} to {_num(hi)}")
        elif kind == "scatter" and trace.showlegend is not False and trace.y is not None and len(trace.y):
            y = np.asarray(trace.y, dtype=float)
            x = np.asarray(trace.x) if trace.x is not None else np.arange(len(y))
            seen = np.flatnonzero(np.isfinite(y))
            if len(seen):
                i = seen[-1]
                parts.append(f"{name} {_num(y[i])} at {x_title} {_num(x[i])}")
    head = f"{title + ': ' if title else ''}{y_title} against {x_title}"
    return head + (". " + "; ".join(parts[:8]) + "." if parts else ": nothing drawn yet.")


def _title(axis) -> str:
    try:
        return axis.title.text or ""
    except AttributeError:
        return ""


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.0f} %" if _finite(fraction) else "no value"


def _num(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(v):
        return "no value"
    return f"{v:.0f}" if v == int(v) and abs(v) < 1e6 else f"{v:.3g}"
