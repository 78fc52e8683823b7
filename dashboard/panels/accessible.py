"""A chart with its words: ``st.plotly_chart`` and, right after it, the chart's text alternative
(``charts.alt_text``) for a screen reader, not drawn (the page's ``.sr-only``)."""
from __future__ import annotations

import html

import streamlit as st

from dashboard.charts.alt_text import figure_alt


def chart(fig, key: str, alt: str | None = None, where=st, **kwargs) -> None:
    """``fig`` drawn in ``where`` (st or a column), then ``alt`` (by default the figure in words)."""
    where.plotly_chart(fig, key=key, **kwargs)
    words = alt if alt is not None else figure_alt(fig)
    where.markdown(f'<p class="sr-only chart-alt" data-chart="{html.escape(key)}">Chart in words. '
                   f"{html.escape(words)}</p>", unsafe_allow_html=True)
