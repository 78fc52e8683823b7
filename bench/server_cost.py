"""What the page costs the server: CPU seconds of the Streamlit process per full rerun, and per
second of watching while a run trains (its live fragment refreshing).

    .venv/bin/python bench/server_cost.py [--watchers 10] [--reruns 20]

CPU time, not wall time (the mean over ``--reruns``: the CPU clock ticks at 10 ms, so one run alone reads in steps of 10): it is what 40 sessions in a classroom add up to on the server's one
Python process, and it is far less disturbed by other work on the machine than a latency is.
One session trains the degradation preset; ``--watchers`` more sessions open the same lesson and
follow it from the class's run cache; every page keeps its live fragment running.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psutil

from streamlit_client import StreamlitClient
from streamlit_server import start_streamlit, stop_streamlit

QUERY = "preset=degradation&steps=100000"  # long enough to keep training through the measurement


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=10)
    parser.add_argument("--reruns", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="residual-lab-server-cost-"))
    srv = start_streamlit(log_dir / "server.log", {"RESIDUAL_LAB_RUN_CACHE": str(log_dir / "cache")})
    proc = psutil.Process(srv.process.pid)
    try:
        warm = StreamlitClient(srv.url, QUERY)
        warm.run(timeout=120)
        c0 = cpu(proc)
        for _ in range(args.reruns):  # full reruns of an idle page
            warm.run(timeout=60)
        idle = (cpu(proc) - c0) / args.reruns
        warm.click("Train", timeout=60)
        watchers = [StreamlitClient(srv.url, QUERY) for _ in range(args.watchers)]
        for w in watchers:
            w.run(timeout=60)
            w.click("Train", timeout=60)
        time.sleep(3)
        c0, t0 = cpu(proc), time.monotonic()
        time.sleep(args.seconds)
        watching = (cpu(proc) - c0) / (time.monotonic() - t0)
        c0 = cpu(proc)
        for _ in range(args.reruns):  # full reruns of a training page, the others refreshing
            warm.run(timeout=60)
        busy = (cpu(proc) - c0) / args.reruns
        print(f"sessions training or following: {1 + args.watchers}")
        print(f"full rerun, idle page: {idle * 1e3:.1f} ms CPU (mean of {args.reruns})")
        print(f"server CPU while they train: {watching:.2f} cores ({watching / (1 + args.watchers) * 1e3:.0f} ms per session per second)")
        print(f"full rerun, training page, others refreshing: {busy * 1e3:.1f} ms CPU (mean; includes the others' refreshes meanwhile)")
    finally:
        stop_streamlit(srv.process)


if __name__ == "__main__":
    main()
