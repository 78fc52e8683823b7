"""Lockstep training spread over worker processes, one torch thread each.

Tiny layers are dispatch-bound: the cost is Python and kernel-launch overhead, so threads in one
process fight over the GIL while processes do not, and two processes with two intra-op threads
apiece oversubscribe two cores (5x slower, measured). Each worker therefore runs a
``LockstepTrainer`` over its share of the models with ``torch.set_num_threads(1)``; all workers
draw the same batches from the same seed, so the result is the same as one process's.

A worker is a fresh interpreter (``python -m resnet_core.training.worker``) speaking JSON lines
(``resnet_core.remote.transport``): nothing crossing a process boundary is ever unpickled. This is
the driving side and imports no torch: the dashboard's server drives workers without loading it.
``ParallelTrainer`` has the driving interface of ``LockstepTrainer`` (``train_step``, ``run``,
``set_lr``, ``set_steps``, ``step``, ``status``, ``record``, ``done``).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from resnet_core.remote.transport import JsonProcess, ProcessGone
from resnet_core.records import LayerSnapshot, RunRecord, run_finished
from resnet_core.settings import ModelSpec, Settings

# Trainer methods a parent may ask a worker to run; what they record is forwarded to the parent.
REMOTE_METHODS = ("decision_regions", "lesion_study", "path_analysis")


class WorkerError(RuntimeError):
    """A training step failed inside a worker, or the worker is gone: the one line to show, and
    whether it is the user's to fix (a setting, a file) or a fault of ours."""

    def __init__(self, message: str, user: bool = False):
        super().__init__(message)
        self.user = user


def replay_events(record: RunRecord, events: list[list[Any]]) -> None:
    for event in events:
        kind = event[0]
        if kind == "metrics":
            record.add_metrics(event[1])
        elif kind == "layers":
            _, model, step, g, a, r = event
            record.add_layers(model, LayerSnapshot(step, np.asarray(g, float), np.asarray(a, float), np.asarray(r, float)))
        elif kind == "paths":
            record.add_paths(event[1])
        elif kind == "rows":  # the analyses' step tables: signal, jacobian, lens
            record.add_rows(event[1], event[2])
        elif kind == "lesion":  # each worker reports its own models: replace those, keep the others'
            models = {row["model"] for row in event[1]}
            record.set_lesion([r for r in record.lesion_rows() if r["model"] not in models] + event[1])
        elif kind == "regions":
            record.set_regions(event[1], event[2], event[3])


class WorkerProcess(JsonProcess):
    """One long-lived training process (``python -m resnet_core.training.worker``); reusable for run
    after run (``init`` resets it)."""

    def __init__(self) -> None:
        super().__init__("resnet_core.training.worker")

    def post(self, **msg: Any) -> None:
        try:
            self.send(msg)
        except ProcessGone as exc:
            raise WorkerError("the training process has stopped") from exc

    def answer(self) -> dict[str, Any]:
        try:
            reply = self.receive()
        except ProcessGone as exc:
            raise WorkerError("the training process ended unexpectedly") from exc
        if not reply.get("ok"):
            raise WorkerError(reply.get("error", "unknown error"), user=bool(reply.get("user")))
        return reply

    def request(self, **msg: Any) -> dict[str, Any]:
        self.post(**msg)
        return self.answer()


RESIDUAL_COST = 1.25  # a residual layer costs more than a plain one: the add, the branch probe, the paths


def per_core(jobs: int) -> int:
    """Worker processes for ``jobs`` independent pieces of work on a CPU: one per core, at most one
    per piece (tiny layers are dispatch-bound: more processes than cores only take turns)."""
    return max(1, min(os.cpu_count() or 1, jobs))


def balance(specs: tuple[ModelSpec, ...], workers: int) -> list[tuple[str, ...]]:
    """Models to workers, costliest first onto the least-loaded worker (cost ~ depth)."""
    def cost(spec: ModelSpec) -> float:
        return spec.depth * (RESIDUAL_COST if spec.residual else 1.0)

    loads = [0.0] * workers
    groups: list[list[str]] = [[] for _ in range(workers)]
    for spec in sorted(specs, key=cost, reverse=True):
        i = loads.index(min(loads))
        groups[i].append(spec.name)
        loads[i] += cost(spec)
    return [tuple(g) for g in groups if g]


class ParallelTrainer:
    def __init__(self, settings: Settings, workers: int | list[WorkerProcess] = 2):
        self.settings = settings.checked()
        # Never more processes than models: an extra one would sit idle holding torch.
        count = min(len(workers) if isinstance(workers, list) else int(workers), len(self.settings.models))
        groups = balance(self.settings.model_specs, max(1, count))
        self.owns_workers = not isinstance(workers, list)
        self.workers = workers[:len(groups)] if isinstance(workers, list) else [WorkerProcess() for _ in groups]
        self.step, self.wall_s = 0, 0.0
        self.status: dict[str, str] = {}
        self.diverged_at: dict[str, int] = {}
        replies = self._all("init", [{"settings": self.settings.to_dict(), "only": list(g)} for g in groups])
        layer_names = {k: v for r in replies for k, v in r["layer_names"].items()}
        by_name = {m["name"]: m for r in replies for m in r["config"]["models"]}
        # Each worker describes its share; the run is every model, in the settings' order.
        config = {**replies[0]["config"], "models": [by_name[s.name] for s in self.settings.model_specs]}
        self.record = RunRecord(config, layer_names)
        self._absorb(replies)

    def _all(self, cmd: str, payloads: list[dict[str, Any]] | None = None, **msg: Any) -> list[dict[str, Any]]:
        for i, worker in enumerate(self.workers):
            worker.post(cmd=cmd, **msg, **(payloads[i] if payloads else {}))
        return [worker.answer() for worker in self.workers]

    def _absorb(self, replies: list[dict[str, Any]]) -> None:
        for reply in replies:
            replay_events(self.record, reply.get("events", []))
            self.status.update(reply.get("status", {}))
        self.step = max(r.get("step", 0) for r in replies)
        self.wall_s = max(r.get("wall_s", 0.0) for r in replies)
        for name, status in self.status.items():
            if status != "ok" and name not in self.diverged_at:
                self.diverged_at[name] = self.step

    @property
    def done(self) -> bool:
        return run_finished(self.step, self.settings.steps, self.status)

    def train_step(self, n: int = 1) -> None:
        self._absorb(self._all("step", n=n))

    def run(self, steps: int | None = None, on_step=None, chunk: int = 8) -> RunRecord:
        """Like LockstepTrainer.run; ``chunk`` steps per round trip, so workers wait on each other
        (and on the parent) eight times less often. ``on_step`` is called after each chunk."""
        target = self.settings.steps if steps is None else min(self.settings.steps, self.step + steps)
        while self.step < target and not self.done:
            self.train_step(min(chunk, target - self.step))
            if on_step is not None:
                on_step(self)
        return self.record

    def set_lr(self, lr: float) -> None:
        self.settings = self.settings.with_changes(lr=lr)
        self._absorb(self._all("set_lr", lr=lr))

    def set_steps(self, steps: int) -> None:
        self.settings = self.settings.with_changes(steps=steps)
        self._absorb(self._all("set_steps", steps=steps))

    def call(self, method: str, **kwargs: Any) -> None:
        self._absorb(self._all("call", method=method, kwargs=kwargs))

    def settle(self) -> None:
        """Nothing to wait for: every call returns once the workers have answered it."""

    def close(self) -> None:
        if self.owns_workers:
            for worker in self.workers:
                worker.close()

    def __enter__(self) -> "ParallelTrainer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
