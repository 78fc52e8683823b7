"""One job of a depth sweep, in a worker process: one run and its row of sweep.csv, or a sweep
point's seeds trained stacked (``training.stacked``) and their rows."""
from __future__ import annotations

import json
import time
from typing import Any, Callable

import pandas as pd
import torch

from resnet_core.analysis.sweep import PROGRESS_EVERY
from resnet_core.settings import Settings
from resnet_core.training.lockstep import LockstepTrainer, make_optimizer
from resnet_core.training.stacked import StackedTrainer, can_stack, group_fits
from resnet_core.training.tensors import Dataset, load_dataset


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


def sweep_row(family: str, depth: int, seed: int, metrics: list[dict[str, Any]], wall_s: float,
              lr: float | None = None) -> dict[str, Any]:
    """A run's row of sweep.csv from its rows of metrics.csv. A diverged run has empty errors."""
    ok = [m for m in metrics if m["status"] == "ok"]
    diverged = len(ok) < len(metrics)
    last = ok[-1] if ok and not diverged else None
    errors = pd.Series([m["train_error"] for m in ok], dtype="float64")  # NaN (an overflowed evaluation) skipped
    return {"family": family, "depth": depth, "seed": seed,
            "train_error": None if last is None else float(last["train_error"]),
            "test_error": None if last is None else float(last["test_error"]),
            "mean_train_error": None if diverged else float(errors.mean()),
            "wall_s": round(wall_s, 3), "lr": lr}


def train_one(job: dict[str, Any], report: Callable[[dict[str, Any] | None], None] = lambda _: None) -> dict[str, Any]:
    """Train one model of a sweep; its row of sweep.csv. A job with ``seeds`` instead of ``seed``
    trains them stacked (``train_stacked``) and answers ``{"rows": [one row per seed]}``."""
    if "seeds" in job:
        return train_stacked(job, report)
    _warm_up()
    started = time.perf_counter()
    settings = Settings.from_dict(job["settings"])
    trainer = LockstepTrainer(settings, data=_data(settings))  # a row needs the error curves alone

    def progress(t: LockstepTrainer) -> None:  # a report every PROGRESS_EVERY steps, a place to pause at each
        report({"step": t.step, "steps": settings.steps} if t.step % PROGRESS_EVERY == 0 else None)

    trainer.run(on_step=progress)
    return sweep_row(job["family"], job["depth"], job["seed"], trainer.record.metric_rows(),
                     time.perf_counter() - started, settings.lr)


def train_stacked(job: dict[str, Any], report: Callable[[dict[str, Any] | None], None] = lambda _: None) -> dict[str, Any]:
    """The seeds of one (family, depth) trained as one (``training.stacked.StackedTrainer``), each
    seed's row as its own run would give it. ``wall_s`` of each row is the group's wall time: the
    seeds trained together, so none has a time of its own (the sum over a sweep's rows counts a
    group once per seed). A net that cannot be stacked, or seeds that would not fit one run's
    memory together, are trained seed by seed, in this job."""
    _warm_up()
    started = time.perf_counter()
    settings = Settings.from_dict(job["settings"])
    seeds = [int(s) for s in job["seeds"]]
    if not can_stack(settings) or not group_fits(settings, _data(settings), len(seeds)):
        rows = []
        for k, seed in enumerate(seeds):  # progress over the whole job, seed after seed
            def seed_report(p: dict[str, Any] | None = None, k: int = k) -> None:
                report(None if p is None else {"step": k * p["steps"] + p["step"], "steps": len(seeds) * p["steps"]})
            rows.append(train_one({"family": job["family"], "depth": job["depth"], "seed": seed,
                                   "settings": settings.with_changes(seed=seed).to_dict()}, seed_report))
        return {"rows": rows}
    trainer = StackedTrainer(settings, seeds, data=_data(settings))

    def progress(t: StackedTrainer) -> None:
        report({"step": t.step, "steps": settings.steps} if t.step % PROGRESS_EVERY == 0 else None)

    trainer.run(on_step=progress)
    wall_s = time.perf_counter() - started
    return {"rows": [sweep_row(job["family"], job["depth"], seed, metrics, wall_s, settings.lr)
                     for seed, metrics in zip(seeds, trainer.metrics)]}
