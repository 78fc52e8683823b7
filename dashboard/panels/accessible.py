"""A chart with its words: ``st.plotly_chart`` and, right under it, the chart's numbers in a
sentence (``charts.alt_text``): its text alternative for a screen reader, and a line a teacher can
read out. Plain text (``literal``), never markup: the page renders no HTML it did not write itself."""
from __future__ import annotations

import streamlit as st

from dashboard.charts.alt_text import figure_alt
from dashboard.text import literal

PREFIX = "In numbers: "


def chart(fig, key: str, alt: str | None = None, where=st, **kwargs) -> None:
    """``fig`` drawn in ``where`` (st or a column), then ``alt`` (by default the figure in words:
    a figure many sessions draw says them once, ``live.Drawn.words``)."""
    where.plotly_chart(fig, key=key, **kwargs)
    if alt is None:
        alt = getattr(fig, "words", None) or figure_alt(fig)
    where.caption(PREFIX + literal(alt))
