"""Lockstep training spread over worker processes, one torch thread each.

Tiny layers are dispatch-bound: the cost is Python and kernel-launch overhead, so threads in one
process fight over the GIL while processes do not, and two processes with two intra-op threads
apiece oversubscribe two cores (5x slower, measured). Each worker therefore runs a
``LockstepTrainer`` over its share of the models with ``torch.set_num_threads(1)``; all workers
draw the same batches from the same seed, so the result is the same as one process's.

Messages are JSON (``send_bytes``): nothing crossing a process boundary is ever unpickled. Only
the workers import torch: the dashboard's server drives them without loading it.
``ParallelTrainer`` has the driving interface of ``LockstepTrainer`` (``train_step``, ``run``,
``set_lr``, ``set_steps``, ``step``, ``status``, ``record``, ``done``).
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import sys
import threading
import traceback
import types
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from .records import LayerSnapshot, RunRecord
from .settings import ModelSpec, Settings

if TYPE_CHECKING:
    from .data import Dataset
    from .lockstep import LockstepTrainer

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


def _worker_main(conn) -> None:
    """A worker's loop: build a trainer on ``init``, then step it on request, until ``close``."""
    import torch

    from .lockstep import LockstepTrainer

    torch.set_num_threads(1)
    trainer: LockstepTrainer | None = None
    record = ForwardingRecord()
    while True:
        try:
            msg = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        cmd = msg["cmd"]
        try:
            if cmd == "close":
                conn.send_bytes(b'{"ok": true}')
                return
            if cmd == "init":
                record = ForwardingRecord()
                trainer = LockstepTrainer(Settings.from_dict(msg["settings"]), record=record, only=tuple(msg["only"]))
                reply = {"layer_names": record.layer_names, "config": record.config}
            elif cmd == "step":
                for _ in range(msg.get("n", 1)):
                    if trainer.done:
                        break
                    trainer.train_step()
                reply = {}
            elif cmd == "set_lr":
                trainer.set_lr(msg["lr"])
                reply = {}
            elif cmd == "set_steps":
                trainer.set_steps(msg["steps"])
                reply = {}
            elif cmd == "call" and msg["method"] in REMOTE_METHODS:
                getattr(trainer, msg["method"])(**msg.get("kwargs", {}))
                reply = {}
            else:
                raise ValueError(f"unknown command {cmd!r}")
            state = {"step": trainer.step, "status": trainer.status, "wall_s": trainer.wall_s} if trainer else {}
            conn.send_bytes(json.dumps({"ok": True, "events": record.drain(), **state, **reply}).encode())
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which shows it
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            conn.send_bytes(json.dumps({"ok": False, "error": detail}).encode())


_START_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """Spawn re-imports the parent's ``__main__`` in the child, to find functions defined there.
    Ours live in ``resnet_core``, and the parent's main is Streamlit's bootstrap, a test runner or
    an AppTest script, none of which may run again (an AppTest script re-run killed the worker):
    hide it while the child starts."""
    main = sys.modules.get("__main__")
    bare = sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if sys.modules.get("__main__") is bare:  # unless a script run installed its own meanwhile
            sys.modules["__main__"] = main


class WorkerProcess:
    """One long-lived training process; reusable for run after run (``init`` resets it)."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that may hold threads and torch state
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child,), daemon=True, name="residual-lab-worker")
        with _START_LOCK, _without_main():
            self.process.start()
        child.close()
        self.broken = False  # its pipe failed: the process is gone, or about to be

    def request(self, **msg: Any) -> dict[str, Any]:
        self.send(**msg)
        return self.receive()

    def send(self, **msg: Any) -> None:
        try:
            self.conn.send_bytes(json.dumps(msg).encode())
        except (OSError, ValueError) as exc:
            self.broken = True
            raise WorkerError("the training process has stopped") from exc

    def receive(self) -> dict[str, Any]:
        try:
            reply = json.loads(self.conn.recv_bytes())
        except (EOFError, OSError) as exc:
            self.broken = True
            raise WorkerError("the training process ended unexpectedly") from exc
        if not reply.get("ok"):
            raise WorkerError(reply.get("error", "unknown error"))
        return reply

    @property
    def alive(self) -> bool:
        # A killed process closes its pipe a moment before the OS reports it dead: trust the pipe.
        return not self.broken and self.process.is_alive()

    def close(self) -> None:
        with contextlib.suppress(WorkerError, OSError):
            if self.alive:
                self.request(cmd="close")
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=2)
        self.conn.close()


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
        pool = workers if isinstance(workers, list) else [WorkerProcess() for _ in range(workers)]
        self.owns_workers = not isinstance(workers, list)
        groups = balance(self.settings.model_specs, len(pool))
        self.workers = pool[:len(groups)]
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
            worker.send(cmd=cmd, **msg, **(payloads[i] if payloads else {}))
        return [worker.receive() for worker in self.workers]

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
    from .lockstep import resolve_device

    if resolve_device(settings.device).type == "cuda":
        return 1
    return max(1, min(os.cpu_count() or 1, len(settings.models)))


@contextlib.contextmanager
def make_trainer(settings: Settings, data: Dataset | None = None, workers: int = 0) -> Iterator[Any]:
    """One process when that is all there is to use (a GPU, one core, one model), else several."""
    n = workers or default_workers(settings)
    if n <= 1:
        from .lockstep import LockstepTrainer

        yield LockstepTrainer(settings, data=data)
        return
    trainer = ParallelTrainer(settings, workers=n)  # each worker loads the data itself
    try:
        yield trainer
    finally:
        trainer.close()
