"""Cold start: the first Train on a freshly started server, click to step 1, in Chromium.

    .venv/bin/python bench/cold_start.py [--runs 5] [--think 0]

Each run starts a fresh `streamlit run` (its own process group, an empty run cache of its own), opens the page in Debian's
Chromium (launched once, beforehand, as a teacher's browser is open), waits for "Step 0" and the
Train button, waits ``--think`` seconds (0: clicks the moment it can), presses Train and times
until the page's step counter shows a step past 0. Prints each run, the server's start to the page
being interactive, and the median. Goal (issue 10): step 1 within a second of the click.
Figures only; on a shared machine, note the load average printed beside them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from streamlit_server import STEP, chromium, start_streamlit, step_of, stop_streamlit


def one_run(browser, think: float, log: Path) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as cache:  # nothing cached: the run really trains
        return _run(browser, think, log, cache)


def _run(browser, think: float, log: Path, cache: str) -> tuple[float, float]:
    started = time.monotonic()
    server = start_streamlit(log, env={"RESIDUAL_LAB_RUN_CACHE": cache})
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(server.url)
        page.get_by_text(STEP).wait_for(timeout=120_000)
        train = page.get_by_role("button", name="Train", exact=True)
        train.wait_for()
        ready = time.monotonic() - started
        if think:
            time.sleep(think)
        clicked = time.monotonic()
        train.click()
        while step_of(page) == 0:
            page.wait_for_timeout(20)
            if time.monotonic() - clicked > 60:
                raise RuntimeError("no step within 60 s")
        moved = time.monotonic() - clicked
        page.close()
        return ready, moved
    finally:
        stop_streamlit(server.process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--think", type=float, default=0.0, help="seconds between the page being ready and the click")
    args = parser.parse_args()
    clicks = []
    with chromium() as browser:
        for i in range(args.runs):
            load = os.getloadavg()[0]
            ready, moved = one_run(browser, args.think, Path("/tmp") / f"cold_start_{i}.log")
            clicks.append(moved)
            print(f"run {i + 1}: server start to interactive {ready:.2f} s; click to step 1 {moved:.2f} s "
                  f"(load average {load:.1f})", flush=True)
    print(f"click to step 1: median {statistics.median(clicks):.2f} s, worst {max(clicks):.2f} s, "
          f"runs {', '.join(f'{c:.2f}' for c in clicks)}")


if __name__ == "__main__":
    main()
