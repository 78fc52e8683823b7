"""The product as a class meets it: Chromium against a real `streamlit run`, the degradation lesson
trained live. Saves the screenshots the README shows (docs/screenshots/)."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from conftest import MODELS, card_errors
from streamlit_server import STEP, step_of as step_counter

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
WAIT_MS = 90_000


def separated(page) -> bool:
    e = card_errors(page)
    return len(e) == 3 and e["plain-56"] >= e["plain-20"] + 10 and e["plain-56"] >= e["resnet-56"] + 10


def wait_until(page, condition, timeout_ms: int = WAIT_MS) -> None:
    """Poll ``condition(page)`` on the page's own clock (no fixed sleeps)."""
    waited = 0
    while not condition(page):
        if waited > timeout_ms:
            raise AssertionError(f"not reached in {timeout_ms} ms; page says Step {step_counter(page)}, {card_errors(page)}")
        page.wait_for_timeout(200)
        waited += 200


def shoot(page, name: str, scroll: int = 0) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(1000, 600)
    page.mouse.wheel(0, scroll - 10_000)  # back to the top, then down to the panel wanted
    if scroll:
        page.mouse.wheel(0, scroll)
    page.mouse.move(1395, 895)  # no tooltip in the picture
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / name))


def open_tab(page, label: str) -> None:
    page.get_by_role("tab", name=label, exact=True).click()
    page.get_by_role("tab", name=label, exact=True).and_(page.locator("[aria-selected=true]")).wait_for()


def test_degradation_trains_live_in_the_browser(streamlit_server, page):
    page.goto(streamlit_server.url)
    page.get_by_text(STEP).wait_for(timeout=WAIT_MS)
    assert step_counter(page) == 0

    page.get_by_test_id("stSelectbox").filter(has_text="Preset").click()
    page.get_by_role("option", name="Degradation").click()
    for model in MODELS:  # every model has its card before training
        page.get_by_test_id("stMetric").filter(has_text=model).wait_for()

    page.get_by_role("button", name="Train", exact=True).click()
    wait_until(page, lambda p: step_counter(p) > 0)
    first = step_counter(page)
    wait_until(page, lambda p: step_counter(p) > first)  # the counter moves on its own
    assert set(card_errors(page)) == set(MODELS)
    page.locator(".js-plotly-plot").first.wait_for()
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 6  # train + test per model

    wait_until(page, lambda p: separated(p) and step_counter(p) >= 120)
    shoot(page, "degradation.png")

    page.get_by_role("button", name="Pause", exact=True).click()
    page.get_by_text("paused").first.wait_for(timeout=WAIT_MS)
    held = step_counter(page)
    page.wait_for_timeout(2000)  # two refresh periods: nothing may move
    assert step_counter(page) == held

    open_tab(page, "Gradients")
    page.locator(".js-plotly-plot .heatmaplayer, .js-plotly-plot image").first.wait_for()
    shoot(page, "gradients.png", scroll=390)  # the heatmaps and the latest profile under them
    open_tab(page, "Decision regions")
    page.locator(".js-plotly-plot").first.wait_for()
    shoot(page, "regions.png")

    page.get_by_role("button", name="Reset", exact=True).click()
    wait_until(page, lambda p: step_counter(p) == 0)
    page.get_by_text("ready").first.wait_for()
    assert "Traceback" not in streamlit_server.log()


# Nobody waits behind another's run: each tab's counter moves while the earlier ones still train (a
# queue would hold the sixth tab for the first five's 5000 steps). The bound is for a loaded CI box
# running six Chromium tabs on two cores; the goal of 3 s is measured and recorded in BENCHMARKS.md.
MOVES_WITHIN_S = 10.0


def test_six_tabs_press_train_one_after_another_and_every_one_moves_while_the_others_train(streamlit_server, browser):
    """A class at once (issue 10): six tabs on the degradation preset press Train one after another,
    the earlier ones still training; each tab's step counter moves soon after its own click, and then
    all six go on moving together."""
    contexts = [browser.new_context(viewport={"width": 1400, "height": 900}) for _ in range(6)]
    try:
        pages = [context.new_page() for context in contexts]
        for page in pages:
            page.goto(streamlit_server.url + "/?preset=degradation&steps=5000")
            page.get_by_text(STEP).wait_for(timeout=WAIT_MS)
        waited = []
        for page in pages:
            assert step_counter(page) == 0
            clicked = time.monotonic()
            page.get_by_role("button", name="Train", exact=True).click()
            wait_until(page, lambda p: step_counter(p) > 0, timeout_ms=int(3 * MOVES_WITHIN_S * 1000))
            waited.append(time.monotonic() - clicked)
        assert max(waited) < MOVES_WITHIN_S, [f"{w:.2f}" for w in waited]
        first = [step_counter(page) for page in pages]
        for page, before in zip(pages, first):  # and they all go on moving, together
            wait_until(page, lambda p, b=before: step_counter(p) > b)
        for page in pages:
            page.get_by_role("button", name="Pause", exact=True).click()
    finally:
        for context in contexts:
            context.close()
    assert "Traceback" not in streamlit_server.log()


def test_a_lesson_end_to_end_shows_its_verdict(streamlit_server, page):
    """Pick lesson 2 in the sidebar, read its question, press Train: the verdict appears, with figures,
    while the class watches (issue 7)."""
    page.goto(streamlit_server.url)
    page.get_by_text(STEP).wait_for(timeout=WAIT_MS)
    page.get_by_test_id("stSelectbox").filter(has_text="Lesson").click()
    page.get_by_role("option", name=re.compile("Residual learning")).click()
    page.get_by_text("Not yet").first.wait_for(timeout=WAIT_MS)
    for model in ("plain-20", "resnet-20", "plain-56", "resnet-56"):  # the lesson's own models
        page.get_by_test_id("stMetric").filter(has_text=model).wait_for()
    page.get_by_role("button", name="Train", exact=True).click()
    verdict = page.get_by_text("Shown on this run")
    verdict.wait_for(timeout=180_000)
    assert step_counter(page) < 400  # judged live, before the run ends
    assert re.search(r"\d+ points", page.get_by_test_id("stAlert").filter(has_text="Shown").inner_text())
    shoot(page, "lesson.png")
    page.get_by_role("button", name="Pause", exact=True).click()
    assert "Traceback" not in streamlit_server.log()


def test_a_links_values_render_as_text_not_as_links(streamlit_server, page):
    """What the browser draws: the link's markdown stays text in our warning (no <a> of the sender's),
    and an escaped message (the sidebar's error, full of parentheses and underscores) reads exactly
    as the core wrote it, with no stray backslash."""
    from urllib.parse import quote

    evil = "[Your session expired](https://evil.example/login)"
    page.goto(f"{streamlit_server.url}/?preset={quote(evil)}&lesson={quote('![x](https://evil.example/x.png)')}"
              "&batch_size=4096")
    page.get_by_text(STEP).wait_for(timeout=WAIT_MS)
    warning = page.get_by_test_id("stAlert").filter(has_text="The link asked for values")
    warning.wait_for()
    assert evil in warning.inner_text()
    assert page.locator("a[href*='evil.example'], img[src*='evil.example']").count() == 0
    error = page.get_by_test_id("stAlert").filter(has_text="larger than the training set")
    assert error.inner_text().strip().endswith(
        "batch_size 4096 is larger than the training set (1600 points); use at most 1600")
    assert "\\" not in error.inner_text()
    assert "Traceback" not in streamlit_server.log()
