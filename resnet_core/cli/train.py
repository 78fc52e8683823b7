"""``train``: the headless run that writes a run folder."""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from typing import TYPE_CHECKING

from resnet_core.cli.output import RunFolder
from resnet_core.cli.parser import is_terminal, settings_from_args
from resnet_core.data import load_arrays
from resnet_core.records import RunRecord
from resnet_core.records.exported_models import MODELS_DIR, write_model_py
from resnet_core.remote.trainer import ParallelTrainer, WorkerProcess, per_core
from resnet_core.settings import Settings, SettingsError
from resnet_core.sizing import budget

if TYPE_CHECKING:
    from resnet_core.training.second_core import SecondCore

SECOND_CORE_DEPTH = 50  # measured: resnet-56 3.3 -> 2.8 s, resnet-110 4.9 -> 4.0 s; at 8-32 layers no difference
# Device files that a CUDA (or ROCm) GPU needs; without any of them torch cannot see one.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def check_workers(workers: int) -> int:
    """--workers: 0 picks one per core (at most one per model); more processes than cores only take
    turns on them, and each holds a copy of torch and the data."""
    cores = os.cpu_count() or 1
    if not 0 <= workers <= cores:
        raise SettingsError(f"--workers must be from 0 (automatic) to {cores}, this machine's cores (got {workers})")
    return workers


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

    On a CPU the models train in worker processes and this process never imports torch: the
    workers are started first, so that their start-up (an interpreter, torch) overlaps the
    checks here, and they are ended if a check fails."""
    check_workers(workers)
    count = workers or default_workers(settings)
    pool, helper = None, None
    if count > 1:
        pool = [WorkerProcess() for _ in range(min(count, len(settings.models)))]
    elif workers == 0 and second_core_pays(settings):
        # A one-model run on a CPU with a core to spare: its analyses go to a second process
        # (training/second_core.py), started now so that its start overlaps this one's.
        process = WorkerProcess()  # before this process imports torch: the two imports overlap
        from resnet_core.training.second_core import SecondCore

        helper = SecondCore(settings, process)
    wait_s = 0.0  # a check failed or the run stopped: end the other processes at once
    try:
        record = _train(settings, analyses, out, pool, helper, save_models)
        wait_s = 2.0
        return record
    finally:
        for other in pool or ([helper] if helper else []):
            other.close(wait_s)


def default_workers(settings: Settings) -> int:
    """One process per core, at most one per model, on a CPU; one (this process) on a GPU. Torch is
    only imported to ask about the GPU where there could be one."""
    if settings.device == "cpu" or (settings.device == "auto" and not gpu_possible()):
        return per_core(len(settings.models))
    from resnet_core.training.headless import default_workers as by_device

    return by_device(settings)


def second_core_pays(settings: Settings) -> bool:
    """Whether a one-model run gains from a second process for its analyses: a CPU run with a core
    to spare, where the analyses cost more than starting an interpreter with torch (about a second
    of the spare core), which they do from about SECOND_CORE_DEPTH layers (default steps).
    RESIDUAL_LAB_SECOND_CORE=0 turns it off (a machine whose other core is someone else's), =1 on
    at any depth."""
    on_cpu = settings.device == "cpu" or (settings.device == "auto" and not gpu_possible())
    if not (on_cpu and (os.cpu_count() or 1) >= 2 and len(settings.models) == 1):
        return False
    asked = os.environ.get("RESIDUAL_LAB_SECOND_CORE", "")  # "0": never, "1": at any depth
    return asked == "1" or (asked != "0" and settings.model_specs[0].depth >= SECOND_CORE_DEPTH)


def gpu_possible() -> bool:
    return os.name != "posix" or any(os.path.exists(p) for p in GPU_DEVICE_FILES)


def _train(settings, analyses: tuple[str, ...], out: RunFolder | None, pool: list | None,
           helper: SecondCore | None = None, save_models: bool = False) -> RunRecord:
    if pool is None:  # one process: this one trains, with torch
        from resnet_core.training.headless import every_core, one_torch_thread
        from resnet_core.training.lockstep import LockstepTrainer, check_fits
        from resnet_core.training.tensors import load_dataset

        data = load_dataset(settings.dataset, settings.dataset_args)  # a bad file fails here, before any write
        check_fits(settings, data)
        one_torch_thread()
        trainer_in = LockstepTrainer(settings, data=data, analyst=helper)
        # the steps done, the compute-bound analyses take both cores: shared with the helper, or all here
        analysing = contextlib.nullcontext if helper else every_core
    else:  # the workers load the data themselves; here it is only checked, as numpy arrays
        budget.check_fits(settings, budget.shape_of(load_arrays(settings.dataset, settings.dataset_args)))
        trainer_in = ParallelTrainer(settings, workers=pool)
        analysing = contextlib.nullcontext  # the analyses run in the workers, one thread each
    with trainer_in as trainer:
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
            with analysing():
                for analysis in analyses:
                    trainer.call(analysis)
                trainer.settle()
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
