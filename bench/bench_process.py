"""Speed as a user measures it: whole processes, from the shell prompt to the prompt back.

    .venv/bin/python bench/bench_process.py [--pairs 5] [--only a,b,c] [--code DIR] [--vs DIR]

(a) ``python -m resnet_core train`` (300 steps of plain-20, plain-56 and resnet-56 on spirals, width
    32, batch 128, evaluations every 25) against ``bench/bare_loop.py``, the same models and batches
    in a bare eager loop: wall time of each whole process, the two alternated, medians and the
    median of the pairs' ratios (goal <= 0.5, issue 19; 0.6 before).
(b) ``python -m resnet_core train --preset thousand-layers --steps 30``: wall (goal <= 5 s).
(c) The degradation preset from a cold start (a fresh interpreter driving worker processes, as the
    CLI and the dashboard do) until its separation has held at three evaluations in a row
    (plain-56 >= plain-20 + 10 points, resnet-56 <= plain-56 - 10 points): goal <= 2 s.
Beside each wall time, the CPU seconds it took (every process of a CLI run together; for (c), the
parent's and each worker's at the moment of separation): on a shared machine under load the wall
times say more about the neighbours than about the code, the CPU seconds much less.
``--code DIR`` runs another checkout's code (e.g. an earlier commit, ``git archive``d) the same way,
so that a before and an after can be measured in one session; ``--vs DIR`` alternates (b)'s runs
of the two checkouts pair by pair and gives the ratios.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIR = ["--dataset", "spirals", "--models", "plain-20,plain-56,resnet-56", "--steps", "300", "--seed", "0",
        "--width", "32", "--batch-size", "128", "--eval-every", "25"]


def children_cpu() -> float:
    """CPU seconds (user and system) of every child process waited for so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds (user and system) a running process has used so far (Linux: /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    from resnet_core.scheduling.parallel_trainer import ParallelTrainer

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
                workers = " ".join(f"{process_cpu(pid):.2f}" for pid in trainer.pids())
                print(f"separated {trainer.step} cpu {time.process_time():.2f} {workers}", flush=True)
                return
    print("separated never", flush=True)


def separation(code: Path) -> tuple[float, str, list[float]]:
    """(wall seconds, the step it held at, [the parent's CPU seconds, each worker's]) at separation."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    t = time.perf_counter()
    child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--separation-child"], cwd=code, env=env,
                             stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline().split()
    seconds = time.perf_counter() - t
    child.wait()
    return seconds, line[1] if len(line) > 1 else "?", [float(v) for v in line[3:]]


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
        ours, bare, ratios, cpu = [], [], [], []
        for _ in range(args.pairs):
            before = children_cpu()
            ours.append(cli(PAIR, code))
            cpu.append(children_cpu() - before)
            bare.append(wall([sys.executable, bare_script, "--steps", "300"], code))
            ratios.append(ours[-1] / bare[-1])
        print(f"(a) CLI train {statistics.median(ours):.2f} s ({min(ours):.2f}-{max(ours):.2f}), bare loop "
              f"{statistics.median(bare):.2f} s ({min(bare):.2f}-{max(bare):.2f}), ratio {statistics.median(ratios):.2f}"
              f"   (goal <= 0.5); the CLI run's CPU {min(cpu):.2f}-{max(cpu):.2f} s, all its processes")
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
        seconds = [s for s, _, _ in found]
        critical = [cpu[0] + max(cpu[1:]) for _, _, cpu in found if len(cpu) > 1]
        print(f"(c) degradation, cold start to separation: {statistics.median(seconds):.2f} s "
              f"({min(seconds):.2f}-{max(seconds):.2f}; held at step {found[0][1]})   (goal <= 2 s)")
        for _, _, cpu in found:
            print(f"    CPU at separation: parent {cpu[0]:.2f} s, workers {' / '.join(f'{v:.2f}' for v in cpu[1:])} s")
        if critical:
            print(f"    the parent's and the busier worker's CPU together: {min(critical):.2f}-{max(critical):.2f} s")


if __name__ == "__main__":
    main()
