"""``train``: the headless run that writes a run folder."""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

from resnet_core.cli.output import RunFolder
from resnet_core.cli.parser import is_terminal, settings_from_args
from resnet_core.data import load_arrays
from resnet_core.records import RunRecord
from resnet_core.cli.workers import check_workers, default_workers
from resnet_core.records.exported_models import MODELS_DIR, write_model_py
from resnet_core.scheduling.parallel_trainer import ParallelTrainer, command_line_scheduler
from resnet_core.sizing import budget

def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    check_workers(args.workers)
    out = RunFolder(args.out, args.overwrite)
    started = time.perf_counter()
    # lesion.csv: each block deleted in turn from the trained nets
    record = train_headless(settings, args.workers, analyses=("lesion_study",), out=out,
                            save_models=args.save_models)
    print(summary(record, time.perf_counter() - started))
    print(f"wrote {out.target}/")
    return 0


def train_headless(settings, workers: int, analyses: tuple[str, ...] = (), out: RunFolder | None = None,
                   save_models: bool = False) -> RunRecord:
    """Check what the run needs, train it (a progress bar on a terminal), run the analyses that
    read the trained nets, and hand back the record. With ``out``, the tables stream into its
    partial folder as the run goes, and the folder is moved into place when the run is complete;
    nothing is written before every check has passed. ``save_models`` (with ``out``): the trained
    nets go to its ``models/`` (records/exported_models.py) before the analyses touch them.

    The models train in worker processes driven by a scheduler, as the dashboard's are (one kind
    of process, one protocol, one driver: ``resnet_core/scheduling``), this thread its one owner,
    and this process never imports torch: the workers are started first, so that their start-up
    (an interpreter, torch) overlaps the checks here, and they are ended if a check fails."""
    check_workers(workers)
    count = workers or default_workers(settings, len(settings.models), on_gpu=1)
    scheduler = command_line_scheduler(min(count, len(settings.models)))
    wait_s = 0.0  # a check failed or the run stopped: end the processes at once
    try:
        record = _train(settings, analyses, out, scheduler, save_models)
        wait_s = 2.0
        return record
    finally:
        scheduler.close(wait_s)


def _train(settings, analyses: tuple[str, ...], out: RunFolder | None, scheduler, save_models: bool = False) -> RunRecord:
    # The workers load the data themselves; here it is only checked, as numpy arrays (a bad file
    # fails here, before any write).
    budget.check_fits(settings, budget.shape_of(load_arrays(settings.dataset, settings.dataset_args)))
    with ParallelTrainer(settings, workers=scheduler) as trainer:
        record = trainer.record
        if out is not None:
            record.stream_to(out.start())
        try:
            progress = Progress(settings.steps) if is_terminal() else None
            trainer.run(on_step=progress.update if progress else None)
            if progress:
                progress.close()
            if save_models and out is not None:
                trainer.call("save_models", folder=str((out.partial / MODELS_DIR).resolve()))
                write_model_py(out.partial / MODELS_DIR)
            # The steps done, the analyses (compute-bound, unlike the steps) share every core.
            threads = max(1, (os.cpu_count() or 1) // len(trainer.shares))
            for analysis in analyses:
                trainer.call(analysis, threads=threads)
        except BaseException as exc:
            record.close_stream()
            if out is not None:
                out.abandon("interrupted" if isinstance(exc, KeyboardInterrupt) else "the run stopped")
            raise
        record.close_stream()
        if out is not None:
            out.commit()
        return record


def summary(record: RunRecord, seconds: float) -> str:
    """Each model's last evaluation, mean training error over the run, and status: read off the
    record's rows (a table library would cost the run 0.2-0.3 s to import, for six numbers)."""
    by_model: dict[str, list[dict]] = {}
    for row in record.metric_rows():
        by_model.setdefault(row["model"], []).append(row)
    lines = [f"{'model':18} {'final train err':>15} {'test err':>9} {'mean train err':>15}  status"]
    for model, rows in by_model.items():
        ok = [r for r in rows if r["status"] == "ok"]
        diverged = [r["step"] for r in rows if r["status"] == "diverged"]
        status = f"diverged at step {diverged[0]}" if diverged else "ok"
        if not ok:
            lines.append(f"{model:18} {'-':>15} {'-':>9} {'-':>15}  {status}")
            continue
        seen = [r["train_error"] for r in ok if not math.isnan(r["train_error"])]  # a gap where an evaluation overflowed
        mean = math.fsum(seen) / len(seen) if seen else math.nan
        last = ok[-1]
        lines.append(f"{model:18} {last['train_error']:>15.1%} {last['test_error']:>9.1%} {mean:>15.1%}  {status}")
    lines.append(f"{record.latest_step()} steps in {seconds:.1f} s")
    return "\n".join(lines)


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int):
        self.total, self.last = total, 0.0

    def update(self, trainer) -> None:
        now = time.perf_counter()
        if now - self.last < 0.1 and trainer.step < self.total:
            return
        self.last = now
        done = trainer.step / max(self.total, 1)
        bar = "#" * int(done * 30)
        sys.stderr.write(f"\r[{bar:30}] {trainer.step}/{self.total} steps")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
