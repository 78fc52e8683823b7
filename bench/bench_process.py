"""Speed as a user measures it: whole processes, from the shell prompt to the prompt back.

    .venv/bin/python bench/bench_process.py [--pairs 5] [--only a,b,c] [--code DIR] [--vs DIR]

(a) ``python -m resnet_core train`` (300 steps of plain-20, plain-56 and resnet-56 on spirals, width
    32, batch 128, evaluations every 25) against ``bench/bare_loop.py``, the same models and batches
    in a bare eager loop: wall time of each whole process, the two alternated, medians and the
    median of the pairs' ratios (goal <= 0.6).
(b) ``python -m resnet_core train --preset thousand-layers --steps 30``: wall (goal <= 5 s).
(c) The degradation preset from a cold start (a fresh interpreter driving worker processes, as the
    CLI and the dashboard do) until its separation has held at three evaluations in a row
    (plain-56 >= plain-20 + 10 points, resnet-56 <= plain-56 - 10 points): goal <= 2 s.
``--code DIR`` runs another checkout's code (e.g. an earlier commit, ``git archive``d) the same way,
so that a before and an after can be measured in one session; ``--vs DIR`` alternates (b)'s runs
of the two checkouts pair by pair and gives the ratios.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIR = ["--dataset", "spirals", "--models", "plain-20,plain-56,resnet-56", "--steps", "300", "--seed", "0",
        "--width", "32", "--batch-size", "128", "--eval-every", "25"]


def wall(cmd: list[str], code: Path, env_extra: dict[str, str] | None = None) -> float:
    env = {**os.environ, "PYTHONPATH": str(code), **(env_extra or {})}
    t = time.perf_counter()
    subprocess.run(cmd, cwd=code, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def cli(args: list[str], code: Path, env_extra: dict[str, str] | None = None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return wall([sys.executable, "-m", "resnet_core", "train", *args, "--out", f"{tmp}/run"], code, env_extra)


def separation_child() -> None:
    """In a fresh interpreter: train the degradation preset, print the step once it has separated."""
    from resnet_core.presets import get_preset
    from resnet_core.remote.trainer import ParallelTrainer

    settings = get_preset("degradation").settings()
    shallow, deep, res = (s.name for s in settings.model_specs)
    streak = 0
    with ParallelTrainer(settings, workers=min(2, os.cpu_count() or 1)) as trainer:
        while not trainer.done:
            trainer.train_step()
            if trainer.step % settings.eval_every:
                continue
            last = {r["model"]: r["train_error"] for r in trainer.record.metric_rows() if r["step"] == trainer.step}
            streak = streak + 1 if last[deep] >= last[shallow] + 0.10 and last[res] <= last[deep] - 0.10 else 0
            if streak == 3:
                print(f"separated {trainer.step}", flush=True)
                return
    print("separated never", flush=True)


def separation(code: Path) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    t = time.perf_counter()
    child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--separation-child"], cwd=code, env=env,
                             stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline().split()
    seconds = time.perf_counter() - t
    child.wait()
    return seconds, line[-1] if line else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--only", default="a,b,c")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose code runs (default: this one)")
    parser.add_argument("--vs", type=Path, help="another checkout whose (b) runs alternate with --code's, pair by pair")
    parser.add_argument("--separation-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.separation_child:
        return separation_child()
    code, only = args.code.resolve(), set(args.only.split(","))
    print(f"code: {code}; {os.cpu_count()} cores; {args.pairs} pairs, medians")
    if "a" in only:
        bare_script = str(ROOT / "bench" / "bare_loop.py")
        ours, bare, ratios = [], [], []
        for _ in range(args.pairs):
            ours.append(cli(PAIR, code))
            bare.append(wall([sys.executable, bare_script, "--steps", "300"], code))
            ratios.append(ours[-1] / bare[-1])
        print(f"(a) CLI train {statistics.median(ours):.2f} s ({min(ours):.2f}-{max(ours):.2f}), bare loop "
              f"{statistics.median(bare):.2f} s ({min(bare):.2f}-{max(bare):.2f}), ratio {statistics.median(ratios):.2f}"
              "   (goal <= 0.6)")
    if "b" in only:
        b_args = ["--preset", "thousand-layers", "--steps", "30"]
        runs, before = [], []
        for _ in range(args.pairs):  # with --vs, the two checkouts alternated: this machine's speed drifts
            runs.append(cli(b_args, code))
            if args.vs:
                before.append(cli(b_args, args.vs.resolve()))
        print(f"(b) thousand-layers, 30 steps, CLI: {statistics.median(runs):.2f} s ({min(runs):.2f}-{max(runs):.2f})"
              "   (goal <= 5 s)")
        if before:
            ratios = [a / b for a, b in zip(runs, before)]
            print(f"    alternated with {args.vs}: {statistics.median(before):.2f} s ({min(before):.2f}-{max(before):.2f}),"
                  f" ratio {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
    if "c" in only:
        found = [separation(code) for _ in range(args.pairs)]
        seconds = [s for s, _ in found]
        print(f"(c) degradation, cold start to separation: {statistics.median(seconds):.2f} s "
              f"({min(seconds):.2f}-{max(seconds):.2f}; held at step {found[0][1]})   (goal <= 2 s)")


if __name__ == "__main__":
    main()
