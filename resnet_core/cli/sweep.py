"""``sweep``: the degradation curve headless. Plain and residual nets over depths and seeds,
runs spread over worker processes, ``sweep.csv`` rewritten as each run finishes (so an
interrupted sweep keeps what it had)."""
from __future__ import annotations

import argparse
import sys
import time

from resnet_core.cli import add_settings_flags, is_terminal, settings_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="train plain and residual nets over depths and seeds; write sweep.csv")
    add_settings_flags(p)
    p.add_argument("--depths", default="8,14,20,32,44,56",
                   help="comma-separated depths (default 8,14,20,32,44,56); with --families they replace --models")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2); they replace --seed")
    p.add_argument("--families", default="plain,resnet", help="plain, resnet or both (default)")
    p.add_argument("--workers", type=int, default=0,
                   help="worker processes, one run each at a time (default: one per core)")
    p.add_argument("--out", required=True, help="folder to write sweep.csv into")
    p.add_argument("--overwrite", action="store_true", help="replace a sweep.csv already in --out")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from resnet_core.data import load_dataset
    from resnet_core.remote.jobs import JobError
    from resnet_core.training.lockstep import check_fits
    from resnet_core.settings import Settings
    from resnet_core.analysis.sweep import default_workers, parse_int_list, plan_sweep, run_sweep, sweep_frame
    from resnet_core.cli.output import SweepFile
    from resnet_core.cli.train import check_workers

    settings = settings_from_args(args)
    depths = parse_int_list(args.depths, "--depths")
    seeds = parse_int_list(args.seeds, "--seeds")
    families = tuple(f.strip() for f in args.families.split(",") if f.strip())
    jobs = plan_sweep(settings, depths, seeds, families=families)
    out = SweepFile(args.out, args.overwrite)
    check_workers(args.workers)
    data = load_dataset(settings.dataset, settings.dataset_args)  # a bad data argument fails here, before any run
    check_fits(Settings.from_dict(jobs[0]["settings"]), data)  # the deepest run: too big or too large a batch
    workers = args.workers or default_workers(settings, len(jobs))
    if workers == 0:  # on a GPU: in this process
        import torch

        torch.set_num_threads(1)
    progress = RunsProgress(len(jobs)) if is_terminal() else None
    started = time.perf_counter()
    rows = []
    try:
        for row in run_sweep(jobs, workers=workers, on_progress=progress.update if progress else None):
            rows.append(row)
            out.write(sweep_frame(rows))
    except JobError as exc:  # a run failed in its worker: keep what finished, say why in one line
        if progress:
            progress.close()
        print(f"error: the sweep stopped after {len(rows)} of {len(jobs)} runs: {exc}", file=sys.stderr)
        return 1
    if progress:
        progress.close()
    print(summary(rows, time.perf_counter() - started, workers))
    print(f"wrote {out.path}")
    return 0


def summary(rows: list[dict], seconds: float, workers: int) -> str:
    from resnet_core.analysis.sweep import sweep_frame, sweep_summary

    frame = sweep_frame(rows)
    table = sweep_summary(frame)
    lines = [f"{'family':8} {'depth':>5} {'final train err':>15} {'mean train err':>15} {'test err':>9}  seeds"]
    for r in table.itertuples():
        lines.append(f"{r.family:8} {r.depth:>5} {_pct(r.train_error_mean):>15} {_pct(r.mean_train_error_mean):>15} "
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
