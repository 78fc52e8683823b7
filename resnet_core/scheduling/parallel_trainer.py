"""Lockstep training spread over worker processes, one torch thread each, through a scheduler.

Tiny layers are dispatch-bound: the cost is Python and kernel-launch overhead, so threads in one
process fight over the GIL while processes do not, and two processes with two intra-op threads
apiece oversubscribe two cores (5x slower, measured). Each worker therefore runs a
``LockstepTrainer`` over its share of the models with ``torch.set_num_threads(1)``; all workers
draw the same batches from the same seed, so the result is the same as one process's.

The processes are a ``Scheduler``'s (the one driver of worker processes, the server's too), each
share a ``RoundTrip`` task of the calling thread, its one owner: every command goes to all of them
at once and their answers are replayed into one record in the settings' order. This is the
driving side and imports no torch. ``ParallelTrainer`` has the driving interface of
``LockstepTrainer`` (``train_step``, ``run``, ``set_lr``, ``set_steps``, ``step``, ``status``,
``record``, ``done``).
"""
from __future__ import annotations

from typing import Any

from resnet_core.records import RunRecord, run_finished
from resnet_core.records.events import replay_events
from resnet_core.scheduling.policy import COMMAND_LINE
from resnet_core.scheduling.round_trip import RoundTrip
from resnet_core.scheduling.scheduler import Scheduler
from resnet_core.settings import ModelSpec, Settings

OWNER = "command-line"  # the calling thread: the one owner of the trainer's tasks
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


def command_line_scheduler(processes: int) -> Scheduler:
    """``processes`` worker processes, started at once, for one command's work."""
    return Scheduler(size=max(1, processes), warm=False, policy=COMMAND_LINE)


class ParallelTrainer:
    def __init__(self, settings: Settings, workers: int | Scheduler = 2):
        """``workers``: how many processes (a scheduler of its own, closed with the trainer), or a
        scheduler whose processes it uses (at most one per model)."""
        self.settings = settings.checked()
        own = not isinstance(workers, Scheduler)
        # Never more processes than models: an extra one would sit idle holding torch.
        count = min(int(workers) if own else workers.size, len(self.settings.models))
        groups = balance(self.settings.model_specs, max(1, count))
        self.scheduler = command_line_scheduler(len(groups)) if own else workers
        self.owns_scheduler = own
        self.shares = [RoundTrip(OWNER) for _ in groups]
        try:
            for share in self.shares:
                self.scheduler.add(share)
            self.step, self.wall_s = 0, 0.0
            self.status: dict[str, str] = {}
            self.diverged_at: dict[str, int] = {}
            replies = self._all("init", [{"settings": self.settings.to_dict(), "only": list(g)} for g in groups])
        except BaseException:
            self.close(wait_s=0.0)
            raise
        layer_names = {k: v for r in replies for k, v in r["layer_names"].items()}
        by_name = {m["name"]: m for r in replies for m in r["config"]["models"]}
        # Each worker describes its share; the run is every model, in the settings' order.
        config = {**replies[0]["config"], "models": [by_name[s.name] for s in self.settings.model_specs]}
        self.record = RunRecord(config, layer_names)
        self._absorb(replies)

    def pids(self) -> list[int]:
        return [share.host.pid for share in self.shares if share.host is not None and share.host.pid is not None]

    def _all(self, cmd: str, payloads: list[dict[str, Any]] | None = None, **msg: Any) -> list[dict[str, Any]]:
        for i, share in enumerate(self.shares):
            share.send(cmd, **msg, **(payloads[i] if payloads else {}))
        return [share.reply() for share in self.shares]

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

    def call(self, method: str, threads: int = 1, **kwargs: Any) -> None:
        """Run one of ``REMOTE_METHODS`` in every worker, on ``threads`` torch threads there (the
        analyses after training are compute-bound, unlike the steps: a lone worker may take every core)."""
        self._absorb(self._all("call", method=method, kwargs=kwargs, threads=threads))

    def close(self, wait_s: float = 2.0) -> None:
        """Its tasks leave the scheduler; its own scheduler ends its processes (``wait_s``: how long
        each may take to end before it is killed)."""
        if self.owns_scheduler:
            self.scheduler.close(wait_s)
        else:
            for share in self.shares:
                if share.host is not None:
                    share.host.remove(share)

    def __enter__(self) -> "ParallelTrainer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(2.0 if exc[0] is None else 0.0)
