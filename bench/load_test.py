"""A class on one server: N sessions open the app, T of them press Train, all keep interacting.

    .venv/bin/python bench/load_test.py [--sessions 30] [--training 10] [--seconds 40]
    .venv/bin/python bench/load_test.py --classroom [--through-proxy N] [--seconds 60]
    .venv/bin/python bench/load_test.py --cold-start 5 [--through-proxy N]

Starts a real ``streamlit run`` on 127.0.0.1, drives it with Streamlit WebSocket clients (the
browser's protocol, without a browser's CPU cost: see ``streamlit_client.py``), and prints:
interaction latency (full script reruns) p50/p95, the most busy worker processes seen at once
against the budget, the pace each training session's page shows, errors on pages and in the server log, and, after every session
closed, how long the server took to get back to its thread count, and its memory against the
baseline. ``tests/test_load.py`` runs a 5-session version in the suite.

``--classroom``: a lesson as a class lives it. 30 sessions press Train on the same lesson's preset
(degradation) within 10 s, and 10 more on 10 distinct settings (degradation, seeds 1-10); every
session keeps re-running its page. For each group: click to the first step visible on the page
(p50, p95, the slowest, and how many never moved), steps per second per session, page interaction
p95; and the CPU of the server processes and of their training workers. ``--through-proxy N`` runs
the same through ``scripts/serve-class.sh --processes N`` (haproxy in front, one shared run cache).
``--cold-start K``: K times a fresh server, one page, Train pressed as soon as the page is up: the
seconds from the click to step 1 on the page.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil

from resnet_core.sizing.budget import server_processes
from class_serving import server, serving, stacks
from streamlit_client import StreamlitClient

ROOT = Path(__file__).resolve().parents[1]

STEP = re.compile(r"Step (\d+)")
PACE = re.compile(r"([\d.]+) steps/s")  # the header's own pace, beside the step counter


def _first(client: StreamlitClient, pattern: re.Pattern, kind: type):
    """The first text on the client's page that matches, its group as a number; None if none does."""
    for text in client.page.texts:
        m = pattern.search(text)
        if m:
            return kind(m.group(1))
    return None


def step_of(client: StreamlitClient) -> int | None:
    return _first(client, STEP, int)


def pace_of(client: StreamlitClient) -> float | None:
    return _first(client, PACE, float)


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
                except TimeoutError as exc:
                    errors.append(f"an interaction took over 60 s: {exc}")
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
            "full_runs_ended_with_no_script_finished": sum(c.lost_finishes for c in clients),
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


# ---- a lesson as a class lives it ---------------------------------------------------------------
SAME_LESSON = "preset=degradation"
DISTINCT = [f"preset=degradation&seed={seed}" for seed in range(1, 11)]


class TimedClient(StreamlitClient):
    """A session that notes when its page (a full run or a live fragment's) first shows a step, and
    every step it shows with the time."""

    def __init__(self, base_url: str, query: str = ""):
        self.clicked_at: float | None = None
        self.first_step_at: float | None = None
        self.steps: list[tuple[float, int]] = []
        self.interactions: list[float] = []  # full reruns after the click, seconds each
        super().__init__(base_url, query)

    def _handle(self, msg) -> None:
        super()._handle(msg)
        if msg.WhichOneof("type") != "script_finished":
            return
        step = step_of(self)
        if step is None:
            return
        now = time.perf_counter()
        if not self.steps or self.steps[-1][1] != step:
            self.steps.append((now, step))
        if step >= 1 and self.first_step_at is None and self.clicked_at is not None:
            self.first_step_at = now

    def to_first_step(self) -> float:
        if self.first_step_at is None or self.clicked_at is None:
            return math.inf
        return self.first_step_at - self.clicked_at

    def steps_per_s(self) -> float | None:
        moving = [(t, s) for t, s in self.steps if s >= 1]
        if len(moving) < 2 or moving[-1][0] <= moving[0][0]:
            return None
        return (moving[-1][1] - moving[0][1]) / (moving[-1][0] - moving[0][0])


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile; inf (a session that never got there) counts, and shows."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q * len(ranked)) - 1)] if ranked else math.nan


def run_classroom(through_proxy: int = 0, seconds: float = 60.0, same: int = 30, think: float = 5.0,
                  click_within: float = 10.0, log_dir: Path | None = None) -> dict:
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="residual-lab-classroom-"))
    env = {"RESIDUAL_LAB_RUN_CACHE": str(log_dir / "cache")}
    figures: dict = {"through_proxy": through_proxy or "no (one server)", "sessions": f"{same} same + {len(DISTINCT)} distinct",
                     "window_s": seconds, "think_s": think}
    with serving(through_proxy, log_dir, env) as (url, served, logs):
        warm = StreamlitClient(url)  # the first page load imports the app: not part of the class
        warm.run(timeout=120)
        warm.close()
        time.sleep(3)
        groups = {"same": [TimedClient(url, SAME_LESSON) for _ in range(same)],
                  "distinct": [TimedClient(url, q) for q in DISTINCT]}
        clients = [c for group in groups.values() for c in group]
        for c in clients:
            c.run(timeout=120)
        rng = random.Random(0)
        offsets = [rng.uniform(0, click_within) for _ in clients]
        me = psutil.Process()
        cpu0, me0, t0 = served.cpu(), sum(me.cpu_times()[:2]), time.monotonic()
        stop = t0 + seconds
        errors: list[str] = []

        def student(c: TimedClient, offset: float, rng: random.Random) -> None:
            time.sleep(offset)
            c.clicked_at = time.perf_counter()
            try:
                c.click("Train", timeout=60)
            except (TimeoutError, KeyError) as exc:
                errors.append(f"Train: {exc}")
                return
            while time.monotonic() < stop:
                time.sleep(think * rng.uniform(0.5, 1.5))
                if time.monotonic() >= stop:
                    break
                try:
                    c.interactions.append(c.run(timeout=60))
                except TimeoutError as exc:
                    errors.append(f"an interaction took over 60 s: {exc}{stacks(served, log_dir)}")

        threads = [threading.Thread(target=student, args=(c, off, random.Random(i)), daemon=True)
                   for i, (c, off) in enumerate(zip(clients, offsets))]
        for t in threads:
            t.start()
        pace_seen: set[int] = set()
        while time.monotonic() < stop:
            for i, c in enumerate(clients):
                if pace_of(c) is not None:
                    pace_seen.add(i)
            time.sleep(0.5)
        for t in threads:
            t.join(timeout=70)
        cpu1, elapsed = served.cpu(), time.monotonic() - t0
        for name, group in groups.items():
            firsts = [c.to_first_step() for c in group]
            rates = [r for r in (c.steps_per_s() for c in group) if r is not None]
            inter = [x for c in group for x in c.interactions]
            figures[f"{name}: click to first step p50 s"] = quantile(firsts, 0.5)
            figures[f"{name}: click to first step p95 s"] = quantile(firsts, 0.95)
            figures[f"{name}: click to first step max s"] = max(firsts)
            moved = [f for f in firsts if f != math.inf]
            figures[f"{name}: never moved"] = len(firsts) - len(moved)
            figures[f"{name}: click to first step of those moving (p50, max) s"] = (
                (round(statistics.median(moved), 2), round(max(moved), 2)) if moved else None)
            figures[f"{name}: moving within 3 s"] = f"{sum(1 for f in firsts if f <= 3)} of {len(group)}"
            figures[f"{name}: steps/s per session p50"] = statistics.median(rates) if rates else None
            figures[f"{name}: steps/s per session min"] = min(rates) if rates else None
            figures[f"{name}: interaction p95 s"] = quantile(inter, 0.95) if inter else None
            figures[f"{name}: interactions"] = len(inter)
            figures[f"{name}: final steps (min, median, max)"] = (
                lambda s: (min(s), statistics.median(s), max(s)))([step_of(c) or 0 for c in group])
        all_inter = [x for c in clients for x in c.interactions]
        figures["all: interaction p95 s"] = quantile(all_inter, 0.95) if all_inter else None
        figures["full runs ended with no script_finished"] = sum(c.lost_finishes for c in clients)
        figures["sessions shown their pace"] = len(pace_seen)
        for part in ("servers", "workers", "proxy"):
            figures[f"cpu {part} (cores)"] = (cpu1[part] - cpu0[part]) / elapsed
        figures["cpu load clients (cores)"] = (sum(me.cpu_times()[:2]) - me0) / elapsed
        figures["page errors"] = errors + [e for c in clients for e in c.page.errors]
        for c in clients:
            c.close()
    figures["server log tracebacks"] = sum(p.read_text(errors="replace").count("Traceback") for p in logs)
    return figures


def run_cold_start(runs: int = 5, through_proxy: int = 0, log_dir: Path | None = None) -> dict:
    """A fresh server each time; one page opened as soon as it answers, Train pressed as soon as the
    page is drawn: click to step 1 on the page."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="residual-lab-cold-"))
    clicks, opens, starts = [], [], []
    for i in range(runs):
        run_dir = log_dir / f"run{i}"
        run_dir.mkdir(parents=True, exist_ok=True)
        t_start = time.perf_counter()
        with serving(through_proxy, run_dir, {"RESIDUAL_LAB_RUN_CACHE": str(run_dir / "cache")}) as (url, _, _):
            starts.append(time.perf_counter() - t_start)
            c = TimedClient(url, SAME_LESSON)
            opens.append(c.run(timeout=120))
            c.clicked_at = time.perf_counter()
            c.click("Train", timeout=120)
            deadline = time.monotonic() + 120
            while c.first_step_at is None and time.monotonic() < deadline:
                time.sleep(0.02)
            clicks.append(c.to_first_step())
            c.close()
        time.sleep(2)
    return {"runs": runs, "through_proxy": through_proxy or "no (one server)",
            "server up s (each)": [round(x, 2) for x in starts],
            "page drawn s (each)": [round(x, 2) for x in opens],
            "click to step 1 s (each)": [round(x, 2) for x in clicks],
            "click to step 1 s median": statistics.median(clicks), "click to step 1 s max": max(clicks)}


def show(figures: dict) -> None:
    for key, value in figures.items():
        print(f"{key:40} {value:.3f}" if isinstance(value, float) else f"{key:40} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--training", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=None, help="40; with --classroom 60, from the first click")
    parser.add_argument("--cap", type=int, default=server_processes(), help="worker processes (the app's default)")
    parser.add_argument("--think", type=float, default=5.0, help="seconds between one student's interactions")
    parser.add_argument("--classroom", action="store_true", help="30 sessions on one lesson, 10 on distinct settings")
    parser.add_argument("--through-proxy", type=int, default=0, metavar="N",
                        help="serve through scripts/serve-class.sh --processes N")
    parser.add_argument("--cold-start", type=int, default=0, metavar="K", help="K fresh servers: click to step 1")
    args = parser.parse_args()
    if args.through_proxy < 0 or args.cold_start < 0:
        parser.error("--through-proxy and --cold-start take a count of 1 or more")
    machine = f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} before the run"
    if args.cold_start:
        print(machine)
        show(run_cold_start(args.cold_start, args.through_proxy))
        return
    if args.classroom:
        print(machine)
        show(run_classroom(args.through_proxy, args.seconds or 60.0, think=args.think))
        return
    args.seconds = args.seconds or 40.0
    print(f"machine: {os.cpu_count()} cores; {args.sessions} sessions, {args.training} pressing Train, "
          f"cap {args.cap}, {args.seconds:.0f} s of interaction (a full rerun per session every {args.think:g} s)")
    for key, value in run_load(args.sessions, args.training, args.seconds, args.cap, think=args.think).items():
        print(f"{key:32} {value:.3f}" if isinstance(value, float) else f"{key:32} {value}")


if __name__ == "__main__":
    main()
