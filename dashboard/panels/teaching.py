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
[data-testid="stMain"] [data-testid="stCaptionContainer"] p { font-size: 1.25rem; }
[data-testid="stMain"] [data-testid="stAlertContainer"] p { font-size: 1.3rem; }
[data-testid="stMain"] h1 { font-size: 2.6rem !important; }
[data-testid="stMain"] h2 { font-size: 3.2rem !important; }
[data-testid="stMetricValue"] * { font-size: 3.4rem !important; }
[data-testid="stMetricLabel"] * { font-size: 1.4rem !important; }
[data-testid="stMetricDelta"] * { font-size: 1.1rem !important; }
[data-testid="stMain"] [data-testid="stTab"] p { font-size: 1.25rem !important; }
</style>
"""
# For every student (WCAG 2.2 AA, tests/test_accessibility.py): captions dark enough to read
# (Streamlit's, a dark grey at 60 % opacity, are 2.9:1 on white; 4.5:1 is the floor); a wide formula
# wraps instead of scrolling in a box a keyboard cannot reach; what a rerun has not redrawn yet is not
# faded (a live page reruns every second, and the fade made text flicker below 4.5:1); whatever has
# the keyboard's focus is outlined; and where the viewer asked for less motion, nothing animates.
BASE_CSS = """
<style>
[data-testid="stMetricValue"] { font-variant-numeric: tabular-nums; }
.block-container { padding-top: 1.6rem; }
h1 { font-size: 2.1rem !important; padding-bottom: 0 !important; }
[data-testid="stCaptionContainer"] { opacity: 1 !important; }
[data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] * { color: #55544f !important; }
.katex-display { overflow: visible !important; white-space: normal; }
[data-stale="true"] { opacity: 1 !important; transition: none !important; }
.katex-display .katex { white-space: normal; }
:focus-visible { outline: 3px solid #0072B2 !important; outline-offset: 2px !important; }
@media (prefers-reduced-motion: reduce) {
  *, *::before, *::after { animation-duration: 0.001ms !important; animation-iteration-count: 1 !important;
                           transition-duration: 0.001ms !important; scroll-behavior: auto !important; }
}
</style>
"""


def page_style(presenter: bool) -> None:
    st.markdown(BASE_CSS + (PRESENTER_CSS if presenter else ""), unsafe_allow_html=True)


def title() -> None:
    st.markdown("# Residual Lab")
    st.caption("Plain and residual networks of the same depth, trained side by side on the same batches. "
               "Why does a deeper plain net train *worse*, and what does the **+ x** of a residual block change? "
               "(He et al. 2015; He et al. 2016; Veit et al. 2016)")
