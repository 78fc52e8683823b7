"""The depth sweep panel: the degradation curve, plain against residual, over depths and seeds.

Each (family, depth, seed) is an independent run (``resnet_core.analysis.sweep``), a job on the
server's scheduler: it takes time slices on the worker processes beside everyone's training. The
rows are collected as runs finish and the chart fills in, refreshed by a fragment only while the
sweep runs. Nothing heavy starts before "Run sweep" is pressed.
"""
from __future__ import annotations

import streamlit as st

from dashboard.charts.studies import sweep_figure
from dashboard.charts.sweep_lr import best_lr_per_depth, lr_depth_figure
from dashboard.panels.study import Study, open_study
from dashboard.panels.shared import page_id, scheduler
from resnet_core.scheduling.analysis_run import AnalysisRun, start_analysis
from resnet_core.settings import Settings, SettingsError
from resnet_core.sizing.budget import check_settings
from dashboard.text import literal
from dashboard.panels.accessible import chart
from resnet_core.analysis.sweep import (DEFAULT_DEPTHS, deepest_run, parse_float_list, plan_sweep, result_rows, run_count, sweep_frame,
                                        sweep_summary)

REFRESH_S = 1.0
MAX_SWEEP_DEPTH = 110
DEFAULT_STEPS = 200  # spirals, 200 steps: plain-56 ends near 57 % training error, resnet-56 near 2 %


def caption() -> None:
    st.markdown("**What to look for**")
    st.markdown(
        "Each point is a net trained from scratch; the line is the mean over seeds and the band spans the best "
        "to the worst seed. As depth grows, the **plain** family's *training* error rises (solid: at the end, "
        "dotted: averaged over the run) while the **residual** family's stays low: deeper plain nets are "
        "*harder to optimise*, not overfitting. He et al. (2015), Table 6 and Fig. 6 — on CIFAR-10, plain-56 "
        "trains worse than plain-20 while ResNet-110 reaches 6.43 % test error.")


def default_depths(settings: Settings) -> list[int]:
    valid = settings.valid_depths(limit=MAX_SWEEP_DEPTH)
    chosen = [d for d in DEFAULT_DEPTHS if d in valid]
    if len(chosen) >= 3:
        return chosen
    step = max(1, len(valid) // 6)
    return valid[::step][:6]


def render_sweep_panel(settings: Settings) -> None:
    state = open_study("sweep", caption)
    running = state.running
    valid = settings.valid_depths(limit=MAX_SWEEP_DEPTH)
    cols = st.columns([4, 1, 1, 1])
    depths = cols[0].multiselect("Depths", valid, default=default_depths(settings), key="sweep_depths",
                                 help="Depth counts every weighted layer, as in the paper")
    seeds = cols[1].number_input("Seeds", 1, 6, 3, key="sweep_seeds",
                                 help=f"runs per depth and family, seeds {settings.seed}, {settings.seed + 1}, …")
    steps = cols[2].number_input("Steps per run", 10, 5000, min(settings.steps, DEFAULT_STEPS), step=50,
                                 key="sweep_steps", help="200 already separates the families on spirals")
    most = max(1, scheduler().size)
    workers = cols[3].number_input("Processes", 1, most, most, key="sweep_workers",
                                   help=f"of the server's {most} worker process(es), how many the sweep takes "
                                        "turns on, beside everyone's training; each trains a depth's runs "
                                        "side by side (its seeds and both families in shared stacks)")
    lrs_text = st.text_input("Learning rates", "", key="sweep_lrs", placeholder=f"{settings.lr:g} (the sidebar's)",
                             help="comma-separated, e.g. 0.01,0.03,0.1,0.3: every depth at each; the chart becomes "
                                  "a learning rate × depth heatmap per family (depth-μP, Yang et al. 2023)")
    start, stop = st.columns([1, 5])
    if start.button("Run sweep", type="primary", disabled=running, key="sweep_run", icon=":material/play_arrow:") \
            and not running:
        try:
            lrs = parse_float_list(lrs_text, "Learning rates") if lrs_text.strip() else None
            jobs = plan_sweep(settings, depths, range(settings.seed, settings.seed + int(seeds)), steps=int(steps),
                              lrs=lrs, cores=int(workers))
            check_settings(deepest_run(jobs))  # the deepest run, in each process
        except SettingsError as exc:
            st.error(literal(str(exc)), icon=":material/error:")
        else:
            # worker processes, on a GPU too: the server never imports torch
            state.run = start_analysis(scheduler(), "train", jobs, _on_event(len(jobs)), parallel=int(workers),
                                       label="sweep", owner=page_id())  # one share with the tab's training
            state.total, state.label = run_count(jobs), f"{settings.dataset}, {int(steps)} steps per run"
            state.request = {"branch_scale": settings.branch_scale, "lrs": lrs}
            st.rerun()  # redraw with Run disabled and the refreshing results
    if stop.button("Stop", disabled=not running, key="sweep_stop", icon=":material/stop:"):
        state.run.cancel()
    st.fragment(run_every=REFRESH_S if running else None)(_results)(state, running)


def _on_event(total: int):
    """Each job's progress into the bar, each finished job's rows (one per run when its runs
    trained side by side) into the results."""
    fraction = [0.0] * total

    def on_event(run: AnalysisRun, event) -> None:
        if event.partial is not None:
            fraction[event.index] = event.partial["step"] / max(event.partial["steps"], 1)
        else:
            fraction[event.index] = 1.0
            for row in result_rows(event.result):
                run.add(row)
        run.set_progress(sum(fraction) / max(total, 1), "training")

    return on_event


def _lr_heatmap(frame, branch_scale: str) -> None:
    scale = " (branches × 1/√L)" if branch_scale == "invsqrt" else " (branch scale 1)"
    chart(lr_depth_figure(frame, scale), key="sweep_lr_chart")
    moves = {f: sorted(set(best_lr_per_depth(frame, f).values())) for f in dict.fromkeys(frame["family"])}
    st.caption("Mean final training error over seeds; ★ the best learning rate of each depth. Depth-μP (Yang et al. "
               "2023; Bordelon et al. 2023) predicts that with branches scaled by 1/√L the best rate stays put as depth "
               "grows, and that at branch scale 1 it shifts; their evidence is CIFAR-10 and ImageNet, so whether it "
               "shows here is what this chart measures. Best rates on this sweep: "
               + "; ".join(f"{f}: {', '.join(f'{lr:g}' for lr in lrs)}" for f, lrs in moves.items())
               + ". Switch the sidebar's branch scale and sweep again to compare.")


def _results(state: Study, was_running: bool) -> None:
    run: AnalysisRun | None = state.run
    if run is None:
        st.info("Choose depths and seeds, then press **Run sweep**. On spirals, six depths × three seeds × two "
                "families at 200 steps take about a minute on two free cores.", icon=":material/info:")
        return
    rows = run.snapshot()
    total = state.total
    if not run.done:
        words = run.status or "starting"
        st.progress(run.progress, text=f"{len(rows)} of {total} runs done · {words} · {run.elapsed:.0f} s")
    elif run.cancelled:
        st.warning(f"Stopped after {len(rows)} of {total} runs.", icon=":material/stop_circle:")
    elif run.error is None:
        st.caption(f"{total} runs in {run.elapsed:.0f} s ({state.label}).")
    if run.error:
        st.error(f"The sweep stopped: {literal(run.error)}", icon=":material/error:")
    if rows:
        frame = sweep_frame(rows)
        if frame["lr"].nunique() > 1:
            _lr_heatmap(frame, (state.request or {}).get("branch_scale", "1"))
        else:
            chart(sweep_figure(frame), key="sweep_chart")
        diverged = int(frame["train_error"].isna().sum())
        if diverged:
            st.caption(f"{diverged} run(s) diverged and are left out of the lines.")
        with st.expander("Numbers (mean over seeds) and sweep.csv"):
            table = sweep_summary(frame)
            st.dataframe(table, hide_index=True, key="sweep_table")
            st.download_button("Download sweep.csv", frame.to_csv(index=False), file_name="sweep.csv",
                               mime="text/csv", on_click="ignore", key="sweep_download")
    if was_running and run.done:
        st.rerun()  # the whole page once more, so the refresh timer switches off
