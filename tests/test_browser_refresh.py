"""The live page's refresh, in Chromium against a real server: it sends nothing the browser has
already, and a hidden page does not refresh at all.

"Nothing changed" here: the run trains (the step counter moves, so the page refreshes every second)
but evaluates no more, so its figures do not change. Then no refresh may carry a figure: each
chart of it reaches the browser as a reference to the message the browser holds (``ref_hash``),
not its bytes. The same page evaluating every ten steps must get new figures, or the first test
could not fail.

Headless Chromium never hides a page (another tab in front, a minimised window or the lifecycle
commands leave ``document.visibilityState`` "visible"), so the hidden-page test does to the page
what a browser does when its tab goes to the back: ``visibilityState`` reads "hidden" and
``visibilitychange`` fires (``bench/page_cost.py``'s ``HIDE`` and ``SHOW``).
"""
from __future__ import annotations

import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from page_cost import HIDE, SHOW
from streamlit_server import STEP, step_of

pytestmark = pytest.mark.browser

WAIT_MS = 90_000
WATCH_MS = 7_000  # several refreshes, and more than the curves' own redraw pace (panels.redraw)


class Frames:
    """What the page received over its WebSocket, decoded: script runs and chart messages."""

    def __init__(self, page):
        self.runs = self.figures = self.references = 0
        self.recording = False
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload) -> None:
        if not self.recording or isinstance(payload, str):
            return
        msg = ForwardMsg.FromString(payload)
        kind = msg.WhichOneof("type")
        if kind == "script_finished":
            self.runs += 1
        elif kind == "ref_hash":
            self.references += 1
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element" \
                and msg.delta.new_element.WhichOneof("type") == "plotly_chart":
            self.figures += 1

    def watch(self, page, ms: int = WATCH_MS) -> "Frames":
        self.runs = self.figures = self.references = 0
        self.recording = True
        page.wait_for_timeout(ms)
        self.recording = False
        return self


def training_page(server, page, query: str) -> Frames:
    frames = Frames(page)
    page.goto(server.url + "/?preset=degradation&steps=100000" + query)
    page.get_by_text(STEP).wait_for(timeout=WAIT_MS)
    page.get_by_role("button", name="Train", exact=True).click()
    while step_of(page) < 5:
        page.wait_for_timeout(100)
    page.locator(".js-plotly-plot").first.wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(2000)  # past the quick refreshes while the models are built
    return frames


def test_a_refresh_sends_no_figure_when_nothing_changed(streamlit_server, page):
    frames = training_page(streamlit_server, page, "&eval_every=100000")
    moved = step_of(page)
    seen = frames.watch(page)
    assert step_of(page) > moved and seen.runs >= 3  # the page kept refreshing
    assert seen.figures == 0, f"{seen.figures} figures sent in {seen.runs} refreshes of unchanged data"
    assert seen.references >= 1  # the chart is still drawn each refresh: by reference


def test_a_refresh_sends_the_figure_when_its_data_changed(streamlit_server, page):
    frames = training_page(streamlit_server, page, "&eval_every=10&seed=7")
    seen = frames.watch(page)
    assert seen.figures >= 1


def test_a_hidden_page_stops_refreshing_and_resumes_once_shown(streamlit_server, page):
    frames = training_page(streamlit_server, page, "&seed=8")
    page.evaluate(HIDE)
    page.wait_for_timeout(1500)  # the full rerun that stops the timers
    hidden = frames.watch(page, 4000)
    held = step_of(page)
    assert hidden.runs == 0, f"a hidden page ran {hidden.runs} times"

    page.evaluate(SHOW)
    shown = frames.watch(page, 4000)
    assert shown.runs >= 2  # the full rerun, then the refreshes again
    assert step_of(page) > held  # the counter caught up with the run
