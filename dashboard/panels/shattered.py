"""The shattered-gradients panel: df/dx of one-input, one-output nets along a line of inputs, and the
correlation of neighbouring gradients against depth, plain against residual (Balduzzi et al. 2017).

The nets are untrained (the paper's point is about initialisation) and small, but dozens of them are
built: the work is a job on the server's scheduler (time slices on a worker process, beside
everyone's training), and the chart fills in depth by depth while a fragment refreshes.
"""
from __future__ import annotations

import streamlit as st

from dashboard.charts.studies import correlation_figure, gradient_curves_figure
from dashboard.panels.study import Study, open_study
from dashboard.panels.shared import page_id, scheduler
from resnet_core.scheduling.analysis_run import AnalysisRun, start_analysis
from resnet_core.settings import Settings, SettingsError
from resnet_core.analysis.shattered import (DEFAULT_BRANCH_LAYERS, DEFAULT_DEPTHS, POINTS, check_depths, check_memory,
                                            scalar_settings)
from dashboard.text import literal
from dashboard.panels.accessible import chart

REFRESH_S = 1.0
WIDTHS = (64, 128, 200)
MAX_DEPTH = 80


def caption() -> None:
    st.markdown("**What to look for**")
    st.markdown(
        f"Nets with one input and one output, at initialisation (He init, batch norm as in the paper's plots). "
        f"The gradient df/dx at {POINTS} inputs on a line from −2 to 2: a shallow net's gradient wanders smoothly "
        "(brown noise); a deep **plain** net's jumps from one input to the next as if at random (white noise) — "
        "its gradients are *shattered*, and tell the optimiser little about the neighbourhood. The **residual** "
        "net of the same depth keeps them correlated. Below, the correlation between neighbours' gradients: it "
        "falls exponentially with depth for plain nets (about 2⁻ᴸ) and only like 1/√L for residual nets. "
        "Balduzzi et al. (2017), *The Shattered Gradients Problem*, Figs. 1–2. Try two layers per branch: each "
        "branch is then a small plain net of its own, and the residual net's gradients shatter faster too.")


def render_shattered_panel(settings: Settings) -> None:
    state = open_study("shattered", caption)
    running = state.running
    cols = st.columns([4, 1, 1, 1, 1])
    branch = cols[4].segmented_control(
        "Layers per branch", [1, 2, 3], default=DEFAULT_BRANCH_LAYERS, required=True, key="shattered_branch",
        help="1, as in the paper's analysis (x + W·relu(BN x)); a branch of two or more layers is itself a small "
             "plain net and shatters too")
    base = scalar_settings(block=settings.block, branch_layers=branch)
    valid = base.valid_depths(limit=MAX_DEPTH)
    default = [d for d in DEFAULT_DEPTHS if d in valid] or valid[::max(1, len(valid) // 6)][:6]
    depths = cols[0].multiselect("Depths", valid, default=default, key=f"shattered_depths_{branch}")
    width = cols[1].selectbox("Width", WIDTHS, index=1, key="shattered_width")
    seeds = cols[2].number_input("Seeds", 1, 8, 3, key="shattered_seeds", help="nets per depth and family")
    block = cols[3].segmented_control("Block", ["post", "pre"], default=settings.block, required=True,
                                      key="shattered_block", help="original (post-) or pre-activation residual block")
    if st.button("Run", type="primary", disabled=running, key="shattered_run", icon=":material/play_arrow:") \
            and not running:
        try:
            chosen = check_depths(depths, base)
            check_memory(chosen, int(width), "batch", block, branch)
        except SettingsError as exc:
            st.error(literal(str(exc)), icon=":material/error:")
        else:
            args = {"depths": list(chosen), "seeds": list(range(int(seeds))), "width": int(width), "norm": "batch",
                    "block": block, "branch_layers": branch}
            state.request = args
            # a worker, on a GPU too; in this tab's share, with its training
            state.run = start_analysis(scheduler(), "shattered", [args], _on_event, label="shattered", owner=page_id())
            st.rerun()  # redraw with Run disabled and the refreshing results
    st.fragment(run_every=REFRESH_S if running else None)(_results)(state, running)


def _on_event(run: AnalysisRun, event) -> None:
    if event.partial is not None:
        run.set_progress(event.partial["progress"], "building nets")
        run.add(event.partial["result"])
    else:
        run.add(event.result)


def _results(state: Study, was_running: bool) -> None:
    run: AnalysisRun | None = state.run
    if run is None:
        st.info("Press **Run**: about a hundred small nets, a few seconds.", icon=":material/info:")
        return
    results = run.snapshot()
    if not run.done:
        st.progress(run.progress, text=f"{run.status or 'starting'} · {run.elapsed:.0f} s")
    elif run.error:
        st.error(f"Could not compute the gradients: {literal(run.error)}", icon=":material/error:")
    if results:
        result = results[-1]
        left, right = st.columns([1, 1], gap="large")
        with left:
            chart(correlation_figure(result), key="shattered_correlation")
            _numbers(result)
        with right:
            chart(gradient_curves_figure(result), key="shattered_curves")
    if was_running and run.done:
        st.rerun()  # once more, so the refresh timer switches off


def _numbers(result: dict) -> None:
    depth = result["depths"][-1]
    plain = sum(result["correlation"]["plain"][-1]) / len(result["correlation"]["plain"][-1])
    resnet = sum(result["correlation"]["resnet"][-1]) / len(result["correlation"]["resnet"][-1])
    a, b = st.columns(2)
    a.metric(f"plain-{depth}: neighbour correlation", f"{plain:.2f}")
    b.metric(f"resnet-{depth}: neighbour correlation", f"{resnet:.2f}")
    st.caption("1 = neighbours share their gradient; 0 = white noise. Values at or below 0.01 (and negative "
               "ones, which are noise) are drawn on the floor of the log axis as open circles.")
