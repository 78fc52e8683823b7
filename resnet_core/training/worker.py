"""A training worker process: ``python -m resnet_core.training.worker``, driven over JSON lines by
``resnet_core.remote.trainer.ParallelTrainer``.

It builds a ``LockstepTrainer`` over its share of the models on ``init``, steps it on request, and
sends back, with every reply, what the trainer recorded since the last one.
"""
from __future__ import annotations

from typing import Any

import torch

from resnet_core.errors import describe, is_user_error
from resnet_core.records import LayerSnapshot, RunRecord
from resnet_core.remote.trainer import REMOTE_METHODS
from resnet_core.remote.transport import serve
from resnet_core.settings import Settings
from resnet_core.sizing.budget import out_of_memory, out_of_memory_message
from resnet_core.training.lockstep import LockstepTrainer


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
            if out_of_memory(exc):  # this process's own memory limit (transport.limit_memory): what to lower
                send({"ok": False, "error": out_of_memory_message(), "user": True})
            else:
                send({"ok": False, "error": describe(exc), "user": is_user_error(exc)})

    def _handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        cmd, trainer, reply = msg["cmd"], self.trainer, {}
        if cmd == "init":
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


if __name__ == "__main__":
    torch.set_num_threads(1)  # tiny layers are dispatch-bound, and the workers share the cores
    serve(_Worker())
