"""The "Unrolled paths" panel: a residual net as a collection of 2^n paths (Veit et al. 2016).

It shows the unrolled formulas and every path of a small stack; for a residual model of the run,
the number of paths of each length beside the gradient that flows through them (exact, recomputed
every ``paths_every`` steps while it trains); and the lesion study, residual against plain.
It reads only the run's record, so a replayed run folder shows the same; ``request(method)`` asks
the session to run a trainer method (``lesion_study``), and is None when replaying.
"""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

import dashboard.charts.paths as charts_paths
from dashboard.charts import model_colors
from dashboard.panels.lens import render_lens_section
from dashboard.text import literal
from dashboard.panels.accessible import chart
from resnet_core.analysis.paths import path_counts, summary_from_rows
from resnet_core.settings import Settings, SettingsError, parse_model_name

REFRESH_S = 2.5  # the analysis itself runs every paths_every steps; this only picks it up
CHART_CONFIG = {"displaylogo": False}


def render_paths_panel(record, settings, request=None) -> None:
    if record is None:
        st.info("Train, or load a run folder, to see its unrolled paths.")
        return
    settings = _settings(record, settings)
    refresh = REFRESH_S if request is not None else None
    residual = [m for m in record.models() if _family(m) == "resnet"]
    if residual:
        model = residual[0] if len(residual) == 1 else st.selectbox("Residual model", residual, key="paths_model")
        blocks = _blocks(record, model)
        _formulas_and_drawing(record, model, blocks)
        st.fragment(run_every=refresh)(_lengths_section)(record, model, blocks)
    else:
        st.info("The unrolled view is for residual nets: add one to the models (e.g. resnet-56) to see its paths.")
    render_lens_section(record, refresh)  # what the lesion study below explains: late blocks only refine
    _lesion_section(record, settings, request, refresh)


# ---- the formulas and the drawing -----------------------------------------------------------------
def _formulas_and_drawing(record, model: str, blocks: int) -> None:
    formulas, drawing = st.columns([3, 2], gap="large")
    with formulas:
        st.markdown(f"**{model}** has {blocks} residual blocks: unrolled, 2{_superscript(blocks)} = {_paths_text(2.0 ** blocks)} "
                    "paths from input to output, one for each choice of skip or branch at every block. "
                    "For the first few blocks:")
        for line in charts_paths.expansion_latex(blocks):
            st.latex(line)
        st.caption("Jᵢ: the Jacobian of residual branch i. Sᵢ: its skip — the identity, a projection where the "
                   "shape changes, times the ReLU after the addition in original blocks (the identity in "
                   "pre-activation ones). gₖ: the gradient through all paths with exactly k branches.")
    with drawing:
        top = min(blocks, charts_paths.MAX_DRAWN_BLOCKS)
        n = st.slider("Blocks to draw", 1, top, min(top, 3), key="paths_drawn") if top > 1 else 1
        share = {}
        if n == blocks:  # the measured shares belong to the whole stack: only label a drawing of all of it
            rows = _latest(record.paths_frame(), model)
            share = dict(zip(rows["length"].astype(int), rows["share"])) if rows is not None else {}
        drawing_key = (n, tuple(sorted(share.items())))
        chart(_cached("drawing", drawing_key, lambda: charts_paths.path_drawing_figure(n, share)),
                        key="paths_drawing", config=CHART_CONFIG)
        if n < blocks:
            st.caption(f"All {2 ** n} paths through {n} blocks; {model}'s {blocks} blocks have {_paths_text(2.0 ** blocks)}.")


# ---- paths per length, live ------------------------------------------------------------------------
def _lengths_section(record, model: str, blocks: int) -> None:
    paths = record.paths_frame()
    paths = paths[paths["model"] == model]
    rows = _latest(paths, model)
    if rows is None:
        st.info("No path analysis yet: it runs at step 0 and every *paths every* steps while training "
                "(set paths_every above 0).")
        return
    color = model_colors(record.models()).get(model, "#1D4E89")
    s = summary_from_rows(rows)
    counts = path_counts(blocks)
    in_range = counts[s["range_lo"]:s["range_hi"] + 1].sum() / counts.sum()
    step = int(rows["step"].iloc[0])
    cards = st.columns(4)
    cards[0].metric("Gradient-weighted mean length", f"{s['mean_length']:.1f}",
                    help="Σₖ k‖gₖ‖ / Σₖ ‖gₖ‖: how many residual branches the gradient's paths pass through, on average.")
    cards[1].metric("Mean length of all paths", f"{blocks / 2:g}", help="n/2: each of the 2ⁿ paths counted once (binomial).")
    cards[2].metric("90 % of the gradient", f"lengths {s['range_lo']}–{s['range_hi']}",
                    help="The shortest range of path lengths whose ‖gₖ‖ add up to 90 % of Σₖ ‖gₖ‖.")
    cards[3].metric("Paths in that range", f"{_percent(in_range)} of all",
                    help="Veit et al. (2016): in ResNet-110 almost all gradient came from paths of 5–17 blocks, 0.45 % of all paths.")
    data_key = (id(record), model, blocks, len(paths), step)  # a new analysis adds rows
    chart(_cached("lengths", data_key, lambda: charts_paths.length_figure(rows, blocks, color)),
                    key="paths_lengths", config=CHART_CONFIG)
    fig = _cached("per_path", data_key, lambda: charts_paths.per_path_figure(rows, color))
    over_time = _cached("mean", data_key, lambda: charts_paths.mean_length_figure(paths, blocks, color))
    if fig is None:  # a record without Veit et al.'s sampled per-path norms
        chart(over_time, key="paths_mean", config=CHART_CONFIG)
    else:
        left, right = st.columns(2, gap="large")
        chart(fig, key="paths_per_path", config=CHART_CONFIG, where=left)
        chart(over_time, key="paths_mean", config=CHART_CONFIG, where=right)
    exact = ("every length" if s["cutoff"] >= blocks
             else f"lengths 0–{s['cutoff']}; longer paths change the sum by less than 10⁻⁴")
    st.caption(f"Step {step}. The gradient of the mean loss on a fixed probe batch (the first 256 training points, "
               f"fewer for images), at the input of the block stack, "
               f"split exactly by path length ({exact}). Σₖ gₖ matches autograd's gradient to "
               f"{s['residual']:.0e} relative. BN acts as a fixed affine map with the probe batch's statistics. "
               "Few paths are short and few are long; the gradient flows through the short ones: each residual "
               "branch a path passes through shrinks it (Veit et al. 2016).")


# ---- the lesion study ------------------------------------------------------------------------------
def _lesion_section(record, settings: Settings | None, request, refresh: float | None) -> None:
    st.markdown("#### Lesion study: delete one block at test time")
    st.caption("Each block in turn is removed from the trained net (its output becomes its input) and the training "
               "error measured. Veit et al. (2016): a residual net barely notices, except where a block changes the "
               "shape; removing a layer of a plain net is catastrophic.")
    if request is not None and st.button("Run lesion study", key="paths_run_lesion",
                                         help="Deletes each block of every model in turn (takes a few seconds)."):
        with st.spinner("Deleting each block in turn…"):
            try:
                request("lesion_study")
            except Exception as exc:  # noqa: BLE001 - the job's message, shown instead of a traceback
                st.error(f"The lesion study did not run: {literal(exc)}")
    st.fragment(run_every=refresh)(_lesion_chart)(record, settings, request is not None)


def _lesion_chart(record, settings: Settings | None, live: bool) -> None:
    lesion = record.lesion_frame()
    if lesion.empty:
        st.info("No lesion study yet: press **Run lesion study**." if live else
                "This run has no lesion study (a run from the command line records one at its end, lesion.csv).")
        return
    shape_changes = {}
    if settings is not None:
        for model in dict.fromkeys(lesion["model"]):
            try:
                shape_changes[model] = settings.stage_starts(model)
            except (SettingsError, ValueError):
                pass
    lesion_key = (id(record), int(pd.util.hash_pandas_object(lesion).sum()))
    chart(_cached("lesion", lesion_key, lambda: charts_paths.lesion_figure(lesion, shape_changes)),
                    key="paths_lesion", config=CHART_CONFIG)
    summary = charts_paths.lesion_summary(lesion).rename(columns={
        "intact": "nothing deleted", "median_deleted": "one block deleted (median)",
        "worst_deleted": "one block deleted (worst)"})
    st.dataframe(summary, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="percent") for c in summary.columns if c != "model"})
    if any(shape_changes.values()):
        st.caption("◇ a block that changes the shape (first of a stage): a residual net keeps its projection or "
                   "padding when it is deleted; a plain block there cannot be deleted at all (✕ changes shape).")


# ---- helpers ---------------------------------------------------------------------------------------
def _cached(name: str, key, build):
    """A figure rebuilt only when its data changed: the live fragment reruns every few seconds,
    and building the figures cost ~100 ms of the server's time, most of it for nothing."""
    store = st.session_state.setdefault("_paths_figures", {})
    hit = store.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]
    figure = build()
    store[name] = (key, figure)
    return figure


def _settings(record, settings) -> Settings | None:
    if isinstance(settings, Settings):
        return settings
    try:
        return Settings.from_dict(record.config.get("settings", {}))
    except (SettingsError, TypeError, ValueError):
        return None


def _family(model: str) -> str:
    try:
        return parse_model_name(model).family
    except SettingsError:
        return ""


def _blocks(record, model: str) -> int:
    for entry in record.config.get("models", []):
        if entry.get("name") == model and entry.get("blocks"):
            return int(entry["blocks"])
    rows = _latest(record.paths_frame(), model)  # a record without its config: C(n, 1) = n
    return int(summary_from_rows(rows)["blocks"]) if rows is not None else 0


def _latest(paths: pd.DataFrame, model: str) -> pd.DataFrame | None:
    rows = paths[paths["model"] == model]
    if rows.empty:
        return None
    return rows[rows["step"] == rows["step"].max()]


def _paths_text(count: float) -> str:
    """1,048,576 or 1.3 × 10¹⁵⁰."""
    if count < 1e7:
        return f"{count:,.0f}"
    mantissa, exponent = f"{count:.1e}".split("e")
    return f"{mantissa} × 10{_superscript(int(exponent))}"


def _superscript(i: int) -> str:
    return str(i).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def _percent(fraction: float) -> str:
    if not math.isfinite(fraction):
        return "—"
    return f"{fraction:.2%}" if fraction < 0.1 else f"{fraction:.0%}"
