"""How often a live chart is redrawn in the student's browser: at its own pace, slower than the refresh.

A live page refreshes every two seconds so that the step counter and the cards move. Redrawing a plotly
chart costs the browser far more than the rest of that refresh (``bench/page_cost.py``: the
Training error tab cost its renderer 26 % of a core, 11 % with the curves held still), and a curve
that gains a point or two a second reads as well redrawn every few seconds. So while a run trains,
a page's chart keeps the figure it last drew for ``every_s``: its refresh re-sends the very figure
the browser has (Streamlit's message cache sends a reference for a large one), which the browser
does not redraw, and the server builds nothing. Once the run stops, the newest figure shows at once.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import streamlit as st

CURVES_EVERY_S = 4.0    # the training curves: every other refresh of the header (panels.tabs)
HEAVY_EVERY_S = 8.0     # heatmaps, profiles, maps: every fourth refresh of their tab
EARLY = 0.9             # a refresh a little early on its timer still redraws: the figure held that long
HELD = "_held_figures"  # session state: chart key -> (run, when drawn, figure)


def paced(key: str, view, figure: Callable[[], Any], every_s: float, clock=time.monotonic) -> Any:
    """The figure to draw under ``key``: the one this page drew last while it is younger than
    ``every_s``, of the same run, and the run still trains; else ``figure()``, remembered."""
    held: dict = st.session_state.setdefault(HELD, {})
    run, now = (view.source, id(view.record)), clock()
    last = held.get(key)
    if view.active and last is not None and last[0] == run and now - last[1] < every_s * EARLY:
        return last[2]
    drawn = figure()
    if last is None or last[2] is not drawn:
        held[key] = (run, now, drawn)
    return drawn
