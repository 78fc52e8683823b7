"""One job of a depth sweep, in a worker process: one run and its row of sweep.csv, or a sweep
point's runs (its families and seeds at one depth) trained side by side as members of shared stacks
(``training.member_stacks``, as a worker trains a class's runs of one shape) and their rows."""
from __future__ import annotations

import json
import time
from typing import Any, Callable

import pandas as pd
import torch

from resnet_core.analysis.sweep import PROGRESS_EVERY
from resnet_core.settings import Settings
from resnet_core.sizing import budget
from resnet_core.training.lockstep import LockstepTrainer, make_optimizer
from resnet_core.training.member_stacks import MemberStacks
from resnet_core.training.tensors import Dataset, load_dataset

Report = Callable[[dict[str, Any] | None], None]

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


def train_one(job: dict[str, Any], report: Report = lambda _: None) -> dict[str, Any]:
    """Train one model of a sweep; its row of sweep.csv. A job with ``runs`` (a list of such jobs)
    trains them side by side (``train_together``) and answers ``{"rows": [one row per run]}``."""
    if "runs" in job:
        return train_together(job["runs"], report)
    _warm_up()
    started = time.perf_counter()
    settings = Settings.from_dict(job["settings"])
    trainer = LockstepTrainer(settings, data=_data(settings))  # a row needs the error curves alone

    def progress(t: LockstepTrainer) -> None:  # a report every PROGRESS_EVERY steps, a place to pause at each
        report({"step": t.step, "steps": settings.steps} if t.step % PROGRESS_EVERY == 0 else None)

    trainer.run(on_step=progress)
    return sweep_row(job["family"], job["depth"], job["seed"], trainer.record.metric_rows(),
                     time.perf_counter() - started, settings.lr)


def fits_together(runs: list[Settings], data: Dataset) -> bool:
    """Whether these runs fit one run's memory budget together (a worker limits itself to about one
    run's). A run that does not fit alone raises, as it would alone."""
    return sum(budget.check_fits(s.checked(), budget.shape_of(data)).total for s in runs) <= budget.run_memory_budget()


def train_together(runs: list[dict[str, Any]], report: Report = lambda _: None) -> dict[str, Any]:
    """Runs of one sweep point trained side by side: one ``LockstepTrainer`` each, their passes in
    shared stacks (``MemberStacks``: those of one shape in one stack; a net a stack does not hold
    trains its own passes), each its own batches, optimizer step and divergence, so each row is what
    its own run gives. ``wall_s`` of each row is the group's wall time: the runs trained together,
    so none has a time of its own. Runs that would not fit one run's memory together train one
    after another, in this job."""
    _warm_up()
    settings = [Settings.from_dict(run["settings"]) for run in runs]
    if not fits_together(settings, _data(settings[0])):
        total = sum(s.steps for s in settings)
        rows, done = [], 0
        for run, s in zip(runs, settings):  # progress over the whole job, run after run
            def one_report(p: dict[str, Any] | None = None, done: int = done) -> None:
                report(None if p is None else {"step": done + p["step"], "steps": total})
            rows.append(train_one(run, one_report))
            done += s.steps
        return {"rows": rows}
    started = time.perf_counter()
    trainers = []
    for s in settings:
        trainers.append(LockstepTrainer(s, data=_data(s)))
        report(None)  # a place to pause: building a dozen outlasts a slice too
    stacks = MemberStacks()
    total, tick = sum(s.steps for s in settings), 0
    while not all(t.done for t in trainers):
        stacks.prepare(trainers)
        for t in trainers:
            if not t.done:
                t.train_step()
                report(None)  # a place to pause: a dozen members' steps outlast a worker's time slice
        tick += 1
        if tick % PROGRESS_EVERY == 0:
            report({"step": sum(t.step for t in trainers), "steps": total})
    wall_s = time.perf_counter() - started
    return {"rows": [sweep_row(run["family"], run["depth"], run["seed"], t.record.metric_rows(), wall_s, s.lr)
                     for run, s, t in zip(runs, settings, trainers)]}
