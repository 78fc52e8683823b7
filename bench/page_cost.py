"""What one Chromium tab watching a run costs its browser: CPU of Chromium's processes over 10 s of
training, as a share of one core, and what the page received meanwhile.

    .venv/bin/python bench/page_cost.py [--seconds 10] [--rounds 1]

A real server (as scripts/app.sh starts it, an empty run cache), one tab on the degradation lesson
(``?preset=degradation&steps=20000``: it keeps training), Train pressed; then, each for ``--seconds``:

- ``watching``: the Training error tab open and in front (the default);
- ``gradients``: the Gradients tab open instead (heatmaps: the heaviest live panel);
- ``hidden``: another tab brought to the front. Headless Chromium (156) never hides a page: its
  ``document.visibilityState`` stays "visible" with another tab in front, its window minimised
  (``Browser.setWindowBounds``) or after ``Page.setWebLifecycleState``. So where the page still
  says "visible" the bench does what a headful browser does when the tab is hidden: the page's
  ``document.visibilityState`` reads "hidden" and a ``visibilitychange`` event fires (``HIDE``);
- ``shown``: the page in front again, visible (the overrides removed, the event fired);

with ``psutil`` over Chromium's processes: the renderers (the pages), the GPU process and the
browser process (with its utilities) apart, and the bytes of the WebSocket frames the page received.
The goal (issue 23): the renderers ≤ 15 % of a core while watching; a hidden tab costs nothing.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import psutil

from streamlit_server import STEP, chromium, start_streamlit, step_of, stop_streamlit

QUERY = "/?preset=degradation&steps=20000"


def chromium_processes() -> dict[str, list[psutil.Process]]:
    """This process's Chromium processes by kind: renderer, gpu, browser (the rest: the browser
    process itself, its zygotes and utilities)."""
    kinds: dict[str, list[psutil.Process]] = {"renderer": [], "gpu": [], "browser": []}
    for p in psutil.Process().children(recursive=True):
        try:
            if "chrom" not in p.name():
                continue
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        kind = "renderer" if "--type=renderer" in cmd else "gpu" if "--type=gpu-process" in cmd else "browser"
        kinds[kind].append(p)
    return kinds


def cpu_seconds(processes: dict[str, list[psutil.Process]]) -> dict[str, float]:
    out = {}
    for kind, ps in processes.items():
        total = 0.0
        for p in ps:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        out[kind] = total
    return out


class Received:
    """Bytes of the WebSocket frames the page received (Streamlit's ForwardMsgs)."""

    def __init__(self, page):
        self.bytes = self.frames = 0
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload) -> None:
        self.frames += 1
        self.bytes += len(payload)


def measure(page, received: Received, server_pid: int, seconds: float) -> dict[str, float]:
    processes = chromium_processes()
    server = psutil.Process(server_pid)
    before, frames, sent, server_before = cpu_seconds(processes), received.frames, received.bytes, server.cpu_times()
    step, started = step_of_any(page), time.monotonic()
    page.wait_for_timeout(seconds * 1000)
    wall = time.monotonic() - started
    after, server_after = cpu_seconds(processes), server.cpu_times()
    out = {kind: (after[kind] - before[kind]) / wall for kind in before}
    out["server"] = (server_after.user + server_after.system - server_before.user - server_before.system) / wall
    out["kB/s"] = (received.bytes - sent) / wall / 1000
    out["frames/s"] = (received.frames - frames) / wall
    out["steps/s"] = (step_of_any(page) - step) / wall
    return out


def step_of_any(page) -> int:
    try:
        return step_of(page)
    except Exception:  # noqa: BLE001  a hidden page may be mid-rerun; the step is only a sanity check
        return 0


# What a browser does to a page it hides and shows again, for headless Chromium, which does neither.
HIDE = """() => { for (const [name, value] of [["visibilityState", "hidden"], ["hidden", true]])
    Object.defineProperty(document, name, {configurable: true, get: () => value});
  document.dispatchEvent(new Event("visibilitychange")); }"""
SHOW = """() => { delete document.visibilityState; delete document.hidden;
  document.dispatchEvent(new Event("visibilitychange")); }"""


def hide(page, other) -> str:
    """Bring ``other`` to the front; where ``page`` is not hidden by that, hide it as a browser would.
    Says how it was hidden."""
    other.bring_to_front()
    if page.evaluate("document.visibilityState") == "hidden":
        return "hidden by another tab in front"
    page.evaluate(HIDE)
    return "hidden by the bench (headless Chromium kept it visible)"


def reveal(page) -> None:
    page.bring_to_front()
    page.evaluate(SHOW)


def open_tab(page, label: str) -> None:
    page.get_by_role("tab", name=label, exact=True).click()
    page.get_by_role("tab", name=label, exact=True).and_(page.locator("[aria-selected=true]")).wait_for()
    page.wait_for_timeout(1500)


def show(name: str, figures: dict[str, float], note: str = "") -> None:
    print(f"{name:10s} renderer {figures['renderer']:6.1%}  gpu {figures['gpu']:6.1%}  "
          f"browser {figures['browser']:6.1%}  | server {figures['server']:6.1%}  "
          f"received {figures['kB/s']:7.1f} kB/s in {figures['frames/s']:5.1f} frames/s  "
          f"({figures['steps/s']:.0f} steps/s){note}", flush=True)


def one_round(browser, seconds: float, log: Path, watch_only: bool = False) -> None:
    with tempfile.TemporaryDirectory() as cache:
        server = start_streamlit(log, env={"RESIDUAL_LAB_RUN_CACHE": cache})
        context = browser.new_context(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
        try:
            page = context.new_page()
            received = Received(page)
            page.goto(server.url + QUERY)
            page.get_by_text(STEP).wait_for(timeout=120_000)
            page.get_by_role("button", name="Train", exact=True).click()
            while step_of(page) < 20:
                page.wait_for_timeout(100)
            page.wait_for_timeout(2000)  # past the first quick refreshes, at the usual pace
            print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
            show("watching", measure(page, received, server.process.pid, seconds))
            if watch_only:
                return
            open_tab(page, "Gradients")
            show("gradients", measure(page, received, server.process.pid, seconds))
            open_tab(page, "Training error")
            other = context.new_page()
            other.goto("about:blank")
            how = hide(page, other)
            page.wait_for_timeout(1500)  # the page's last refresh under way
            state = page.evaluate("document.visibilityState")
            show("hidden", measure(page, received, server.process.pid, seconds), f"  {state}: {how}")
            reveal(page)
            other.close()
            state = page.evaluate("document.visibilityState")
            page.wait_for_timeout(1500)
            show("shown", measure(page, received, server.process.pid, seconds), f"  {state}")
        finally:
            context.close()
            stop_streamlit(server.process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--watch-only", action="store_true", help="only the default tab, in front")
    args = parser.parse_args()
    print(f"shares of one core over {args.seconds:.0f} s; {psutil.cpu_count()} cores", flush=True)
    with chromium() as browser:
        for i in range(args.rounds):
            one_round(browser, args.seconds, Path("/tmp") / f"page_cost_{i}.log", args.watch_only)


if __name__ == "__main__":
    main()
