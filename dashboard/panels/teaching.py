"""The page's own words and style: its title, and the presenter view's larger type.

The captions that say what to look for in each tab live beside the tab (``panels.tabs`` and the
study panels). Text only; the one piece of HTML is the fixed stylesheet below, never user input.
"""
from __future__ import annotations

import streamlit as st

# Presenter view: everything larger, for the back row of a classroom.
PRESENTER_CSS = """
<style>
[data-testid="stMain"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stMarkdownContainer"] li { font-size: 1.3rem; line-height: 1.5; }
[data-testid="stMain"] [data-testid="stCaptionContainer"] p { font-size: 1.1rem; }
[data-testid="stMain"] h1 { font-size: 2.6rem !important; }
[data-testid="stMain"] h2 { font-size: 3.2rem !important; }
[data-testid="stMetricValue"] * { font-size: 3.4rem !important; }
[data-testid="stMetricLabel"] * { font-size: 1.4rem !important; }
[data-testid="stMetricDelta"] * { font-size: 1.1rem !important; }
[data-testid="stMain"] [data-testid="stTab"] p { font-size: 1.2rem !important; }
</style>
"""
BASE_CSS = """
<style>
[data-testid="stMetricValue"] { font-variant-numeric: tabular-nums; }
.block-container { padding-top: 1.6rem; }
h1 { font-size: 2.1rem !important; padding-bottom: 0 !important; }
</style>
"""


def page_style(presenter: bool) -> None:
    st.markdown(BASE_CSS + (PRESENTER_CSS if presenter else ""), unsafe_allow_html=True)


def title() -> None:
    st.markdown("# Residual Lab")
    st.caption("Plain and residual networks of the same depth, trained side by side on the same batches. "
               "Why does a deeper plain net train *worse*, and what does the **+ x** of a residual block change? "
               "(He et al. 2015; He et al. 2016; Veit et al. 2016)")
