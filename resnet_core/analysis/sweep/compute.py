"""One run of a depth sweep, in a worker process: the model trained and its row of sweep.csv."""
from __future__ import annotations

import json
import time
from typing import Any, Callable

import torch

from resnet_core.analysis.sweep import PROGRESS_EVERY
from resnet_core.remote.trainer import per_core
from resnet_core.settings import Settings
from resnet_core.training.lockstep import LockstepTrainer, make_optimizer, resolve_device
from resnet_core.training.tensors import Dataset, load_dataset


class SweepTrainer(LockstepTrainer):
    def decision_regions(self, resolution: int = 0) -> None:
        """A sweep draws no decision maps: each would cost about one evaluation."""


_DATA_CACHE: dict[str, Any] = {}  # per process: a worker loads each data set once


def _data(settings: Settings) -> Dataset:
    key = json.dumps([settings.dataset, dict(settings.dataset_args)], sort_keys=True)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(settings.dataset, settings.dataset_args)
    return _DATA_CACHE[key]


def _warm_up() -> None:
    """The first step of a process pays torch's lazy start (its first kernels, autograd): pay that
    before a run's clock starts, so that wall_s compares runs and not their places in the queue."""
    w = torch.zeros(1, requires_grad=True)
    (w * 2).sum().backward()
    make_optimizer(Settings(), [w]).step()


def train_one(job: dict[str, Any], report: Callable[[dict[str, Any]], None] = lambda _: None) -> dict[str, Any]:
    """Train one model of a sweep; its row of sweep.csv. A diverged run has empty errors."""
    _warm_up()
    started = time.perf_counter()
    settings = Settings.from_dict(job["settings"])
    trainer = SweepTrainer(settings, data=_data(settings))

    def progress(t: LockstepTrainer) -> None:
        if t.step % PROGRESS_EVERY == 0:
            report({"step": t.step, "steps": settings.steps})

    trainer.run(on_step=progress)
    metrics = trainer.record.metrics_frame()
    ok = metrics[metrics.status == "ok"]
    diverged = (metrics.status != "ok").any()
    last = ok.iloc[-1] if len(ok) and not diverged else None
    return {"family": job["family"], "depth": job["depth"], "seed": job["seed"],
            "train_error": None if last is None else float(last.train_error),
            "test_error": None if last is None else float(last.test_error),
            "mean_train_error": None if diverged else float(ok.train_error.mean()),
            "wall_s": round(time.perf_counter() - started, 3)}


def default_workers(settings: Settings, runs: int) -> int:
    """One process per core (at most one per run); on a GPU, this process (0)."""
    if resolve_device(settings.device).type == "cuda":
        return 0
    return per_core(runs)


# ---------------------------------------------------------------------------- the sweep
