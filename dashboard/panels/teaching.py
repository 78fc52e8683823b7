"""The words on the page: title, captions under each panel, the equations, the presenter style.

Each caption says what to look for and which claim of which paper the panel tests. Text only
(Markdown and LaTeX); the one piece of HTML is the fixed stylesheet below, never user input.
"""
from __future__ import annotations

import streamlit as st

from resnet_core.settings import Settings

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


def training_caption() -> None:
    st.markdown("**What to look for**")
    st.markdown(
        "The deeper **plain** net (red) ends *above* the shallower one — on the **training** set "
        "(solid lines), so this is not overfitting: it is the *degradation problem* of He et al. (2015, Fig. 1). "
        "The **residual** net of the same depth (blue) trains fine. Dashed lines are the test error.")
    st.markdown("A residual block learns a change to its input, not the whole mapping:")
    st.latex(r"y = \mathcal{F}(x, \{W_i\}) + x")
    st.markdown("Stacked with identity shortcuts (He et al. 2016), every block adds to the signal:")
    st.latex(r"x_{l+1} = x_l + \mathcal{F}(x_l) \;\Rightarrow\; x_L = x_l + \sum_{i=l}^{L-1} \mathcal{F}(x_i)")
    st.latex(r"\frac{\partial E}{\partial x_l} = \frac{\partial E}{\partial x_L}"
             r"\Big(1 + \frac{\partial}{\partial x_l}\sum_{i=l}^{L-1}\mathcal{F}(x_i)\Big)")
    st.caption("The 1 carries the gradient straight from the loss to every layer.")


def gradients_caption(settings: Settings) -> None:
    bn = settings.norm == "batch"
    st.markdown(
        "**What to look for.** Each row is a layer (input at the bottom), each column a step; colour is the "
        "gradient norm of the layer's weights on a log scale shared by all models. "
        + ("At the start (the left edge of each map) the deep plain net's gradients do **not** vanish: with "
           "BatchNorm they are largest near the input (Yang et al. 2019). He et al. (2015) checked the same — "
           "\"neither forward nor backward signals vanish\" — so the deep plain net is hard to optimise for "
           "another reason. Try the *Without BatchNorm* preset to see gradients that really vanish."
           if bn else
           "Without BatchNorm and with PyTorch's default init, the deep plain net's gradients fade toward the "
           "input by many orders of magnitude; the residual net's stay within a few, because each shortcut "
           "passes the gradient on unchanged (He et al. 2016)."))
    st.caption("Lower chart: the latest probe of every layer, all models overlaid (log scale).")


def signals_caption() -> None:
    st.markdown(
        "**What to look for.** Top: the standard deviation of every layer's response (after BN, before the "
        "addition) — Fig. 7 of He et al. (2015). Residual nets respond more weakly than plain nets, and more "
        "weakly the deeper they are: the residual functions stay close to zero, each block a small correction.")
    st.markdown(
        "Bottom: ‖F(x)‖ / ‖x‖ for each residual block, now (solid) and at the start (dotted). Below 1, a block "
        "changes its input only a little. With the *zero* initialisation every branch starts at 0, so the whole "
        "net starts as the identity (Goyal et al. 2017; Fixup, Zhang et al. 2019).")


def regions_caption() -> None:
    st.markdown(
        "**What to look for.** Each model's prediction over the plane, like TensorFlow Playground's output: "
        "colour is the predicted class, paler where the model is less sure; dots are training points. A model "
        "that cannot fit the data leaves whole arms of the spiral in the wrong colour — the deep plain net, "
        "with the most capacity of all, is the one that fails.")
