"""Depth-sweep wall time with one and with two worker processes, and the ratio; or, with
``--stacking``, with and without the seeds of each (family, depth) trained stacked.

    .venv/bin/python bench/bench_sweep.py [--steps 200] [--seeds 0,1,2] [--depths 8,14,20,32,44,56] [--repeat 1]
    .venv/bin/python bench/bench_sweep.py --stacking [--workers 2] [--steps 200] ...

The spirals sweep of the issue: plain and residual MLPs at depths 8..56, three seeds, a modest
number of steps. Runs are independent, so two processes on two cores should take close to half
the time of one (goal: ratio <= 0.6). Each figure includes starting the worker processes. The
degradation trend is printed too, so a fast but wrong sweep cannot pass unnoticed.

``--stacking`` times the same sweep planned run by run (one job per run) and stacked (one job per
depth, its runs side by side in shared stacks, ``training.member_stacks``), alternated, on
``--workers`` processes; it prints both wall times, their ratio, both degradation trends and the
largest difference between the two sweeps' errors (0 when stacking changed no number).

Other load on the machine takes the second core away. The same ratio for two processes that
only spin in pure Python, measured just before and after, says how much of a second core there
was to use: a sweep ratio near that control means the sweep scales as far as the machine let it.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time


from resnet_core.settings import Settings
from resnet_core.analysis.sweep import parse_int_list, plan_sweep, run_sweep, sweep_frame, sweep_summary


SPIN = "x = 0\nfor i in range(20_000_000):\n    x += i"


def spin_ratio() -> float:
    """Wall time of two spinning processes at once over one alone: 1.0 with two free cores, 2.0
    with one."""
    def wall(n: int) -> float:
        started = time.perf_counter()
        for p in [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]:
            p.wait()
        return time.perf_counter() - started

    return min(wall(2) for _ in range(2)) / min(wall(1) for _ in range(2))


def timed_sweep(jobs, workers: int):
    started = time.perf_counter()
    rows = list(run_sweep(jobs, workers=workers))
    return time.perf_counter() - started, sweep_frame(rows)


def trend(frame) -> list[str]:
    table = sweep_summary(frame)
    lines = []
    for family in ("plain", "resnet"):
        rows = table[table.family == family]
        cells = "  ".join(f"{d}: {f:5.1%}/{m:5.1%}" for d, f, m in
                          zip(rows.depth, rows.train_error_mean, rows.mean_train_error_mean))
        lines.append(f"  {family:7} {cells}")
    return lines


def compare_stacking(settings: Settings, depths, seeds, workers: int, repeat: int) -> None:
    plans = {"seed by seed": plan_sweep(settings, depths, seeds, stack=False),
             "stacked": plan_sweep(settings, depths, seeds, stack=True)}
    print(f"spirals sweep: {len(plans['seed by seed'])} runs of {settings.steps} steps on {workers} worker "
          f"process(es); stacked: {len(plans['stacked'])} jobs")
    times = {name: float("inf") for name in plans}
    frames = {}
    for _ in range(max(1, repeat)):  # alternated, so a burst of other load hits both alike
        for name, jobs in plans.items():
            seconds, frames[name] = timed_sweep(jobs, workers)
            times[name] = min(times[name], seconds)
            print(f"  {name:13}: {seconds:6.1f} s", flush=True)
    before, after = times["seed by seed"], times["stacked"]
    print(f"  fastest: seed by seed {before:.1f} s, stacked {after:.1f} s; ratio stacked / seed by seed: "
          f"{after / before:.2f}")
    a, b = (frames[n].drop(columns="wall_s") for n in plans)
    errors = ["train_error", "test_error", "mean_train_error"]
    diff = (a[errors] - b[errors]).abs().max().max()
    same_gaps = a[errors].isna().equals(b[errors].isna())
    print(f"  largest difference between the two sweeps' errors: {diff:.3g}"
          f"{'' if same_gaps else ' (and different diverged runs!)'}")
    for name, frame in frames.items():
        print(f"\n{name}, mean over seeds: final training error / averaged over the run")
        print("\n".join(trend(frame)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--depths", default="8,14,20,32,44,56")
    parser.add_argument("--repeat", type=int, default=1, help="take the fastest of this many sweeps per setting")
    parser.add_argument("--stacking", action="store_true", help="time run by run against each depth's runs side by side instead")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for --stacking")
    args = parser.parse_args()
    if args.stacking:
        compare_stacking(Settings(dataset="spirals", steps=args.steps), parse_int_list(args.depths, "--depths"),
                         parse_int_list(args.seeds, "--seeds"), args.workers, args.repeat)
        return
    jobs = plan_sweep(Settings(dataset="spirals", steps=args.steps), parse_int_list(args.depths, "--depths"),
                      parse_int_list(args.seeds, "--seeds"), stack=False)
    print(f"spirals sweep: {len(jobs)} runs of {args.steps} steps (depths {args.depths}, seeds {args.seeds})")
    before = spin_ratio()
    times: dict[int, float] = {1: float("inf"), 2: float("inf")}
    frame = None
    for _ in range(max(1, args.repeat)):  # interleaved, so a burst of other load hits both alike
        for workers in (1, 2):
            seconds, frame = timed_sweep(jobs, workers)
            times[workers] = min(times[workers], seconds)
            print(f"  {workers} worker process(es): {seconds:6.1f} s   (sum of the runs' own wall times "
                  f"{frame.wall_s.sum():.1f} s)", flush=True)
    print(f"  fastest: 1 worker {times[1]:.1f} s, 2 workers {times[2]:.1f} s; "
          f"ratio 2 workers / 1 worker: {times[2] / times[1]:.2f}   (goal <= 0.6)")
    after = spin_ratio()
    print(f"  control, two spinning processes / one: {before:.2f} before, {after:.2f} after "
          f"(1.0 = a second core was free, 2.0 = none was)")
    print("\nmean over seeds: final training error / averaged over the run")
    print("\n".join(trend(frame)))


if __name__ == "__main__":
    main()
