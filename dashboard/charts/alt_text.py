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
    50 points above resnet-56 (4 %); plain-20 12 %." Test errors follow. One pass over the rows in
    plain Python: pandas' string columns cost milliseconds a comparison, and the table grows."""
    last: dict[str, tuple] = {}   # model -> (step, train error, test error) of its last evaluation
    diverged: set[str] = set()
    wanted = set(models)
    columns = (metrics[c].tolist() for c in ("model", "status", "step", "train_error", "test_error"))
    for model, status, step, train, test in zip(*columns):
        if model not in wanted:
            continue
        if status == "diverged":
            diverged.add(model)
        elif status == "ok" and _finite(train):
            last[model] = (step, train, test)
    if not last:
        return "Training and test error against step: nothing evaluated yet."
    # the worst first; ties keep the order the models first reached their last rows in
    ranked = sorted(last, key=lambda m: -last[m][1])
    worst, best = ranked[0], ranked[-1]
    step = int(max(row[0] for row in last.values()))
    words = f"Training and test error against step. At step {step}: {worst} has {_pct(last[worst][1])} training error"
    if len(ranked) > 1:
        gap = 100 * (last[worst][1] - last[best][1])
        words += f", {gap:.0f} points above {best} ({_pct(last[best][1])})"
        others = [f"{m} {_pct(last[m][1])}" for m in ranked[1:-1]]
        if others:
            words += "; " + ", ".join(others)
    tests = ", ".join(f"{m} {_pct(last[m][2])}" for m in ranked if _finite(last[m][2]))
    return words + (f". Test error: {tests}." if tests else ".") + (
        f" Diverged: {', '.join(sorted(diverged))}." if diverged else "")


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
