"""Residual Lab: plain and residual networks training side by side, live.

    streamlit run dashboard/app.py

Layout and wiring only: the sidebar (``dashboard.sidebar``) edits the settings, the link
(``sidebar.url_state``) carries them, the tab's ``Session`` (``dashboard.runtime.session``) trains in a
worker process of the server's ``Scheduler`` (one budget of processes, shared fairly by every
session's training and analyses), and the tabs (``panels.tabs``, one table) draw what the run
recorded.
"""
from __future__ import annotations

import dashboard.prestart  # noqa: F401  first: the first worker process warms up while the rest loads
import dashboard.boot  # noqa: F401  heavy imports, then gc.freeze(), once per process
import dashboard.server_log  # noqa: F401  a browser leaving mid-message is one log line, not a traceback

import time
from pathlib import Path

import streamlit as st

import dashboard.sidebar.controls as controls
from dashboard.runtime.session import Session
import dashboard.panels.live as panels
import dashboard.panels.records as records_tab
import dashboard.panels.tabs as tabs
import dashboard.panels.teaching as teaching
import dashboard.sidebar.url_state as url_state
from dashboard.panels.lesson import render_lesson_panel
from dashboard.panels.redraw import CURVES_EVERY_S
from dashboard.panels.visibility import page_visible
from dashboard.panels.shared import class_runs, client_address, page_id, refresh_pacer, scheduler
from resnet_core.lessons import LESSONS
from resnet_core.settings import Settings

ICON = Path(__file__).resolve().parent / "assets" / "icon.png"
STARTING_EVERY_S = 0.25  # while the models are built and until they take a step: it shows as soon as taken
CLICK_SETTLE_S = 0.8     # a Train or Step click's own run waits this long at most for the first step
MAX_NOTES = 12  # lines of the warning about a link's values; the rest are counted


@st.cache_resource(scope="session", on_release=Session.stop, validate=lambda session: session.alive,
                   show_spinner=False)
def tab_session(_settings: Settings | None) -> Session:
    """This browser tab's training; released (and stopped) a few seconds after the tab closes.
    A session found stopped is replaced. It starts with the page's settings (the
    leading underscore keeps them out of the cache key), so opening the page issues no reset
    and the page has nothing to wait for. Its runs are charged to this tab (``page_id``), which
    shares the worker processes with every other tab, whatever each has running."""
    return Session(scheduler(), _settings, class_runs(), owner=page_id(), client=client_address())


def main() -> None:
    # The icon is a file of ours: a Material icon here is fetched from a font server (a classroom may be offline).
    st.set_page_config(page_title="Residual Lab", page_icon=str(ICON), layout="wide",
                       initial_sidebar_state="expanded")
    scheduler()  # first thing on the server's first page view: its first worker warms up meanwhile
    notes = controls.start_session(st.query_params)
    teaching.page_style(bool(st.session_state.get("presenter")))
    sidebar = controls.render_sidebar()
    session = tab_session(sidebar.settings)
    apply_settings(session, sidebar, notes)
    apply_buttons(session, sidebar)

    seen = page_visible()  # a hidden page refreshes nothing (panels.visibility)
    replay = records_tab.replay_view()
    source = (lambda: replay) if replay is not None else (lambda: live_view(session))
    view = source()
    polling = replay is None and view.active and seen
    starting = polling and view.first_step_coming
    st.session_state[panels.QUICK_STATE] = starting  # the header reruns the page once the first step shows

    def live(function, every: float):
        """``function`` as a fragment that refreshes itself only while something trains: every
        ``every`` seconds, or less often while many pages refresh (``runtime.refresh``)."""
        if not polling:
            return st.fragment(function)
        key = f"{page_id()}@{every}"  # one page's fragments of one base pace
        if starting:  # the header reruns the page once the first step shows
            pace = STARTING_EVERY_S
            st.session_state.pop(panels.PACE_STATE, None)
        else:
            pace = refresh_pacer().every(every, key)
            st.session_state[panels.PACE_STATE] = (every, pace, key)
            st.session_state["_pace_checked"] = time.monotonic()
        return st.fragment(run_every=pace)(refresh_pacer().timed(key, function))

    teaching.title()
    header = st.empty()  # filled by the open tab's fragment (see live_panels.header_in)
    lesson = st.session_state.get("lesson")
    if lesson and lesson in LESSONS:  # the verdict follows the run as it trains
        live(lesson_verdict, CURVES_EVERY_S)(lesson, source)  # it changes only at evaluations
    request = session.request if replay is None and view.record is not None else None
    tabs.render_tabs(tabs.Page(view, source, live, header, polling, request))


def lesson_verdict(lesson: str, source) -> None:
    render_lesson_panel(lesson, source().record)


def apply_settings(session: Session, sidebar: controls.SidebarResult, notes: list[str]) -> None:
    """Sidebar -> session (reset, or a live change of lr/steps) and -> link. The sidebar's settings
    are checked (``Settings.checked``, in ``controls``): the one check on the page's side."""
    if notes:  # each note quotes the link's values as code (url_state), so none of them renders as markup
        shown = notes[:MAX_NOTES] + ([f"… and {len(notes) - MAX_NOTES} more"] if len(notes) > MAX_NOTES else [])
        st.warning("The link asked for values that are not allowed; adjusted:\n\n" + "\n".join(f"- {n}" for n in shown),
                   icon=":material/tune:")
    if sidebar.error:  # already escaped where it quotes the user (controls)
        st.error(sidebar.error, icon=":material/error:")
    elif sidebar.settings is not None and session.update_settings(sidebar.settings) == "reset":
        st.toast("That setting changes the models, so the run was reset: press Train to start again.",
                 icon=":material/restart_alt:")
    wanted = url_state.encode(controls.view_state())
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def apply_buttons(session: Session, sidebar: controls.SidebarResult) -> None:
    pressed = sidebar.pressed
    if pressed & {"train", "step", "reset"}:
        st.session_state.pop("replay", None)  # back to the live run
    if "reset" in pressed:
        session.reset(sidebar.settings)
    if "pause" in pressed:
        session.pause()
    if sidebar.error is None:
        if "train" in pressed:
            session.train()
        if "step" in pressed:
            session.step()
        if pressed & {"train", "step"}:
            session.settle(CLICK_SETTLE_S)  # this run's page then shows the click's first step


def live_view(session: Session) -> panels.View:
    s = session.status()
    return panels.View(s.record, s.settings, s.step, s.state, "live", error=s.error, notice=s.notice, slowed=s.slowed,
                       pending=s.pending, steps_per_s=s.steps_per_s, rebuilding=s.rebuilding, cached=s.cached)


# Only when Streamlit runs this script: importing it (tests/test_app.py does) must not run the page.
if __name__ == "__main__":
    refresh_pacer().timed_click(main)()  # the refreshes give way when the clicks are many (runtime.refresh)
