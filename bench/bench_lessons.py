"""Every lesson x seeds 0, 1, 2 from the CLI, as a teacher would run them: verdict and wall time.

    .venv/bin/python bench/bench_lessons.py [--lessons degradation,paths] [--seeds 0,1,2] [--out runs/bench-lessons]

Each run is a fresh `python -m resnet_core lesson NAME --seed S` process (start-up included in the
wall time). The budget is the issue's: a lesson in under a minute, the thousand-layer one in under
two. Timings on a shared machine vary; the table prints them as measured, with the load average.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from resnet_core.lessons import LESSONS

ROOT = Path(__file__).resolve().parents[1]

BUDGET_S = {"thousand-layers": 120.0}
DEFAULT_BUDGET_S = 60.0


def run_one(name: str, seed: int, out: Path) -> tuple[int, str, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "resnet_core", "lesson", name, "--seed", str(seed),
                           "--out", str(out / f"{name}-seed{seed}"), "--overwrite"],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    lines = proc.stdout.splitlines()
    verdict = next((line for line in lines if line.startswith(("✓", "✗", "…"))), proc.stderr.strip()[-200:])
    return proc.returncode, verdict, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lessons", default=",".join(LESSONS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-lessons"))
    parser.add_argument("--verbose", action="store_true", help="print each verdict's summary")
    args = parser.parse_args()
    names = [n.strip() for n in args.lessons.split(",") if n.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    print(f"{os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.2f}")
    print(f"{'lesson':20} {'seed':>4}  {'verdict':10} {'wall s':>7} {'budget':>7}")
    failures = 0
    for name in names:
        for seed in seeds:
            rc, verdict, wall = run_one(name, seed, out)
            state = {0: "shown", 1: "not shown"}.get(rc, f"error {rc}")
            budget = BUDGET_S.get(name, DEFAULT_BUDGET_S)
            over = " OVER" if wall > budget else ""
            failures += rc != 0 or wall > budget
            print(f"{name:20} {seed:>4}  {state:10} {wall:>7.1f} {budget:>7.0f}{over}", flush=True)
            if args.verbose or rc != 0:
                print(f"    {verdict}", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.2f}; {failures} run(s) not shown or over budget")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
