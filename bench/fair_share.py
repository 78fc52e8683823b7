"""A small run beside the costliest link a class found (issue 20, item 1), on one worker process.

    .venv/bin/python bench/fair_share.py [--process-s 20]

The link: six 2002-layer nets at width 32, evaluated, probed, mapped and path-analysed at every step.
A small run (plain-4 and resnet-6 at width 8, the tests' TINY) trains alone for a while, then beside
the link. Printed: the small run's steps per second of the worker's CPU time (the scheduler's own
ledger: a loaded machine does not move it) and per wall-clock second, alone and beside the link;
the most of the worker's time given to others between two turns of the small run, and the longest
wall-clock wait between two of its steps; the link's share of the worker and its longest turn.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from test_fairness import LINK, LONG  # noqa: E402
from test_sessions import wait_for  # noqa: E402

from dashboard.runtime.session import Session  # noqa: E402
from resnet_core.scheduling.scheduler import Scheduler  # noqa: E402


def window(host, run, job: Session, process_s: float) -> dict:
    mark, start, t0, seen = len(host.ledger), job.status().step, time.monotonic(), len(run.progress)
    wait_for(lambda: sum(u for _, u in list(host.ledger)[mark:]) >= process_s, timeout=600)
    turns, steps, wall = list(host.ledger)[mark:], job.status().step - start, time.monotonic() - t0
    waits, waited = [0.0], 0.0
    for owner, used in turns:
        waits, waited = (waits + [waited], 0.0) if owner == "small" else (waits, waited + used)
    progress = list(run.progress)[seen:]
    moved = [t for (t, s), (_, s0) in zip(progress[1:], progress) if s > s0]
    total = sum(u for _, u in turns)
    return {"per_cpu_s": steps / total, "per_wall_s": steps / wall, "wait_cpu_s": max(waits),
            "wait_wall_s": max((b - a for a, b in zip(moved, moved[1:])), default=0.0),
            "link_share": sum(u for o, u in turns if o == "link") / total,
            "link_turn_s": max((u for o, u in turns if o == "link"), default=0.0), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--process-s", type=float, default=20.0, help="worker CPU seconds beside the link")
    args = parser.parse_args()
    pool = Scheduler(size=1)
    host = pool.hosts[0]
    small, link = Session(pool, LONG, owner="small"), Session(pool, LINK, owner="link")
    try:
        small.train()
        wait_for(lambda: small.status().step > 5)
        alone = window(host, small.source, small, args.process_s / 4)
        link.train()
        wait_for(lambda: any(o == "link" for o, _ in list(host.ledger)), timeout=120)
        beside = window(host, small.source, small, args.process_s)
    finally:
        small.stop()
        link.stop()
        pool.close()
    print(f"alone:  {alone['per_cpu_s']:.0f} steps per CPU second, {alone['per_wall_s']:.0f} per wall second")
    print(f"beside: {beside['per_cpu_s']:.0f} steps per CPU second ({beside['per_cpu_s'] / alone['per_cpu_s']:.0%}), "
          f"{beside['per_wall_s']:.0f} per wall second ({beside['per_wall_s'] / alone['per_wall_s']:.0%}) "
          f"over {beside['wall_s']:.0f} s")
    print(f"longest wait between two turns: {beside['wait_cpu_s']:.2f} s of the worker's time, "
          f"{beside['wait_wall_s']:.2f} s of wall clock")
    print(f"the link: {beside['link_share']:.0%} of the worker, longest turn {beside['link_turn_s']:.2f} s")


if __name__ == "__main__":
    main()
