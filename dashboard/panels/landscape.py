"""The loss-landscape panel: the deepest plain net of the settings and its residual twin, briefly
trained, then the loss around each along filter-normalised random directions (Li et al. 2018).

Training and the grids are a job on the server's scheduler (time slices on a worker process,
beside everyone's training). A tab's jobs go to the same process when they can: it keeps the last
twins it trained, so "Refine" computes a finer grid without training again. Each net's landscape
is shown as soon as it is ready; the page refreshes only while it computes.
"""
from __future__ import annotations

import streamlit as st

from dashboard.charts.studies import landscape_line_figure, landscape_range, landscape_surface_figure
from dashboard.panels.study import Study, open_study
from dashboard.panels.shared import page_id, scheduler
from resnet_core.scheduling.analysis_run import AnalysisRun, start_analysis
from dashboard.text import literal
from dashboard.panels.accessible import chart as draw_chart
from resnet_core.analysis.landscape import COARSE, FINE, LINE_POINTS, twin_depth, twin_settings
from resnet_core.sizing.budget import check_settings
from resnet_core.settings import Settings, SettingsError, check_depth

REFRESH_S = 1.0
REFINE_SIZES = (FINE, 31, 41)
MAX_DEPTH = 110


def caption() -> None:
    st.markdown("**What to look for**")
    st.markdown(
        "The loss around the trained weights θ at θ + a·d₁ + b·d₂, where d₁ and d₂ are random directions "
        "scaled filter by filter (for a dense layer, neuron by neuron) to the trained weights' own norms, biases "
        "and batch-norm entries left alone. Without skips the surface turns chaotic as depth grows — many "
        "non-convex points, cliffs and plateaus; with skips it stays a single smooth bowl. "
        "Li, Xu, Taylor, Studer & Goldstein (2018), *Visualizing the Loss Landscape of Neural Nets*, Fig. 5: "
        "ResNet-56 with and without skip connections on CIFAR-10. Colour is log₁₀ of the loss; the star is θ.")


def render_landscape_panel(settings: Settings) -> None:
    state = open_study("landscape", caption)
    run, running = state.run, state.running
    valid = settings.valid_depths(limit=MAX_DEPTH)
    wanted = twin_depth(settings)
    default = wanted if wanted in valid else valid[-1]  # a 1000-layer grid would not come back in class time
    cols = st.columns([1, 1, 1, 1])
    depth = cols[0].selectbox("Depth of the twins", valid, index=valid.index(default), key="landscape_depth",
                              help="plain-D and resnet-D: the same initial weights and batches, with and without skips")
    steps = cols[1].number_input("Training steps", 0, 5000, min(settings.steps, 2000), step=50, key="landscape_steps",
                                 help="0: the landscape at initialisation")
    seed = cols[2].number_input("Direction seed", 0, 10_000, 0, key="landscape_seed",
                                help="another pair of random directions through the same trained weights")
    kind = cols[3].segmented_control("View", ["contour", "surface"], default="contour", required=True,
                                     key="landscape_kind")
    request = {"settings": settings.to_dict(), "depth": int(depth), "steps": int(steps), "seed": int(seed)}
    b1, b2, b3, b4, _ = st.columns([1, 1, 1, 1, 2])
    go_coarse = b1.button(f"Run ({COARSE}×{COARSE})", type="primary", disabled=running, key="landscape_run",
                          icon=":material/play_arrow:")
    fine = b3.selectbox("Refined grid", REFINE_SIZES, key="landscape_fine", label_visibility="collapsed",
                        format_func=lambda n: f"{n}×{n} grid")
    same = state.request is not None and {k: v for k, v in state.request.items() if k != "grid"} == request
    go_fine = b2.button("Refine", disabled=running or not same, key="landscape_refine", icon=":material/grid_on:",
                        help="a finer grid around the same trained nets (no training again)")
    if b4.button("Stop", disabled=not running, key="landscape_stop", icon=":material/stop:"):
        run.cancel()
    if (go_coarse or go_fine) and not running:
        error = _start(state, settings, {**request, "grid": COARSE if go_coarse else int(fine)})
        if error:
            st.error(error, icon=":material/error:")
        else:
            st.rerun()  # redraw with the buttons disabled and the refreshing results
    st.fragment(run_every=REFRESH_S if running else None)(_results)(state, running, kind)


def _start(state: Study, settings: Settings, request: dict) -> str | None:
    try:
        check_depth(settings, request["depth"])
        check_settings(twin_settings(settings, request["depth"], request["steps"]))
    except SettingsError as exc:
        return literal(str(exc))
    args = {"settings": {**request["settings"]}, "depth": request["depth"], "steps": request["steps"],
            "grid": request["grid"], "line": LINE_POINTS, "seed": request["seed"]}
    state.request = request
    # a worker process, on a GPU too: the server never imports torch
    state.run = start_analysis(scheduler(), "landscape", [args], _on_event, affinity=state.affinity, label="landscape",
                               owner=page_id())
    return None


def _on_event(run: AnalysisRun, event) -> None:
    partial = event.partial or {}
    if "progress" in partial:
        words = "training the twins" if partial.get("stage") == "training" else "computing the grid"
        run.set_progress(partial["progress"], words)
    if "landscape" in partial:
        run.add((partial["model"], partial["landscape"]))
    if event.result is not None:
        run.set_progress(1.0, "done")


def _results(state: Study, was_running: bool, kind: str) -> None:
    run: AnalysisRun | None = state.run
    if run is None:
        st.info("Press **Run** to train the twins briefly and compute their landscapes on a coarse grid; "
                "**Refine** then computes a finer one.", icon=":material/info:")
        return
    views = dict(run.snapshot())
    request = state.request
    if not run.done:
        st.progress(run.progress, text=f"{run.status or 'starting'} · {run.elapsed:.0f} s")
    elif run.error:
        st.error(f"The landscape could not be computed: {literal(run.error)}", icon=":material/error:")
    elif run.cancelled:
        st.warning("Stopped.", icon=":material/stop_circle:")
    else:
        st.caption(f"plain-{request['depth']} and resnet-{request['depth']} after {max(request['steps'], 0)} steps; "
                   f"{request['grid']}×{request['grid']} grid in {run.elapsed:.1f} s.")
    if views:
        zrange = landscape_range(views)
        columns = st.columns(2, gap="large")
        for col, family in zip(columns, ("plain", "resnet")):
            name = f"{family}-{request['depth']}"
            with col:
                st.markdown(f"**{name}**" + (" — no skips" if family == "plain" else " — with skips"))
                if name not in views:
                    st.caption("computing…")
                    continue
                view = views[name]
                chart, numbers = st.columns([3, 1])
                draw_chart(landscape_surface_figure(view, zrange, kind), key=f"landscape_{family}", where=chart)
                with numbers:
                    _roughness(view, views.get(f"{'resnet' if family == 'plain' else 'plain'}-{request['depth']}"))
        draw_chart(landscape_line_figure(views), key="landscape_line")
        st.caption("Above: the loss along direction 1 alone (a = 0 is the trained net), log scale.")
    if was_running and run.done:
        st.rerun()  # once more, so the refresh timer switches off


def _roughness(view: dict, other: dict | None) -> None:
    r = view["roughness"]
    st.metric("loss at θ", compact(view["centre_loss"]))
    st.metric("non-convex", f"{100 * r['nonconvex_fraction']:.0f} %",
              help="grid points where the surface curves down in some direction (finite-difference Hessian "
                   "with a negative eigenvalue at least 10 % of the positive one), as Li et al. map |λmin/λmax|")
    st.metric("local minima", r["local_minima"], help="grid points lower than all eight neighbours")
    st.metric("loss range", compact(r["loss_range"]), help="max − min of the loss over the grid")
    if other is not None and other["roughness"]["loss_range"] > 0 and view["model"].startswith("plain"):
        st.caption(f"{compact(r['loss_range'] / other['roughness']['loss_range'])}× its twin's range")


def compact(value: float) -> str:
    """3 significant digits in a metric's narrow column: 0.0449, 453, 2.7e11."""
    if value != value:
        return "—"
    if abs(value) < 1000:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"
