"""Chart builders for the unrolled view: pure functions from tables to plotly figures.

- ``length_figure``: all 2^n paths by length (the binomial) beside the gradient that flows through
  the paths of each length (exact), with the shortest range holding 90 % of it and both means.
- ``per_path_figure``: the gradient through one path of length k (Veit et al.'s sampled estimate),
  falling exponentially with k.
- ``mean_length_figure``: the gradient-weighted mean length over training, against n / 2.
- ``lesion_figure``: training error with each block deleted, residual against plain.
- ``path_drawing_figure``: every one of the 2^n paths through a stack of n <= 5 blocks.
- ``expansion_latex``: the unrolled formulas for a small stack, as LaTeX strings.

Tables follow the run folder's contracts (``paths.csv``, ``lesion.csv``); nothing here trains.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.charts import f32, i32, model_colors, model_symbols, styled
from resnet_core.analysis.paths import path_counts, summary_from_rows

BINOMIAL_COLOR = "#ADB5BD"
VEIT_COLOR = "#6C757D"
LENGTH_COLORS = ("#1D4E89", "#2A9D8F", "#8AB17D", "#E9C46A", "#F4A261", "#E76F51")  # by k, short to long
MAX_DRAWN_BLOCKS = 5


def _sorted(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values("length").drop_duplicates("length", keep="last")


def veit_share(rows: pd.DataFrame) -> np.ndarray | None:
    """Veit et al.'s "gradient through paths of length k" (mean per-path norm x number of paths) as
    shares, or None where the table has no sampled per-path norms."""
    if "path_norm" not in rows or not rows["path_norm"].notna().any():
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        total = rows["path_norm"].to_numpy(float) * rows["n_paths"].to_numpy(float)
    finite = np.nan_to_num(total, nan=0.0, posinf=0.0)
    return total / finite.sum() if finite.sum() > 0 else None


def length_figure(rows: pd.DataFrame, blocks: int, color: str = "#1D4E89", height: int = 400) -> go.Figure:
    """One analysis (one model, one step): the share of all 2^n paths at each length k beside the
    share of the gradient through them, the 90 % range shaded, n/2 and the weighted mean marked."""
    rows = _sorted(rows)
    k_all = np.arange(blocks + 1)
    counts = path_counts(blocks)
    binomial = counts / counts.sum()
    lengths, share = i32(rows["length"]), rows["share"].to_numpy(float)
    summary = summary_from_rows(rows)
    traces = [
        go.Bar(x=i32(k_all), y=f32(binomial), name="all 2ⁿ paths with k branches (binomial)",
               marker_color=BINOMIAL_COLOR, customdata=[f"{c:.4g}" for c in counts],
               hovertemplate="k = %{x}: %{customdata} paths (%{y:.1%} of all)<extra></extra>"),
        go.Scatter(x=lengths, y=f32(share), mode="lines+markers", name="gradient through them (exact |g_k|)",
                   line=dict(color=color, width=3), marker=dict(size=6),
                   customdata=f32(rows["grad_norm"]),
                   hovertemplate="k = %{x}: %{y:.1%} of the gradient (|g_k| = %{customdata:.3g})<extra></extra>"),
    ]
    veit = veit_share(rows)
    if veit is not None:
        traces.append(go.Scatter(
            x=lengths, y=f32(veit), mode="lines", name="Veit et al.: per-path gradient × count (sampled)",
            line=dict(color=VEIT_COLOR, width=2, dash="dash"),
            hovertemplate="k = %{x}: %{y:.1%} (sampled estimate)<extra></extra>"))
    fig = go.Figure(traces)
    lo, hi = summary["range_lo"], summary["range_hi"]
    fig.add_vrect(x0=lo - 0.5, x1=hi + 0.5, fillcolor=color, opacity=0.12, line_width=0,
                  annotation_text=f"90 % of the gradient: lengths {lo}–{hi}", annotation_position="top left")
    fig.add_vline(x=blocks / 2, line=dict(color=VEIT_COLOR, dash="dot"),
                  annotation_text=f"n/2 = {blocks / 2:g}", annotation_position="bottom right")
    if math.isfinite(summary["mean_length"]):
        fig.add_vline(x=summary["mean_length"], line=dict(color=color, dash="dash"),
                      annotation_text=f"mean {summary['mean_length']:.1f}", annotation_position="bottom left")
    fig.update_xaxes(title_text="path length k (residual branches on the path)", range=[-0.7, blocks + 0.7])
    fig.update_yaxes(title_text="share", tickformat=".0%", rangemode="tozero")
    fig.update_layout(bargap=0.05)
    return styled(fig, height)


def per_path_figure(rows: pd.DataFrame, color: str = "#1D4E89", height: int = 320) -> go.Figure | None:
    """Mean gradient norm through a single path of length k (log scale), or None if not sampled."""
    rows = _sorted(rows)
    if "path_norm" not in rows:
        return None
    ok = rows[rows["path_norm"].to_numpy(float) > 0]
    if len(ok) < 2:
        return None
    k, norm = ok["length"].to_numpy(float), ok["path_norm"].to_numpy(float)
    slope = np.polyfit(k, np.log10(norm), 1)[0]
    fig = go.Figure([go.Scatter(
        x=i32(k), y=norm, mode="lines+markers", name="one path of length k", line=dict(color=color, width=2.5),
        hovertemplate="k = %{x}: %{y:.3g} per path<extra></extra>")])
    fig.update_yaxes(type="log", title_text="gradient norm per path", exponentformat="power")
    fig.update_xaxes(title_text="path length k")
    fig.update_layout(title=dict(text=f"Per path: ×{10 ** slope:.2g} with every branch passed (sampled, Veit et al.)",
                                 font=dict(size=14)))
    return styled(fig, height, legend=False)


def mean_length_figure(paths: pd.DataFrame, blocks: int, color: str = "#1D4E89", height: int = 300) -> go.Figure:
    """Over training: the gradient-weighted mean path length, its 90 % range, and n/2."""
    steps, means, los, his = [], [], [], []
    for step, rows in paths.groupby("step", sort=True):
        s = summary_from_rows(rows)
        steps.append(step)
        means.append(s["mean_length"])
        los.append(s["range_lo"])
        his.append(s["range_hi"])
    steps = i32(steps)
    fig = go.Figure([
        go.Scatter(x=steps, y=f32(his), mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip"),
        go.Scatter(x=steps, y=f32(los), mode="lines", line=dict(width=0), fill="tonexty", fillcolor=_alpha(color, 0.15),
                   name="90 % range", hoverinfo="skip"),
        go.Scatter(x=steps, y=f32(means), mode="lines+markers", name="gradient-weighted mean length",
                   line=dict(color=color, width=2.5), hovertemplate="step %{x}: mean length %{y:.2f}<extra></extra>"),
        go.Scatter(x=steps, y=f32([blocks / 2] * len(steps)), mode="lines", name="n/2: mean over all paths",
                   line=dict(color=VEIT_COLOR, dash="dot"), hoverinfo="skip"),
    ])
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="path length", rangemode="tozero")
    return styled(fig, height)


def lesion_figure(lesion: pd.DataFrame, shape_changes: dict[str, list[int]] | None = None,
                  height: int = 400) -> go.Figure:
    """Training error with one block deleted (x: the block, 1 = first after the stem), every model;
    its error with nothing deleted as a dashed line. A block that changes the shape is marked: a
    residual one can still be deleted (its projection or padding stays), a plain one cannot."""
    lesion = lesion.drop_duplicates(["model", "block"], keep="last")  # a re-run study replaces the old rows
    models = list(dict.fromkeys(lesion["model"]))
    colors, symbols = model_colors(models), model_symbols(models)
    shape_changes = shape_changes or {}
    traces = []
    for model in models:
        rows = lesion[lesion["model"] == model].sort_values("block")
        color = colors[model]
        intact = rows[rows["block"] == -1]["train_error"]
        blocks = rows[rows["block"] >= 0]
        x, y = blocks["block"].to_numpy(int) + 1, blocks["train_error"].to_numpy(float)
        traces.append(go.Scatter(x=i32(x), y=f32(y * 100), mode="lines+markers", name=model, legendgroup=model,
                                 line=dict(color=color, width=2.2), marker=dict(size=7, symbol=symbols[model]),
                                 hovertemplate=f"{model} without block %{{x}}: %{{y:.1f}} %<extra></extra>"))
        if len(intact) and len(x):
            traces.append(go.Scatter(
                x=i32([0.5, x.max() + 0.5]), y=f32([intact.iloc[0] * 100] * 2), mode="lines", legendgroup=model,
                name=f"{model}, nothing deleted", showlegend=False, line=dict(color=color, dash="dash", width=1.5),
                hovertemplate=f"{model} intact: %{{y:.1f}} %<extra></extra>"))
        cannot = x[np.isnan(y)]
        if len(cannot):
            traces.append(go.Scatter(
                x=i32(cannot), y=f32([100.0] * len(cannot)), mode="markers+text", text=["changes shape"] * len(cannot),
                textposition="bottom center", textfont=dict(size=10, color=color), legendgroup=model, showlegend=False,
                name=f"{model}: changes shape, cannot be deleted",
                marker=dict(symbol="x", size=10, color=color),
                hovertemplate=f"{model} block %{{x}} changes the shape: it cannot be deleted<extra></extra>"))
        starts = [b + 1 for b in shape_changes.get(model, []) if b + 1 in set(x[~np.isnan(y)])]
        if starts:
            at = {bx: by for bx, by in zip(x, y)}
            traces.append(go.Scatter(
                x=i32(starts), y=f32([at[b] * 100 for b in starts]), mode="markers", legendgroup=model, showlegend=False,
                name=f"{model}: first block of a stage",
                marker=dict(symbol="diamond-open", size=14, color=color, line=dict(width=2)),
                hovertemplate=f"{model} block %{{x}} changes the shape (first of a stage): %{{y:.1f}} %<extra></extra>"))
    fig = go.Figure(traces)
    fig.update_yaxes(title_text="training error (%)", range=[0, 105])
    fig.update_xaxes(title_text="deleted block (1 = first after the stem)")
    fig.update_layout(legend_title_text="dashed: nothing deleted  ")
    return styled(fig, height)


def path_drawing_figure(n: int, share: dict[int, float] | None = None, height: int | None = None) -> go.Figure:
    """Every path through n <= 5 blocks, one row each, grouped by length k: a row passes through
    the residual branch F_i of the blocks marked (a box) and takes the skip everywhere else.
    ``share``: the gradient's share per length, written beside each group."""
    if not 1 <= n <= MAX_DRAWN_BLOCKS:
        raise ValueError(f"the drawing shows 1 to {MAX_DRAWN_BLOCKS} blocks (got {n})")
    share = share or {}
    box = 22 if n <= 4 else 16  # pixels; the rows are spaced to fit them
    traces, labels, y = [], [], 0.0
    for k in range(n + 1):
        color = LENGTH_COLORS[k % len(LENGTH_COLORS)]
        line_x, line_y, box_x, box_y, box_text = [], [], [], [], []
        group_top = y
        for chosen in itertools.combinations(range(n), k):
            line_x += [0, n, None]
            line_y += [y, y, None]
            for i in chosen:
                box_x.append(i + 0.5)
                box_y.append(y)
                box_text.append(f"F{_sub(i)}")
            y -= 1
        middle = (group_top + y + 1) / 2
        count = math.comb(n, k)
        note = f" · {share[k]:.0%} of the gradient" if k in share else ""
        labels.append((middle, f"k = {k}: {count} path{'s' if count > 1 else ''}{note}"))
        traces.append(go.Scatter(x=line_x, y=line_y, mode="lines", line=dict(color=color, width=2),
                                 hoverinfo="skip", showlegend=False))
        if box_x:
            traces.append(go.Scatter(
                x=box_x, y=box_y, mode="markers+text", text=box_text, textfont=dict(color="white", size=10),
                marker=dict(symbol="square", size=box, color=color), showlegend=False,
                hovertemplate=f"through the residual branch %{{text}} ({k} branch{'es' if k != 1 else ''} on this path)<extra></extra>"))
        y -= 0.6  # a gap between lengths
    fig = go.Figure(traces)
    for middle, text in labels:
        fig.add_annotation(x=n + 0.15, y=middle, text=text, showarrow=False, xanchor="left", font=dict(size=11))
    for i in range(n + 1):  # x_i between blocks, as in the formulas: block i + 1 holds the branch F_i
        fig.add_annotation(x=i, y=1, text=f"x{_sub(i)}", showarrow=False, xanchor="center")
    fig.update_xaxes(visible=False, range=[-0.3, n + 2.6])
    fig.update_yaxes(visible=False, range=[y, 1.6])
    pitch = box + 6
    return styled(fig, height or int(90 + pitch * (2**n + 0.6 * (n + 1))), legend=False)


def _sub(i: int) -> str:
    return str(i).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def _alpha(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


# ---- the formulas --------------------------------------------------------------------------------
def expansion_latex(n: int) -> list[str]:
    """The unrolled stack as LaTeX, one display per string: for its first three blocks at most, the
    nested sum (it doubles with every block) and the Jacobian multiplied out into its path products
    grouped by length; for a longer stack, the same in general (C(n, k) paths of length k); and the
    recursion that computes the gradient per length."""
    def nested(i: int) -> str:
        return "x_0" if i == 0 else f"{nested(i - 1)} + \\mathcal{{F}}_{{{i - 1}}}\\big({nested(i - 1)}\\big)"

    lines = []
    shown = min(n, 3)
    if shown >= 1:
        first = f"x_{{{shown}}} &= x_{{{shown - 1}}} + \\mathcal{{F}}_{{{shown - 1}}}(x_{{{shown - 1}}})"
        steps = [first]
        if shown > 1:  # one line per block's term, so the display stays narrow
            terms = ["x_0"] + [f"\\mathcal{{F}}_{{{i}}}\\big({nested(i)}\\big)" for i in range(shown)]
            steps.append("&= " + " + ".join(terms[:2]))
            steps += [f"&\\quad + {t}" for t in terms[2:]]
        lines.append("\\begin{aligned}" + " \\\\ ".join(steps) + "\\end{aligned}")
    if shown >= 1:
        product = "".join(f"(I + J_{{{i}}})" for i in reversed(range(shown)))
        groups = []
        for k in range(shown + 1):
            terms = [" ".join(f"J_{{{i}}}" for i in reversed(chosen)) or "I" for chosen in itertools.combinations(range(shown), k)]
            groups.append(f"\\underbrace{{{' + '.join(terms)}}}_{{k={k}:\\ {len(terms)}}}")
        body = f"\\frac{{\\partial x_{{{shown}}}}}{{\\partial x_0}} &= {product} \\\\ &= " + " + ".join(groups[:2])
        if len(groups) > 2:
            body += " \\\\ &\\quad + " + " + ".join(groups[2:])
        lines.append("\\begin{aligned}" + body + "\\end{aligned}")
    if n > 3:
        lines.append(f"\\frac{{\\partial x_{{{n}}}}}{{\\partial x_0}} = \\prod_{{i={n - 1}}}^{{0}} (S_i + J_i)"
                     f" = \\sum_{{k=0}}^{{{n}}} \\underbrace{{\\sum_{{|P| = k}} \\; \\prod_{{i \\in P}} J_i "
                     f"\\prod_{{i \\notin P}} S_i}}_{{\\binom{{{n}}}{{k}} \\text{{ paths}}}}")
    lines.append("g = \\frac{\\partial L}{\\partial x_0} = \\sum_{k} g_k, \\qquad "
                 "g_k \\leftarrow S_i^\\top g_k + J_i^\\top g_{k-1}")
    return lines


def lesion_summary(lesion: pd.DataFrame) -> pd.DataFrame:
    """Per model: error with nothing deleted, and the median and worst error with one block deleted."""
    lesion = lesion.drop_duplicates(["model", "block"], keep="last")
    out = []
    for model, rows in lesion.groupby("model", sort=False):
        intact = rows[rows["block"] == -1]["train_error"]
        deleted = rows[rows["block"] >= 0]["train_error"].dropna()
        out.append({"model": model, "intact": float(intact.iloc[0]) if len(intact) else math.nan,
                    "median_deleted": float(deleted.median()) if len(deleted) else math.nan,
                    "worst_deleted": float(deleted.max()) if len(deleted) else math.nan})
    return pd.DataFrame(out, columns=["model", "intact", "median_deleted", "worst_deleted"])
