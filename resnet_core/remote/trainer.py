"""Lockstep training spread over worker processes, one torch thread each.

Tiny layers are dispatch-bound: the cost is Python and kernel-launch overhead, so threads in one
process fight over the GIL while processes do not, and two processes with two intra-op threads
apiece oversubscribe two cores (5x slower, measured). Each worker therefore runs a
``LockstepTrainer`` over its share of the models with ``torch.set_num_threads(1)``; all workers
draw the same batches from the same seed, so the result is the same as one process's.

A worker is a fresh interpreter (``python -m resnet_core.remote.trainer``) speaking JSON lines
(``resnet_core.remote.transport``): nothing crossing a process boundary is ever unpickled. Only the
workers import torch: the dashboard's server drives them without loading it.
``ParallelTrainer`` has the driving interface of ``LockstepTrainer`` (``train_step``, ``run``,
``set_lr``, ``set_steps``, ``step``, ``status``, ``record``, ``done``).
"""
from __future__ import annotations

import contextlib
import os
import traceback
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from resnet_core.remote.transport import JsonProcess, ProcessGone, serve
from resnet_core.records import LayerSnapshot, RunRecord
from resnet_core.settings import ModelSpec, Settings
from resnet_core.training.budget import out_of_memory, out_of_memory_message

if TYPE_CHECKING:
    from resnet_core.data import Dataset
    from resnet_core.training.lockstep import LockstepTrainer

# Trainer methods a parent may ask a worker to run; what they record is forwarded to the parent.
REMOTE_METHODS = ("decision_regions", "lesion_study", "path_analysis")


class WorkerError(RuntimeError):
    """A training step failed inside a worker; the message is the worker's exception."""


class ForwardingRecord(RunRecord):
    """A worker's record: it keeps nothing, it queues what was recorded for the parent."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[list[Any]] = []

    def add_metrics(self, rows) -> None:
        self.events.append(["metrics", list(rows)])

    def add_layers(self, model: str, s: LayerSnapshot) -> None:
        self.events.append(["layers", model, s.step, s.grad_norm.tolist(), s.act_std.tolist(), s.branch_ratio.tolist()])

    def add_paths(self, rows) -> None:
        self.events.append(["paths", list(rows)])

    def set_lesion(self, rows) -> None:
        self.events.append(["lesion", list(rows)])

    def set_regions(self, model: str, step: int, grid: dict) -> None:
        self.events.append(["regions", model, step, grid])

    def drain(self) -> list[list[Any]]:
        events, self.events = self.events, []
        return events


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
        elif kind == "lesion":  # each worker reports its own models: replace those, keep the others'
            models = {row["model"] for row in event[1]}
            record.set_lesion([r for r in record.lesion_rows() if r["model"] not in models] + event[1])
        elif kind == "regions":
            record.set_regions(event[1], event[2], event[3])


class _Worker:
    """A training process's side: a trainer built on ``init``, stepped on request, and every reply
    carrying what it recorded since the last one."""

    def __init__(self) -> None:
        self.trainer: LockstepTrainer | None = None
        self.record = ForwardingRecord()

    def __call__(self, msg: dict[str, Any], send) -> None:
        try:
            send({"ok": True, **self._handle(msg)})
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which shows it
            if out_of_memory(exc):
                detail = out_of_memory_message()
            else:
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            send({"ok": False, "error": detail})

    def _handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        cmd, trainer, reply = msg["cmd"], self.trainer, {}
        if cmd == "init":
            from resnet_core.training.lockstep import LockstepTrainer

            self.record = ForwardingRecord()
            trainer = self.trainer = LockstepTrainer(Settings.from_dict(msg["settings"]), record=self.record,
                                                     only=tuple(msg["only"]))
            reply = {"layer_names": self.record.layer_names, "config": self.record.config}
        elif cmd == "step":
            for _ in range(msg.get("n", 1)):
                if trainer.done:
                    break
                trainer.train_step()
        elif cmd == "set_lr":
            trainer.set_lr(msg["lr"])
        elif cmd == "set_steps":
            trainer.set_steps(msg["steps"])
        elif cmd == "call" and msg["method"] in REMOTE_METHODS:
            getattr(trainer, msg["method"])(**msg.get("kwargs", {}))
        else:
            raise ValueError(f"unknown command {cmd!r}")
        state = {"step": trainer.step, "status": trainer.status, "wall_s": trainer.wall_s} if trainer else {}
        return {"events": self.record.drain(), **state, **reply}


class WorkerProcess(JsonProcess):
    """One long-lived training process (``python -m resnet_core.remote.trainer``); reusable for run after
    run (``init`` resets it)."""

    def __init__(self) -> None:
        super().__init__("resnet_core.remote.trainer")

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
            raise WorkerError(reply.get("error", "unknown error"))
        return reply

    def request(self, **msg: Any) -> dict[str, Any]:
        self.post(**msg)
        return self.answer()


RESIDUAL_COST = 1.25  # a residual layer costs more than a plain one: the add, the branch probe, the paths


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
        return self.step >= self.settings.steps or not any(s == "ok" for s in self.status.values())

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

    def close(self) -> None:
        if self.owns_workers:
            for worker in self.workers:
                worker.close()

    def __enter__(self) -> "ParallelTrainer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_workers(settings: Settings) -> int:
    from resnet_core.training.lockstep import resolve_device

    if resolve_device(settings.device).type == "cuda":
        return 1
    return max(1, min(os.cpu_count() or 1, len(settings.models)))


@contextlib.contextmanager
def make_trainer(settings: Settings, data: Dataset | None = None, workers: int = 0) -> Iterator[Any]:
    """One process when that is all there is to use (a GPU, one core, one model), else several."""
    n = workers or default_workers(settings)
    if n <= 1:
        from resnet_core.training.lockstep import LockstepTrainer

        yield LockstepTrainer(settings, data=data)
        return
    trainer = ParallelTrainer(settings, workers=n)  # each worker loads the data itself
    try:
        yield trainer
    finally:
        trainer.close()


if __name__ == "__main__":
    serve(_Worker())
