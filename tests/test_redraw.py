"""A live chart's own pace (``dashboard.panels.redraw.paced``): while the run trains, the page keeps
the figure it drew for a few seconds; a new run, a stopped run or the time gone by brings the newest."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import streamlit as st

from dashboard.panels.redraw import HELD, paced


@pytest.fixture
def clock():
    st.session_state.pop(HELD, None)
    now = [0.0]
    yield now
    st.session_state.pop(HELD, None)


def view(record, active: bool = True):
    return SimpleNamespace(record=record, source="live", active=active)


def draw(clock, v, figure, every_s: float = 3.0):
    return paced("curves", v, lambda: figure, every_s, clock=lambda: clock[0])


def test_a_training_runs_chart_keeps_its_figure_until_its_time_is_up(clock):
    run = object()
    assert draw(clock, view(run), "first") == "first"
    clock[0] = 1.5
    assert draw(clock, view(run), "second") == "first"  # the browser redraws nothing
    clock[0] = 3.0
    assert draw(clock, view(run), "second") == "second"


def test_the_time_counts_from_the_last_new_figure_not_the_last_refresh(clock):
    run = object()
    draw(clock, view(run), "first")
    clock[0] = 10.0
    assert draw(clock, view(run), "first") == "first"  # nothing new for a while
    clock[0] = 10.5
    assert draw(clock, view(run), "second") == "second"  # a new one shows at once


def test_a_stopped_run_or_another_run_shows_its_newest_figure_at_once(clock):
    run, other = object(), object()
    draw(clock, view(run), "first")
    clock[0] = 0.5
    assert draw(clock, view(run, active=False), "final") == "final"
    clock[0] = 1.0
    assert draw(clock, view(other), "other run") == "other run"
