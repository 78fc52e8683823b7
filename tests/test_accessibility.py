"""A page every student can use (WCAG 2.2 AA), checked in Chromium against a real server:

- axe-core (npm, tests/a11y, injected into the page) finds no serious or critical violation on any
  tab, in the normal and the presenter view, with a run trained;
- a lesson is driven from the keyboard alone: Train, Pause, Step and Reset are reached with Tab and
  pressed with Enter or Space, and the focused control is visibly outlined;
- the lesson's verdict comes in a live region (a screen reader announces it), and each chart has its
  numbers in words under it;
- the presenter view's body text is at least 20 px, and nothing animates for a viewer who asked for
  reduced motion;
- the page fetches nothing from any origin but the server's (a classroom may be offline).
"""
from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest
from playwright.sync_api import expect

from streamlit_server import STEP, card_errors, step_of
from test_browser import open_tab, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]

AXE = Path(__file__).resolve().parent / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
WAIT_MS = 120_000
LESSON = "degradation"
# WCAG 2.2 AA: the level-A and level-AA rules of every version up to it (axe's own tags), and axe's best practices
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]



@pytest.fixture(scope="module")
def a11y_server(tmp_path_factory):
    """A server of these tests' own: closing their contexts mid-connection leaves Streamlit's own
    disconnect traceback in its log, which must not count against the other browser tests' server."""
    from streamlit_server import start_streamlit, stop_streamlit

    server = start_streamlit(tmp_path_factory.mktemp("a11y") / "server.log")
    yield server
    stop_streamlit(server.process)


def axe_violations(page) -> list[str]:
    """Serious and critical violations axe-core finds on the page as it is."""
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed at {AXE}: run `bash scripts/setup.sh --dev` (npm install)")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):  # once a page: a tab switch keeps it
        page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => (await axe.run(document, {runOnly: {type: 'tag', values: WCAG}})).violations
        .filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => v.id + ': ' + v.help + ' at ' + v.nodes.slice(0, 2).map(n => n.html.slice(0, 120)).join(' | '))"""
                          .replace("WCAG", repr(WCAG_TAGS)))
    return found


def watch_requests(page, server_url: str) -> list[str]:
    origin = urllib.parse.urlsplit(server_url)
    elsewhere: list[str] = []

    def seen(request) -> None:
        url = urllib.parse.urlsplit(request.url)
        if url.scheme in ("data", "blob", "about"):
            return
        if (url.scheme, url.hostname, url.port) not in (("http", origin.hostname, origin.port), ("ws", origin.hostname, origin.port)):
            elsewhere.append(request.url)
    page.on("request", seen)
    return elsewhere


def focus_button(page, label: str, limit: int = 120) -> None:
    """Tab through the page (forwards) until the button ``label`` has the keyboard's focus."""
    trail = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate("() => [document.activeElement.tagName, document.activeElement.innerText || '', "
                                "document.activeElement.getAttribute('aria-label') || '']")
        if focused[0] == "BUTTON" and focused[1].strip().endswith(label):
            return
        trail.append(" ".join(focused).replace("\n", " ")[:40])
    raise AssertionError(f"{label} was not reached with Tab; the focus went: {trail}")


def focus_is_visible(page) -> bool:
    style = page.evaluate("() => { const s = getComputedStyle(document.activeElement); "
                          "return [s.outlineStyle, parseFloat(s.outlineWidth)]; }")
    return style[0] != "none" and style[1] >= 2


def verdict_box(page):
    """The lesson's verdict once it is in: a box the page gives a live region's role."""
    return page.get_by_test_id("stAlertContainer").filter(has_text=re.compile("Shown on this run|Not shown on this run"))


def test_a_lesson_by_keyboard_alone_with_its_verdict_announced(a11y_server, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, reduced_motion="reduce")
    page = context.new_page()
    elsewhere = watch_requests(page, a11y_server.url)
    page.goto(f"{a11y_server.url}/?lesson={LESSON}")
    page.get_by_text(STEP).wait_for(timeout=WAIT_MS)
    page.get_by_text("Not yet").first.wait_for(timeout=WAIT_MS)
    # the controls answer once the page is connected (until then Streamlit disables them, and Tab skips them)
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_enabled(timeout=WAIT_MS)

    focus_button(page, "Train")
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    # the verdict comes while it trains, in a live region: a screen reader announces it
    verdict_box(page).wait_for(timeout=WAIT_MS)
    assert verdict_box(page).get_attribute("role") in ("status", "alert")
    focus_button(page, "Pause")
    assert focus_is_visible(page)
    page.keyboard.press("Space")
    page.get_by_text("paused").first.wait_for(timeout=WAIT_MS)
    held = step_of(page)
    focus_button(page, "Step")
    page.keyboard.press("Enter")
    wait_until(page, lambda p: step_of(p) == held + 1, WAIT_MS)

    # the chart has its words under it, computed from the numbers it shows
    words = page.get_by_text(re.compile("^In numbers: Training and test error")).inner_text()
    worst = re.search(r"At step (\d+): (\S+) has (\d+) % training error, (\d+) points above (\S+) \((\d+) %\)", words)
    assert worst, words
    cards = card_errors(page)  # the cards show the same evaluation, to a tenth of a point
    step, model, error, gap, best, best_error = worst.groups()
    assert int(step) == (held + 1) // 10 * 10  # the lesson evaluates every 10 steps
    assert int(error) == round(cards[model]) and int(best_error) == round(cards[best])
    assert max(cards.values()) == cards[model] and min(cards.values()) == cards[best]

    # nothing animates for a viewer who asked for less motion
    durations = page.evaluate("() => [...document.querySelectorAll('*')].map(e => getComputedStyle(e).animationDuration)"
                              ".filter(d => d !== '0s' && parseFloat(d) > 0.01)")
    assert durations == []

    focus_button(page, "Reset")
    page.keyboard.press("Enter")
    wait_until(page, lambda p: step_of(p) == 0, WAIT_MS)
    assert elsewhere == []
    context.close()


@pytest.mark.parametrize("presenter", [False, True], ids=["normal", "presenter"])
def test_no_serious_violation_on_any_tab_and_nothing_fetched_elsewhere(a11y_server, page, presenter):
    elsewhere = watch_requests(page, a11y_server.url)
    page.goto(f"{a11y_server.url}/?lesson={LESSON}" + ("&presenter=1" if presenter else ""))
    page.get_by_text(STEP).wait_for(timeout=WAIT_MS)
    page.get_by_role("button", name="Step", exact=True).click()
    wait_until(page, lambda p: step_of(p) >= 1, WAIT_MS)
    problems = {}
    labels = [t.inner_text().strip() for t in page.get_by_role("tab").all()]
    assert "Records" in labels and len(labels) >= 8
    for label in labels:
        open_tab(page, label)
        page.wait_for_timeout(300)
        found = axe_violations(page)
        if found:
            problems[label] = found
    assert problems == {}
    if presenter:  # body text at least 20 px for the back of the room
        open_tab(page, "Training error")
        sizes = page.evaluate("""() => [...document.querySelectorAll(
            '[data-testid=stMain] [data-testid=stMarkdownContainer] p, [data-testid=stMain] [data-testid=stMarkdownContainer] li')]
            .filter(e => e.offsetParent !== null && e.innerText.trim())
            .map(e => [parseFloat(getComputedStyle(e).fontSize), e.innerText.slice(0, 40)])""")
        assert sizes and [s for s in sizes if s[0] < 20] == []
    assert elsewhere == []
