"""Six tabs of a class, in Chromium: each presses Train on the degradation preset in turn, the
earlier ones still training; the seconds from each click to its own step counter moving.

    .venv/bin/python bench/six_tabs.py [--runs 5] [--tabs 6]

What ``tests/test_browser.py`` checks with a loose bound, measured: each run starts a fresh
``streamlit run`` with an empty run cache (the first tab trains, the others follow its run), opens
the tabs, and clicks them one after another as soon as the previous one moved. Prints each tab's
time per run, and the slowest tab of each run. Goal (issue 10): every tab moving within 3 s.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from streamlit_server import STEP, chromium, start_streamlit, step_of, stop_streamlit


def one_run(browser, tabs: int, log: Path) -> list[float]:
    with tempfile.TemporaryDirectory() as cache:
        server = start_streamlit(log, env={"RESIDUAL_LAB_RUN_CACHE": cache})
        contexts = [browser.new_context(viewport={"width": 1400, "height": 900}) for _ in range(tabs)]
        try:
            pages = [context.new_page() for context in contexts]
            for page in pages:
                page.goto(server.url + "/?preset=degradation&steps=5000")
                page.get_by_text(STEP).wait_for(timeout=120_000)
            waited = []
            for page in pages:
                clicked = time.monotonic()
                page.get_by_role("button", name="Train", exact=True).click()
                while step_of(page) == 0:
                    page.wait_for_timeout(20)
                    if time.monotonic() - clicked > 60:
                        raise RuntimeError("a tab did not move within 60 s")
                waited.append(time.monotonic() - clicked)
            return waited
        finally:
            for context in contexts:
                context.close()
            stop_streamlit(server.process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tabs", type=int, default=6)
    args = parser.parse_args()
    slowest = []
    with chromium() as browser:
        for i in range(args.runs):
            load = os.getloadavg()[0]
            waited = one_run(browser, args.tabs, Path("/tmp") / f"six_tabs_{i}.log")
            slowest.append(max(waited))
            print(f"run {i + 1}: click to moving, tab by tab: {', '.join(f'{w:.2f}' for w in waited)} s "
                  f"(load average {load:.1f})", flush=True)
    print(f"slowest tab of each run: {', '.join(f'{s:.2f}' for s in slowest)} s; "
          f"{sum(s <= 3.0 for s in slowest)} of {len(slowest)} runs with every tab within 3 s")


if __name__ == "__main__":
    main()
