"""The live pages' refresh pace: their base pace while the class is small, stretched just enough
once all their refreshes would take more than the server's share for them."""
from __future__ import annotations

import threading
import time

import pytest

from dashboard.runtime.clicks_first import ClicksFirst
from dashboard.runtime.refresh import REFRESH_SHARE, SLOWEST_S, WINDOW_S, RefreshPacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def class_refreshing(pacer: RefreshPacer, clock: Clock, pages: int, cost_s: float, seconds: float = WINDOW_S) -> None:
    """``pages`` pages refreshing at the pace the pacer gives them, each refresh costing ``cost_s``."""
    due = {f"p{i}": clock.now + i / pages for i in range(pages)}
    end = clock.now + seconds
    while clock.now < end:
        page, at = min(due.items(), key=lambda kv: kv[1])
        clock.now = at
        pacer.note(page, cost_s)
        due[page] = at + pacer.every(1.0, page)


def test_a_few_pages_keep_their_base_pace():
    clock = Clock()
    pacer = RefreshPacer(clock=clock)
    class_refreshing(pacer, clock, pages=5, cost_s=0.010)
    assert pacer.every(1.0, "p0") == 1.0
    assert pacer.every(2.5, "p0") == 2.5


def test_a_class_is_slowed_just_enough_to_keep_refreshes_within_their_share():
    clock = Clock()
    pacer = RefreshPacer(clock=clock)
    class_refreshing(pacer, clock, pages=40, cost_s=0.015, seconds=4 * WINDOW_S)
    every = pacer.every(1.0, "p0")
    # At the base pace the class would take 40 * 15 ms = 0.6 of a core; their share is 0.3.
    assert every == pytest.approx(40 * 0.015 / REFRESH_SHARE, rel=0.15)
    # ... and at that pace what they really take is the share, not more.
    taken = 40 * 0.015 / every
    assert taken <= REFRESH_SHARE * 1.15


def test_the_pace_comes_back_when_the_class_leaves():
    clock = Clock()
    pacer = RefreshPacer(clock=clock)
    class_refreshing(pacer, clock, pages=40, cost_s=0.015, seconds=2 * WINDOW_S)
    assert pacer.every(1.0, "p0") > 1.5
    assert pacer.retune(1.0, 1.0, "p0")
    clock.now += WINDOW_S + 1  # everybody closed their tab
    assert pacer.every(1.0, "p0") == 1.0
    assert pacer.retune(1.0, 2.0, "p0") and not pacer.retune(1.0, 1.2, "p0")


def test_never_slower_than_the_slowest_pace():
    clock = Clock()
    pacer = RefreshPacer(clock=clock)
    class_refreshing(pacer, clock, pages=200, cost_s=0.05)
    assert pacer.every(1.0, "p0") == SLOWEST_S
    assert pacer.every(2.5, "p0") == SLOWEST_S


def test_timed_notes_the_cpu_of_the_refresh_itself():
    pacer = RefreshPacer()

    def busy(n: int) -> int:
        deadline = time.thread_time() + 0.05
        while time.thread_time() < deadline:
            n += 1
        return n

    wrapped = pacer.timed("page", busy)
    assert wrapped.__qualname__ == busy.__qualname__  # Streamlit names a fragment by its function
    assert wrapped(0) > 0
    assert pacer.load() == pytest.approx(0.05 / WINDOW_S, rel=0.5)


def test_the_refreshes_give_way_to_many_clicks():
    """A class clicking a lot (full runs of the page) leaves the refreshes less of the server, never
    less than their floor; few clicks leave them their whole share."""
    from dashboard.runtime.refresh import MIN_REFRESH_SHARE, SERVER_SHARE

    clock = Clock()
    pacer = RefreshPacer(clock=clock)
    for _ in range(8):  # a few clicks in the window: 0.05 of a core
        pacer.note_click(0.04)
    assert pacer.refresh_share() == REFRESH_SHARE
    class_refreshing(pacer, clock, pages=40, cost_s=0.015, seconds=WINDOW_S)
    calm = pacer.every(1.0, "p0")
    for _ in range(int(0.45 * WINDOW_S / 0.05)):  # forty students clicking every few seconds: 0.45 of a core
        pacer.note_click(0.05)
    assert pacer.clicks() == pytest.approx(0.45, rel=0.05)
    assert pacer.refresh_share() == pytest.approx(SERVER_SHARE - 0.45, rel=0.05)
    assert pacer.every(1.0, "p0") > calm * 1.5  # the same refreshes, stretched further
    for _ in range(int(0.6 * WINDOW_S / 0.05)):
        pacer.note_click(0.05)
    assert pacer.refresh_share() == MIN_REFRESH_SHARE
    clock.now += WINDOW_S + 1  # the clicks stopped
    assert pacer.refresh_share() == REFRESH_SHARE


def test_a_refresh_starts_only_once_the_clicks_being_answered_are():
    pacer = RefreshPacer()
    order: list[str] = []
    in_click, click_may_end = threading.Event(), threading.Event()

    def full_run():
        order.append("click starts")
        in_click.set()
        click_may_end.wait(10)
        pacer.timed("p1", lambda: order.append("its own fragment"))()  # drawn within the click: no wait
        order.append("click ends")

    click = threading.Thread(target=pacer.timed_click(full_run))
    click.start()
    in_click.wait(10)
    refresh = threading.Thread(target=pacer.timed("p2", lambda: order.append("another page refreshes")))
    refresh.start()
    refresh.join(0.3)
    assert refresh.is_alive()  # waiting for the click
    click_may_end.set()
    click.join(10)
    refresh.join(10)
    assert order == ["click starts", "its own fragment", "click ends", "another page refreshes"]


def test_a_refresh_waits_for_the_clicks_no_longer_than_its_limit():
    gate = ClicksFirst(max_wait_s=0.05)
    with gate.click():
        waiting = threading.Thread(target=lambda: results.append(gate.wait_for_clicks()))
        results: list[bool] = []
        waiting.start()
        waiting.join(10)
    assert results == [False]  # gave up waiting after its limit, the click still running
    assert gate.wait_for_clicks() is True  # the click over: at once


@pytest.mark.parametrize(("state", "step", "quick"), [
    ("starting", 0, True), ("training", 0, True),  # built, not yet stepped: the click's answer is coming
    ("training", 1, False), ("paused", 0, False), ("done", 40, False), ("idle", 0, False)])
def test_a_page_refreshes_quickly_until_its_first_step_shows(state, step, quick):
    from dashboard.panels.live import View
    from resnet_core.settings import Settings

    assert View(None, Settings(), step, state).first_step_coming is quick
