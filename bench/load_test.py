"""A class on one server: N sessions open the app, T of them press Train, all keep interacting.

    .venv/bin/python bench/load_test.py [--sessions 30] [--training 10] [--seconds 40]

Starts a real ``streamlit run`` on 127.0.0.1, drives it with Streamlit WebSocket clients (the
browser's protocol, without a browser's CPU cost: see ``streamlit_client.py``), and prints:
interaction latency (full script reruns) p50/p95, the most busy worker processes seen at once
against the budget, the pace each training session's page shows, errors on pages and in the server log, and, after every session
closed, how long the server took to get back to its thread count, and its memory against the
baseline. ``tests/test_load.py`` runs a 5-session version in the suite.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

from streamlit_server import start_streamlit, stop_streamlit
from dashboard.runtime.scheduler import process_budget
from streamlit_client import StreamlitClient

ROOT = Path(__file__).resolve().parents[1]

STEP = re.compile(r"Step (\d+)")
PACE = re.compile(r"([\d.]+) steps/s")  # the header's own pace, beside the step counter


@contextmanager
def server(log_path: Path, env: dict[str, str] | None = None):
    """A real server (the tests' ``start_streamlit``), stopped with a plain SIGTERM to the server
    alone: whatever it started must go with it, and the fault tests check that it does."""
    srv = start_streamlit(log_path, env)
    try:
        yield srv.url, psutil.Process(srv.process.pid)
    finally:
        srv.process.terminate()
        try:
            srv.process.wait(10)
        except subprocess.TimeoutExpired:
            stop_streamlit(srv.process)


def step_of(client: StreamlitClient) -> int | None:
    for text in client.page.texts:
        m = STEP.search(text)
        if m:
            return int(m.group(1))
    return None


def pace_of(client: StreamlitClient) -> float | None:
    for text in client.page.texts:
        m = PACE.search(text)
        if m:
            return float(m.group(1))
    return None


class BusyWorkers:
    """Counts the server's child processes that are using a core right now (training)."""

    def __init__(self, server_proc: psutil.Process):
        self.server = server_proc
        self.known: dict[int, psutil.Process] = {}

    def count(self) -> int:
        busy = 0
        for child in self.server.children(recursive=True):
            proc = self.known.setdefault(child.pid, child)
            try:
                if proc.cpu_percent(interval=None) > 30:  # since the previous look at this process
                    busy += 1
            except psutil.Error:
                self.known.pop(child.pid, None)
        return busy


def run_load(sessions: int, training: int, seconds: float, cap: int = 2, log_path: Path | None = None,
             think: float = 5.0) -> dict:
    log_path = log_path or Path("/tmp/residual-lab-load.log")
    figures: dict = {"sessions": sessions, "training": training, "cap": cap, "think_s": think}
    with server(log_path, {"RESIDUAL_LAB_PROCESSES": str(cap)}) as (url, proc):
        warm = StreamlitClient(url)  # the first page load imports torch & co: not part of the load
        warm.run(timeout=120)
        warm.close()
        time.sleep(3)
        base_threads, base_rss = proc.num_threads(), proc.memory_info().rss
        figures["baseline_threads"], figures["baseline_rss_mb"] = base_threads, base_rss / 2**20

        clients = [StreamlitClient(url) for _ in range(sessions)]
        open_s = [c.run(timeout=120) for c in clients]
        for c in clients[:training]:
            c.click("Train")
        stop = time.monotonic() + seconds
        peak_busy, paces, errors = 0, {}, []
        busy = BusyWorkers(proc)

        def interact(c: StreamlitClient, rng: random.Random) -> None:
            """A student changing something now and then: a full rerun. Students do not click in
            step with each other: a random start, then think times of 0.5-1.5x ``think``."""
            time.sleep(rng.uniform(0, think))
            while time.monotonic() < stop:
                try:
                    c.run(timeout=60)
                except TimeoutError:
                    errors.append("an interaction took over 60 s")
                time.sleep(think * rng.uniform(0.5, 1.5))

        threads = [threading.Thread(target=interact, args=(c, random.Random(i)), daemon=True)
                   for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        for c in clients:
            c.latencies.clear()
        me = psutil.Process()
        cpu0 = {"server": sum(proc.cpu_times()[:2]), "clients": sum(me.cpu_times()[:2])}
        while time.monotonic() < stop:
            peak_busy = max(peak_busy, busy.count())
            for i, c in enumerate(clients[:training]):
                if (p := pace_of(c)) is not None:
                    paces.setdefault(i, []).append(p)
            time.sleep(0.5)
        for t in threads:
            t.join(timeout=70)
        figures["server_cpu_share"] = (sum(proc.cpu_times()[:2]) - cpu0["server"]) / seconds  # of one core
        figures["load_clients_cpu_share"] = (sum(me.cpu_times()[:2]) - cpu0["clients"]) / seconds
        latencies = sorted(x for c in clients for x in c.latencies)
        steps = [step_of(c) or 0 for c in clients[:training]]
        errors += [e for c in clients for e in c.page.errors]
        figures.update({
            "open_page_s_median": statistics.median(open_s),
            "interactions": len(latencies),
            "latency_p50_s": latencies[len(latencies) // 2] if latencies else None,
            "latency_p95_s": latencies[int(len(latencies) * 0.95) - 1] if latencies else None,
            "peak_training_workers": peak_busy,
            "sessions_shown_a_pace": len(paces),
            "pace_steps_per_s_median_each": [round(statistics.median(paces[i]), 1) if i in paces else None
                                             for i in range(training)],
            "steps_reached": steps,
            "page_errors": errors,
            "bytes_per_session_per_s": statistics.mean(c.bytes_received for c in clients) / max(seconds, 1),
            "peak_threads": proc.num_threads(),
            "peak_rss_mb": proc.memory_info().rss / 2**20,
            "server_loaded_torch": any("libtorch" in m.path for m in proc.memory_maps()),  # only workers need it
        })
        for c in clients:
            c.close()
        t0 = time.monotonic()
        back_after = None
        while time.monotonic() - t0 < 60:
            if proc.num_threads() <= base_threads:
                back_after = time.monotonic() - t0
                break
            time.sleep(0.5)
        figures["threads_back_to_baseline_s"] = back_after
        figures["threads_after_close"] = proc.num_threads()
        time.sleep(max(0.0, 30 - (time.monotonic() - t0)))
        figures["rss_after_close_mb"] = proc.memory_info().rss / 2**20
    log = log_path.read_text()
    figures["server_log_tracebacks"] = log.count("Traceback")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--training", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--cap", type=int, default=process_budget(), help="worker processes (the app's default)")
    parser.add_argument("--think", type=float, default=5.0, help="seconds between one student's interactions")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.sessions} sessions, {args.training} pressing Train, "
          f"cap {args.cap}, {args.seconds:.0f} s of interaction (a full rerun per session every {args.think:g} s)")
    for key, value in run_load(args.sessions, args.training, args.seconds, args.cap, think=args.think).items():
        print(f"{key:32} {value:.3f}" if isinstance(value, float) else f"{key:32} {value}")


if __name__ == "__main__":
    main()
