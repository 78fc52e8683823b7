"""``sweep``: the degradation curve headless. Plain and residual nets over depths and seeds,
runs spread over worker processes, ``sweep.csv`` rewritten as each run finishes (so an
interrupted sweep keeps what it had)."""
from __future__ import annotations

import argparse
import sys
import time

from resnet_core.analysis.sweep import (deepest_run, parse_float_list, parse_int_list, plan_sweep, run_count, run_sweep, sweep_frame,
                                        sweep_summary)
from resnet_core.cli.output import SweepFile
from resnet_core.cli.parser import is_terminal, settings_from_args
from resnet_core.cli.workers import check_workers, default_workers
from resnet_core.remote.job_kinds import JobFailed
from resnet_core.training.headless import one_torch_thread
from resnet_core.training.lockstep import check_fits
from resnet_core.training.tensors import load_dataset


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    depths = parse_int_list(args.depths, "--depths")
    seeds = parse_int_list(args.seeds, "--seeds")
    families = tuple(f.strip() for f in args.families.split(",") if f.strip())
    lrs = parse_float_list(args.lrs, "--lrs") if args.lrs else None
    check_workers(args.workers)
    jobs = plan_sweep(settings, depths, seeds, families=families, lrs=lrs, cores=args.workers or None)
    out = SweepFile(args.out, args.overwrite)
    data = load_dataset(settings.dataset, settings.dataset_args)  # a bad data argument fails here, before any run
    check_fits(deepest_run(jobs), data)  # the deepest run: too big or too large a batch
    workers = args.workers or default_workers(settings, len(jobs), on_gpu=0)  # jobs, not runs: a stacked job is one process's
    if workers == 0:  # on a GPU: in this process
        one_torch_thread()
    progress = RunsProgress(run_count(jobs)) if is_terminal() else None
    started = time.perf_counter()
    rows = []
    try:
        for row in run_sweep(jobs, workers=workers, on_progress=progress.update if progress else None):
            rows.append(row)
            out.write(sweep_frame(rows))
    except JobFailed as exc:  # a run failed in its worker: keep what finished, say why in one line
        if progress:
            progress.close()
        print(f"error: the sweep stopped after {len(rows)} of {run_count(jobs)} runs: {exc}", file=sys.stderr)
        return 1
    if progress:
        progress.close()
    print(summary(rows, time.perf_counter() - started, workers))
    print(f"wrote {out.path}")
    return 0


def summary(rows: list[dict], seconds: float, workers: int) -> str:
    frame = sweep_frame(rows)
    table = sweep_summary(frame)
    by_lr = "lr" in table.columns
    lines = [f"{'family':8} {'depth':>5} {'lr':>8} {'final train err':>15} {'mean train err':>15} {'test err':>9}  seeds"
             if by_lr else f"{'family':8} {'depth':>5} {'final train err':>15} {'mean train err':>15} {'test err':>9}  seeds"]
    for r in table.itertuples():
        lr = f" {r.lr:>8g}" if by_lr else ""
        lines.append(f"{r.family:8} {r.depth:>5}{lr} {_pct(r.train_error_mean):>15} {_pct(r.mean_train_error_mean):>15} "
                     f"{_pct(r.test_error_mean):>9}  {r.seeds}")
    diverged = int(frame.train_error.isna().sum())
    if diverged:
        lines.append(f"{diverged} run(s) diverged: their errors are empty in sweep.csv")
    lines.append(f"{len(frame)} runs in {seconds:.1f} s with {workers or 'no'} worker process(es)")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "-" if value != value else f"{value:.1%}"


class RunsProgress:
    """One line on stderr: the share of all steps of all runs done so far."""

    def __init__(self, runs: int):
        self.runs, self.last = runs, 0.0

    def update(self, fraction: float) -> None:
        now = time.perf_counter()
        if now - self.last < 0.2 and fraction < 1:
            return
        self.last = now
        sys.stderr.write(f"\r[{'#' * int(fraction * 30):30}] {fraction:4.0%} of {self.runs} runs")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
