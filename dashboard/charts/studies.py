"""Chart builders for the three views beyond the papers' figures: the depth sweep, the loss
landscape and shattered gradients. Pure functions: tables or the JSON-able results of
``resnet_core.analysis.sweep`` / ``landscape`` / ``shattered`` in, plotly figures out.

Plain nets are drawn warm and residual nets cool, as everywhere in the app.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.charts import PLAIN_COLORS, RESNET_COLORS, f32, i32, styled

FAMILY_COLORS = {"plain": PLAIN_COLORS[1], "resnet": RESNET_COLORS[1]}
FAMILY_NAMES = {"plain": "plain", "resnet": "residual"}
CORRELATION_FLOOR = 0.01  # log axis: a correlation at or below this (noise, or negative) is drawn here


def family_of(model: str) -> str:
    return "resnet" if model.startswith("resnet") else "plain"


def _band(color: str, alpha: float = 0.18) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


# ------------------------------------------------------------------------------------ depth sweep
SWEEP_PANELS = (("train_error", "Training error"), ("test_error", "Test error"))


def sweep_figure(frame: pd.DataFrame, height: int = 420) -> go.Figure:
    """Error against depth, one line per family (mean over seeds) in a band from the best to the
    worst seed; beside the final training error, dotted, the error averaged over the run (how fast
    it trained). He et al. 2015, Table 6 / Fig. 6, as one curve per family."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[t for _, t in SWEEP_PANELS], horizontal_spacing=0.08,
                        shared_yaxes=True)
    for col, (column, _) in enumerate(SWEEP_PANELS, start=1):
        for family in ("plain", "resnet"):
            rows = frame[(frame["family"] == family)].dropna(subset=[column])
            if rows.empty:
                continue
            color, name = FAMILY_COLORS[family], FAMILY_NAMES[family]
            stats = rows.groupby("depth")[column].agg(["mean", "min", "max", "size"]).reset_index()
            depth = i32(stats["depth"])
            fig.add_trace(go.Scatter(  # the band: max forward, min backward, filled
                x=np.concatenate([depth, depth[::-1]]), y=f32(np.concatenate([stats["max"], stats["min"][::-1]]) * 100),
                fill="toself", fillcolor=_band(color), mode="lines", line=dict(width=0), hoverinfo="skip",
                showlegend=False, legendgroup=family), row=1, col=col)
            fig.add_trace(go.Scatter(
                x=depth, y=f32(stats["mean"] * 100), mode="lines+markers", name=f"{name} (final)",
                legendgroup=family, showlegend=col == 1, line=dict(color=color, width=2.6), marker=dict(size=7),
                customdata=np.stack([stats["min"] * 100, stats["max"] * 100, stats["size"]], axis=1),
                hovertemplate=(f"{name}-%{{x}}: %{{y:.1f}} % (seeds: %{{customdata[2]:.0f}}, "
                               "%{customdata[0]:.1f}–%{customdata[1]:.1f} %)<extra></extra>")), row=1, col=col)
            if column == "train_error" and "mean_train_error" in rows:
                avg = rows.dropna(subset=["mean_train_error"]).groupby("depth")["mean_train_error"].mean()
                fig.add_trace(go.Scatter(
                    x=i32(avg.index), y=f32(avg.values * 100), mode="lines", name=f"{name} (run average)",
                    legendgroup=family, line=dict(color=color, width=1.6, dash="dot"),
                    hovertemplate=f"{name}-%{{x}} averaged over the run: %{{y:.1f}} %<extra></extra>"), row=1, col=col)
    top = float(np.nanmax(frame[["train_error", "test_error", "mean_train_error"]].to_numpy(dtype=float))) \
        if len(frame) and frame[["train_error", "test_error", "mean_train_error"]].notna().any().any() else 0.5
    fig.update_yaxes(title_text="error (%)", range=[0, min(100, max(10, top * 110))], row=1, col=1)
    fig.update_xaxes(title_text="depth (weighted layers)")
    if len(frame):
        fig.update_xaxes(tickvals=sorted(frame["depth"].unique().tolist()))
    styled(fig, height)
    fig.update_layout(margin=dict(t=84), legend=dict(y=1.16))  # two legend rows above the panel titles
    return fig


# ---------------------------------------------------------------------------------- loss landscape
def log_loss(values) -> np.ndarray:
    """log10 of the loss; None (an overflow) stays NaN, a gap in the chart."""
    arr = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float) \
        if values and isinstance(values[0], list) else np.array([np.nan if v is None else v for v in values], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.where(arr > 0, arr, np.nan))


def landscape_line_figure(views: dict[str, dict[str, Any]], height: int = 340) -> go.Figure:
    """The loss along one filter-normalised direction, a = 0 being the trained net (log scale)."""
    fig = go.Figure()
    for model, view in views.items():
        color = FAMILY_COLORS[family_of(model)]
        loss = np.array([np.nan if v is None else v for v in view["line_loss"]], float)
        fig.add_trace(go.Scatter(x=f32(view["line_alpha"]), y=loss, mode="lines", name=model,
                                 line=dict(color=color, width=2.4),
                                 hovertemplate=f"{model}, a=%{{x:.2f}}: loss %{{y:.3g}}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[0.0], y=[view["centre_loss"]], mode="markers", showlegend=False,
                                 marker=dict(color=color, size=10, symbol="star"),
                                 hovertemplate=f"{model} as trained: loss %{{y:.3g}}<extra></extra>"))
    fig.update_yaxes(title_text="training loss (log)", type="log")
    fig.update_xaxes(title_text="step a along the direction (1 = each filter's own norm)")
    return styled(fig, height)


def landscape_range(views: dict[str, dict[str, Any]]) -> tuple[float, float]:
    """One colour range (log10 loss) for every surface, so the two nets are read on one scale."""
    values = np.concatenate([log_loss(v["loss"]).ravel() for v in views.values()]) if views else np.array([0.0])
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)


def landscape_surface_figure(view: dict[str, Any], zrange: tuple[float, float] | None = None, kind: str = "contour",
                             height: int = 420) -> go.Figure:
    """log10 of the loss over the grid of two directions: contours (Li et al. 2018, Fig. 5) or a
    3D surface; the star is the trained net."""
    z = log_loss(view["loss"])
    x, y = f32(view["alpha"]), f32(view["beta"])
    zmin, zmax = zrange or (float(np.nanmin(z)), float(np.nanmax(z)))
    colorbar = dict(title=dict(text="log10 loss", side="right"), thickness=12)
    if kind == "surface":
        fig = go.Figure(go.Surface(x=x, y=y, z=f32(z), cmin=zmin, cmax=zmax, colorscale="Viridis", colorbar=colorbar,
                                   hovertemplate="a=%{x:.2f}, b=%{y:.2f}: log10 loss %{z:.2f}<extra></extra>"))
        fig.update_layout(scene=dict(xaxis_title="a", yaxis_title="b", zaxis_title="log10 loss",
                                     zaxis=dict(range=[zmin, zmax])),
                          scene_camera=dict(eye=dict(x=1.5, y=1.5, z=0.9)))
        return styled(fig, height, legend=False)
    fig = go.Figure(go.Contour(
        x=x, y=y, z=f32(z), zmin=zmin, zmax=zmax, colorscale="Viridis", colorbar=colorbar,
        contours=dict(coloring="heatmap", showlines=True, start=zmin, end=zmax, size=max((zmax - zmin) / 20, 1e-6)),
        line=dict(width=0.6, color="rgba(255,255,255,0.55)"),
        hovertemplate="a=%{x:.2f}, b=%{y:.2f}: log10 loss %{z:.2f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", marker=dict(symbol="star", size=13, color="white",
                                                                        line=dict(color="black", width=1)),
                             hovertemplate=f"as trained: loss {view['centre_loss']:.3g}<extra></extra>", showlegend=False))
    fig.update_xaxes(title_text="a (direction 1)", range=[float(x.min()), float(x.max())])
    fig.update_yaxes(title_text="b (direction 2)", range=[float(y.min()), float(y.max())])
    return styled(fig, height, legend=False)


def roughness_table(views: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The numbers beside the surfaces, one row per model."""
    rows = []
    for model, view in views.items():
        r = view["roughness"]
        rows.append({"model": model, "loss at the trained weights": view["centre_loss"],
                     "loss range over the grid": r["loss_range"],
                     "non-convex grid points": r["nonconvex_fraction"], "local minima": r["local_minima"]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ shattered gradients
def correlation_figure(result: dict[str, Any], height: int = 380) -> go.Figure:
    """Neighbour correlation of df/dx against depth, mean over seeds (band: lowest to highest seed),
    log scale: a straight fall is exponential decay (plain, ~2^-L), a gentle one a power law
    (residual, ~1/sqrt(L)). Balduzzi et al. 2017, Fig. 2."""
    fig = go.Figure()
    depths = i32(result["depths"])
    for family in ("plain", "resnet"):
        per_depth = result["correlation"].get(family, [])[:len(depths)]
        if not per_depth:
            continue
        values = np.array(per_depth, dtype=float)
        mean, lo, hi = values.mean(1), values.min(1), values.max(1)
        color, name = FAMILY_COLORS[family], FAMILY_NAMES[family]
        floor = lambda v: np.maximum(v, CORRELATION_FLOOR)  # noqa: E731
        d = depths[:len(mean)]
        fig.add_trace(go.Scatter(x=np.concatenate([d, d[::-1]]), y=f32(np.concatenate([floor(hi), floor(lo)[::-1]])),
                                 fill="toself", fillcolor=_band(color), mode="lines", line=dict(width=0),
                                 hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(
            x=d, y=f32(floor(mean)), mode="lines+markers", name=name, line=dict(color=color, width=2.6),
            marker=dict(size=8, symbol=["circle" if m > CORRELATION_FLOOR else "circle-open" for m in mean]),
            customdata=f32(mean), hovertemplate=f"{name}-%{{x}}: correlation %{{customdata:.3f}}<extra></extra>"))
    fig.update_yaxes(title_text="correlation of neighbours' gradients (log)", type="log",
                     range=[np.log10(CORRELATION_FLOOR) - 0.1, 0.05])
    fig.update_xaxes(title_text="depth (weighted layers)", tickvals=depths.tolist())
    return styled(fig, height)


def gradient_curves_figure(result: dict[str, Any], height: int = 460) -> go.Figure:
    """df/dx at each input on the line for the shallowest and deepest plain net and the deepest
    residual net (Balduzzi et al. 2017, Fig. 1): brown noise, white noise, brown noise again."""
    names = sorted(result["curves"], key=lambda n: (family_of(n) == "resnet", int(n.split("-")[1])))
    if not names:
        return styled(go.Figure(), height)
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[_curve_title(n) for n in names])
    x = f32(result["x"])
    for row, name in enumerate(names, start=1):
        fig.add_trace(go.Scatter(x=x, y=f32(result["curves"][name]), mode="lines", name=name, showlegend=False,
                                 line=dict(color=FAMILY_COLORS[family_of(name)], width=1.4),
                                 hovertemplate=f"{name}, x=%{{x:.3f}}: df/dx %{{y:.3g}}<extra></extra>"),
                      row=row, col=1)
        fig.update_yaxes(title_text="df/dx", row=row, col=1)
    fig.update_xaxes(title_text="input x", row=len(names), col=1)
    return styled(fig, height, legend=False)


def _curve_title(name: str) -> str:
    family, depth = name.split("-")[:2]
    return f"{FAMILY_NAMES[family]} net, {depth} layers"
