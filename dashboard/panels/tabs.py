"""The tabs of the main page, as one table: label, what it draws, and whether it needs 2D data.

Only the open tab runs (and refreshes): a hidden heatmap costs nothing. Every tab keeps the header
(step counter and cards) fresh from one fragment: on the live tabs (Training error, Gradients,
Signals, Decision regions) the fragment that redraws the tab's charts, on the others one of its own. Each live tab's caption, saying what to look for and
which claim of which paper it tests, stands beside the function that draws the tab.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import streamlit as st

import dashboard.panels.live as panels
import dashboard.panels.records as records_tab
from dashboard.panels.landscape import render_landscape_panel
from dashboard.panels.paths import render_paths_panel
from dashboard.panels.shattered import render_shattered_panel
from dashboard.panels.signal import render_signal_panel
from dashboard.panels.sweep import render_sweep_panel
from dashboard.sidebar.controls import view_state
from resnet_core.settings import Settings

# Step counter and cards. Every refresh of a page costs Chromium some 9 % of a core whatever it
# redraws (bench/page_cost.py: the header alone, the curves held still), so a watching tab refreshes
# every 2 s, and redraws its charts less often still (panels.redraw): 10.0-10.7 % of a core watching,
# against 13.4-14.3 % at 1.5 s and charts every 3 s (30 s windows, alternated, load 3-4).
LIVE_EVERY_S = 2.0


@dataclass(frozen=True)
class Page:
    """What every tab may draw from: the view now, a way to read it again on refresh, and the
    fragment maker that refreshes only while something trains."""

    view: panels.View
    source: Callable[[], panels.View]
    live: Callable[[Callable, float], Callable]
    header: Any                   # the slot above the tabs, filled by the open tab's fragment
    polling: bool
    request: Callable[..., None] | None  # the Session.request, when there is a trained run


@dataclass(frozen=True)
class Tab:
    label: str
    render: Callable[[Page], None]
    only_2d: bool = False
    header: bool = True           # refresh the header from this tab (the live ones draw their own)


# ------------------------------------------------------------------------------- live tabs
def training_error(page: Page) -> None:
    chart, words = st.columns([3, 1], gap="large")
    with words:
        show = st.segmented_control("Show", ["error", "loss"], key="curve_kind", default="error",
                                    required=True, label_visibility="collapsed")
        training_caption()
    with chart:
        page.live(panels.header_and_curves, LIVE_EVERY_S)(page.header, page.source, page.polling, show)


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


def with_header(panel: Callable[..., None], page: Page, *args) -> None:
    """The header, then ``panel(page.source, *args)``: one fragment run refreshes both (each run
    costs the browser as much as a small redraw); the panel's figures, heatmaps and profiles,
    are redrawn only every few runs (``panels.redraw``)."""
    panels.header_in(page.header, page.source, page.polling)
    panel(page.source, *args)


def gradients(page: Page) -> None:
    page.live(with_header, LIVE_EVERY_S)(panels.gradients, page)
    gradients_caption(page.view.settings)


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


def signals(page: Page) -> None:
    sort = st.toggle("Sort layers by magnitude (the lower plot of Fig. 7)", key="sort_std")
    page.live(with_header, LIVE_EVERY_S)(panels.signals, page, sort)
    signals_caption()


def signals_caption() -> None:
    st.markdown(
        "**What to look for.** Top: the standard deviation of every layer's response (after BN, before the "
        "addition) — Fig. 7 of He et al. (2015). Residual nets respond more weakly than plain nets, and more "
        "weakly the deeper they are: the residual functions stay close to zero, each block a small correction.")
    st.markdown(
        "Bottom: ‖F(x)‖ / ‖x‖ for each residual block, now (solid) and at the start (dotted). Below 1, a block "
        "changes its input only a little. With the *zero* initialisation every branch starts at 0, so the whole "
        "net starts as the identity (Goyal et al. 2017; Fixup, Zhang et al. 2019).")


def regions(page: Page) -> None:
    page.live(with_header, LIVE_EVERY_S)(panels.regions, page)
    regions_caption()


def regions_caption() -> None:
    st.markdown(
        "**What to look for.** Each model's prediction over the plane, like TensorFlow Playground's output: "
        "colour is the predicted class, paler where the model is less sure; dots are training points. A model "
        "that cannot fit the data leaves whole arms of the spiral in the wrong colour — the deep plain net, "
        "with the most capacity of all, is the one that fails.")


TABS: tuple[Tab, ...] = (
    Tab("Training error", training_error, header=False),
    Tab("Gradients", gradients, header=False),
    Tab("Signals", signals, header=False),
    Tab("Decision regions", regions, only_2d=True, header=False),
    Tab("Signal propagation", lambda page: render_signal_panel(page.view.record, page.request is not None)),
    Tab("Unrolled paths", lambda page: render_paths_panel(page.view.record, page.view.settings, page.request)),
    Tab("Depth sweep", lambda page: render_sweep_panel(page.view.settings)),
    Tab("Loss landscape", lambda page: render_landscape_panel(page.view.settings)),
    Tab("Shattered gradients", lambda page: render_shattered_panel(page.view.settings)),
    Tab("Records", lambda page: records_tab.render(page.view, view_state(), page.request)),
)


def tabs_for(settings: Settings) -> list[Tab]:
    return [tab for tab in TABS if not tab.only_2d or panels.is_2d(settings.dataset)]


def render_tabs(page: Page) -> None:
    shown = tabs_for(page.view.settings)
    labels = [tab.label for tab in shown]
    containers = st.tabs(labels, key="tab", on_change="rerun")
    opened = next((i for i, c in enumerate(containers) if c.open), 0)
    tab = shown[opened]
    with containers[opened]:
        if tab.header:
            page.live(panels.header_in, LIVE_EVERY_S)(page.header, page.source, page.polling)
        tab.render(page)
