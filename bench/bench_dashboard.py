"""What the live page costs: start-up, bytes and server CPU per refresh, time to the first result.

    .venv/bin/python bench/bench_dashboard.py [--sessions 1] [--window 8]

Starts a real `streamlit run` on 127.0.0.1, opens the page in Debian's Chromium (Playwright),
presses Train on the default preset (degradation) and prints:

- app start to interactive: from launching the server to the page showing "Step 0" with Train;
- Train to separation: until the cards show the deep plain net's training error at least 10
  points above both the shallow plain net's and the deep residual net's (the degradation
  visible to a class);
- per refresh, for each tab that refreshes while training: bytes received on the page's
  WebSocket and server CPU (psutil, per thread of the server process; its worker processes,
  where torch runs, are not included), in all and without the sessions' training threads.
  One refresh = one period of the 1 s fragment timer; the heavy panels refresh every 2.5 s
  within it. The CPU clock ticks at 10 ms: over a 6 s window that is ~2 ms per refresh.

Goals from the issue: <= 100 KB and <= 20 ms per refresh per session, start <= 4 s,
separation <= 8 s. Figures only; no assertion (timings on a shared machine vary: run twice).
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import psutil

from streamlit_server import STEP, chromium, card_errors, start_streamlit, step_of, stop_streamlit

REPO = Path(__file__).resolve().parents[1]


def separated(errors: dict[str, float]) -> bool:
    e = errors
    return len(e) == 3 and e["plain-56"] >= max(e["plain-20"], e["resnet-56"]) + 10


class SocketMeter:
    """Bytes the page receives on Streamlit's WebSocket."""

    def __init__(self, page):
        self.bytes = 0
        self.frames = 0
        page.on("websocket", self._attach)

    def _attach(self, ws) -> None:
        if "_stcore/stream" in ws.url:
            ws.on("framereceived", self._count)

    def _count(self, payload) -> None:
        self.bytes += len(payload)
        self.frames += 1


def measure_tab(pages, meter: SocketMeter, server: psutil.Process, tab: str, window_s: float) -> dict:
    """A fresh run of the default settings with ``tab`` open, measured while it trains."""
    for page in pages:
        page.get_by_role("tab", name=tab, exact=True).click()
        page.get_by_role("button", name="Reset", exact=True).click()
        page.get_by_text(STEP).filter(has_text=re.compile(r"^Step 0$")).wait_for()
        page.get_by_role("button", name="Train", exact=True).click()
    page = pages[0]
    while step_of(page) < 20:  # past the start-up (a full rerun, the models being built)
        page.wait_for_timeout(100)
    page.wait_for_timeout(1000)
    b0, f0, (cpu0, train0), t0 = meter.bytes, meter.frames, thread_cpu(server), time.monotonic()
    s0 = step_of(page)
    page.wait_for_timeout(window_s * 1000)
    b1, f1, (cpu1, train1), t1 = meter.bytes, meter.frames, thread_cpu(server), time.monotonic()
    refreshes = (t1 - t0) / 1.0
    return {"tab": tab, "kb_per_refresh": (b1 - b0) / 1024 / refreshes,
            "cpu_ms_per_refresh": 1000 * (cpu1 - cpu0) / refreshes,
            "training_ms_per_s": 1000 * (train1 - train0) / (t1 - t0),
            "frames": f1 - f0, "steps": step_of(page) - s0}


def thread_cpu(server: psutil.Process) -> tuple[float, float]:
    """(CPU seconds of the whole server, of the threads that drive its worker processes): the
    scheduler names their OS threads (HOST_THREAD_NAME-i), so training can be told apart from
    serving the page."""
    from resnet_core.scheduling.scheduler import HOST_THREAD_NAME

    total = training = 0.0
    for t in server.threads():
        cpu = t.user_time + t.system_time
        total += cpu
        try:
            name = Path(f"/proc/{server.pid}/task/{t.id}/comm").read_text().strip()
        except OSError:
            continue
        if name.startswith(HOST_THREAD_NAME):
            training += cpu
    return total, training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1, help="pages training at once")
    parser.add_argument("--window", type=float, default=6.0, help="seconds measured per tab (a run lasts ~15-20 s)")
    args = parser.parse_args()
    log = Path("/tmp") / f"bench_dashboard_{int(time.time())}.log"
    with chromium() as browser:  # open before the clock starts, as a teacher's is
        pages = [browser.new_page(viewport={"width": 1400, "height": 900}) for _ in range(args.sessions)]
        meters = [SocketMeter(page) for page in pages]
        started = time.monotonic()
        srv = start_streamlit(log, env={"RESIDUAL_LAB_PROCESSES": str(max(2, args.sessions))})
        ready = time.monotonic()
        server = psutil.Process(srv.process.pid)
        try:
            for i, page in enumerate(pages):
                page.goto(srv.url)
                page.get_by_text(STEP).wait_for(timeout=120_000)
                page.get_by_role("button", name="Train", exact=True).wait_for()
                if i == 0:
                    print(f"app start to interactive: {time.monotonic() - started:.2f} s "
                          f"(server answering after {ready - started:.2f} s, first page run after that)")
            clicked = time.monotonic()
            for page in pages:
                page.get_by_role("button", name="Train", exact=True).click()
            page = pages[0]
            while not separated(errors := card_errors(page)):
                page.wait_for_timeout(100)
                if time.monotonic() - clicked > 120:
                    raise SystemExit(f"no separation after 120 s: {errors}")
            print(f"Train to separation visible: {time.monotonic() - clicked:.2f} s, cards {errors}")
            print("per refresh (1 s) and session: bytes to the page; server CPU in all, and without the "
                  "training threads (they mostly wait on the worker's pipe, and parse what it sends)")
            for tab in ("Training error", "Gradients", "Signals", "Decision regions"):
                r = measure_tab(pages, meters[0], server, tab, args.window)
                cpu, train = (r["cpu_ms_per_refresh"] / args.sessions, r["training_ms_per_s"] / args.sessions)
                print(f"{r['tab']:>16}: {r['kb_per_refresh']:6.1f} KB  server {cpu:5.1f} ms CPU, "
                      f"page {cpu - train:5.1f} ms  ({r['frames']} frames, {r['steps']} steps in the window)")
        finally:
            stop_streamlit(srv.process)
    print("server log has a traceback!" if "Traceback" in log.read_text() else f"server log clean ({log})")


if __name__ == "__main__":
    main()
