"""The issue-21 panels as a class meets them: Chromium against a real `streamlit run`, a lesson's run
trained live. Opens the signal propagation panel (signal plot and the Jacobian's spectrum) and the
block lens beside the lesion study, and saves the screenshots the README shows (docs/screenshots/)."""
from __future__ import annotations

import re

import pytest

from streamlit_server import STEP, step_of as step_counter
from test_browser import SCREENSHOTS, WAIT_MS, open_tab, wait_until

pytestmark = pytest.mark.browser


def test_the_signal_panel_shows_the_runs_own_signal_and_spectrum(streamlit_server, page):
    page.goto(streamlit_server.url + "/?lesson=signal&steps=40&paths_every=20")
    page.get_by_text(STEP).wait_for(timeout=WAIT_MS)
    open_tab(page, "Signal propagation")
    page.get_by_text("Train, or load a run folder").or_(page.get_by_text("No signal measurements yet")).first.wait_for()
    page.get_by_role("button", name="Train", exact=True).click()
    page.locator(".st-key-signal_plot .js-plotly-plot").filter(visible=True).first.wait_for(timeout=WAIT_MS)
    page.locator(".st-key-signal_jacobian .js-plotly-plot").filter(visible=True).first.wait_for(timeout=WAIT_MS)
    assert page.locator(".st-key-signal_plot .scatterlayer .trace").count() >= 4  # a line per model at step 0
    caption = page.get_by_text(re.compile(r"Measured on this run, the stream's variance")).inner_text()
    assert re.search(r"resnet-56-nobn: ×\d\.\d\d per block", caption)
    assert page.get_by_text(re.compile("Brock, De & Smith 2021")).count() >= 1
    page.get_by_text("Shown on this run").wait_for(timeout=180_000)
    wait_until(page, lambda p: step_counter(p) >= 40)
    page.get_by_text("The signal, block by block").scroll_into_view_if_needed()
    page.mouse.wheel(0, 120)
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "signal.png"))
    assert "Traceback" not in streamlit_server.log()


def test_the_block_lens_sits_beside_the_lesion_study(streamlit_server, page):
    page.goto(streamlit_server.url + "/?lesson=blocks-refine&steps=60&paths_every=30")
    page.get_by_text(STEP).wait_for(timeout=WAIT_MS)
    page.get_by_role("button", name="Train", exact=True).click()
    open_tab(page, "Unrolled paths")
    page.locator(".st-key-paths_lens .js-plotly-plot").filter(visible=True).first.wait_for(timeout=WAIT_MS)
    assert page.locator(".st-key-paths_lens .scatterlayer .trace").count() == 2  # plain-56 and resnet-56
    page.get_by_text(re.compile("Jastrzębski et al. \\(2018\\)")).first.wait_for()
    page.get_by_text("Lesion study: delete one block at test time").wait_for()
    wait_until(page, lambda p: step_counter(p) >= 60)
    page.get_by_test_id("stTabs").get_by_text(re.compile(r"At step 60, read at the middle block")).wait_for(timeout=WAIT_MS)
    page.get_by_role("button", name="Run lesion study").click()
    page.locator(".st-key-paths_lesion .js-plotly-plot").wait_for(timeout=WAIT_MS)
    page.get_by_text("Block lens: read the answer at every block").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "lens.png"))
    assert "Traceback" not in streamlit_server.log()
