"""Residual Lab: plain and residual networks training side by side, live.

    streamlit run dashboard/app.py

Layout and wiring only: the sidebar (``controls``) edits the settings, the link (``url_state``)
carries them, a per-session ``TrainingJob`` (``jobs``) trains in a worker process, and the panels
(``live_panels`` and the panel_* modules) draw what the run recorded.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import dashboard.boot  # noqa: E402,F401  heavy imports, then gc.freeze(), once per process

import streamlit as st  # noqa: E402

import dashboard.sidebar.controls as controls  # noqa: E402
import dashboard.runtime.jobs as jobs  # noqa: E402
import dashboard.panels.live as panels  # noqa: E402
import dashboard.panels.records as records_tab  # noqa: E402
import dashboard.panels.teaching as teaching  # noqa: E402
import dashboard.sidebar.url_state as url_state  # noqa: E402
import dashboard.runtime.worker_pool as worker_pool  # noqa: E402
from dashboard.panels.landscape import render_landscape_panel  # noqa: E402
from dashboard.panels.lesson import render_lesson_panel  # noqa: E402
from dashboard.panels.paths import render_paths_panel  # noqa: E402
from dashboard.panels.shattered import render_shattered_panel  # noqa: E402
from dashboard.panels.sweep import render_sweep_panel  # noqa: E402
from resnet_core.lessons import LESSONS  # noqa: E402
from resnet_core.settings import Settings  # noqa: E402

LIVE_EVERY_S = 1.0       # cards and curves
HEAVY_EVERY_S = 2.5      # heatmaps, profiles, maps: bigger payloads, slower to read anyway
MAX_NOTES = 12           # lines of the warning about a link's values; the rest are counted


@st.cache_resource(on_release=worker_pool.WorkerPool.close, show_spinner=False)
def training_pool() -> worker_pool.WorkerPool:
    """Server-wide: the cap on sessions training at once (env RESIDUAL_LAB_MAX_TRAINING)."""
    return worker_pool.WorkerPool()


@st.cache_resource(scope="session", on_release=jobs.TrainingJob.stop, validate=lambda job: job.alive,
                   show_spinner=False)
def training_job(_settings: Settings | None) -> jobs.TrainingJob:
    """This browser tab's trainer; released (and stopped) a few seconds after the tab closes.
    A job found stopped (its thread ended) is replaced. It starts with the page's settings (the
    leading underscore keeps them out of the cache key), so opening the page issues no reset
    and the page has nothing to wait for."""
    return jobs.TrainingJob(training_pool(), _settings)


def main() -> None:
    st.set_page_config(page_title="Residual Lab", page_icon=":material/stacked_line_chart:", layout="wide",
                       initial_sidebar_state="expanded")
    notes = controls.start_session(st.query_params)
    teaching.page_style(bool(st.session_state.get("presenter")))
    sidebar = controls.render_sidebar()
    job = training_job(sidebar.settings)
    apply_settings(job, sidebar, notes)
    apply_buttons(job, sidebar)

    replay = records_tab.replay_view()
    source = (lambda: replay) if replay is not None else (lambda: live_view(job))
    view = source()
    polling = replay is None and view.active

    def live(function, every: float):
        """``function`` as a fragment that refreshes itself only while something trains."""
        return st.fragment(run_every=every if polling else None)(function)

    teaching.title()
    header = st.empty()  # filled by the open tab's fragment (see live_panels.header_in)
    lesson = st.session_state.get("lesson")
    if lesson and lesson in LESSONS:  # the verdict follows the run as it trains
        live(lesson_verdict, LIVE_EVERY_S)(lesson, source)
    request = job.request if replay is None and view.record is not None else None
    render_tabs(view, source, live, header, polling, request)


def lesson_verdict(lesson: str, source) -> None:
    render_lesson_panel(lesson, source().record)


def apply_settings(job: jobs.TrainingJob, sidebar: controls.SidebarResult, notes: list[str]) -> None:
    """Sidebar -> job (reset, or a live change of lr/steps) and -> link."""
    if notes:  # each note quotes the link's values as code (url_state), so none of them renders as markup
        shown = notes[:MAX_NOTES] + ([f"… and {len(notes) - MAX_NOTES} more"] if len(notes) > MAX_NOTES else [])
        st.warning("The link asked for values that are not allowed; adjusted:\n\n" + "\n".join(f"- {n}" for n in shown),
                   icon=":material/tune:")
    if sidebar.error:  # already escaped where it quotes the user (controls)
        st.error(sidebar.error, icon=":material/error:")
    elif sidebar.settings is not None and job.update_settings(sidebar.settings) == "reset":
        st.toast("That setting changes the models, so the run was reset: press Train to start again.",
                 icon=":material/restart_alt:")
    wanted = url_state.encode(controls.view_state())
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def apply_buttons(job: jobs.TrainingJob, sidebar: controls.SidebarResult) -> None:
    pressed = sidebar.pressed
    if pressed & {"train", "step", "reset"}:
        st.session_state.pop("replay", None)  # back to the live run
    if "reset" in pressed:
        job.reset(sidebar.settings)
    if "pause" in pressed:
        job.pause()
    if sidebar.error is None:
        if "train" in pressed:
            job.train()
        if "step" in pressed:
            job.step()


def live_view(job: jobs.TrainingJob) -> panels.View:
    s = job.status()
    return panels.View(s.record, s.settings, s.step, s.state, "live", s.queue_position, s.error, s.notice,
                       job.pool.stats(), s.pending)


def render_tabs(view: panels.View, source, live, header, polling: bool, request) -> None:
    """Only the open tab runs (and refreshes): a hidden heatmap costs nothing. The header (step
    counter and cards) refreshes every second from the open tab's fragment; on the Training error
    tab that same run redraws the curves."""
    labels = ["Training error", "Gradients", "Signals"]
    if panels.is_2d(view.settings.dataset):
        labels.append("Decision regions")
    labels += ["Unrolled paths", "Depth sweep", "Loss landscape", "Shattered gradients", "Records"]
    tabs = dict(zip(labels, st.tabs(labels, key="tab", on_change="rerun")))
    opened = next((label for label, tab in tabs.items() if tab.open), labels[0])
    with tabs[opened]:
        if opened == "Training error":
            chart, words = st.columns([3, 1], gap="large")
            with words:
                show = st.segmented_control("Show", ["error", "loss"], key="curve_kind", default="error",
                                            required=True, label_visibility="collapsed")
                teaching.training_caption()
            with chart:
                live(panels.header_and_curves, LIVE_EVERY_S)(header, source, polling, show)
            return
        live(panels.header_in, LIVE_EVERY_S)(header, source, polling)
        if opened == "Gradients":
            live(panels.gradients, HEAVY_EVERY_S)(source)
            teaching.gradients_caption(view.settings)
        elif opened == "Signals":
            sort = st.toggle("Sort layers by magnitude (the lower plot of Fig. 7)", key="sort_std")
            live(panels.signals, HEAVY_EVERY_S)(source, sort)
            teaching.signals_caption()
        elif opened == "Decision regions":
            live(panels.regions, HEAVY_EVERY_S)(source)
            teaching.regions_caption()
        elif opened == "Unrolled paths":
            render_paths_panel(view.record, view.settings, request)
        elif opened == "Depth sweep":
            render_sweep_panel(view.settings)
        elif opened == "Loss landscape":
            render_landscape_panel(view.settings)
        elif opened == "Shattered gradients":
            render_shattered_panel(view.settings)
        elif opened == "Records":
            records_tab.render(view, controls.view_state())


# Only when Streamlit runs this script: importing it (tests/test_app.py does) must not run the page.
if __name__ == "__main__":
    main()
