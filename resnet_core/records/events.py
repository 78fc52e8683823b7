"""A run's record as events: what a worker process sends its parent after each command, and how the
parent replays them into its own record. One encoder, one decoder, the one wire format (JSON lists).
Torch-free: the server decodes, the worker encodes."""
from __future__ import annotations

from typing import Any

import numpy as np

from resnet_core.records.record import RunRecord
from resnet_core.records.tables import LayerSnapshot


class ForwardingRecord(RunRecord):
    """A worker's record: it keeps nothing, it queues what was recorded as events for the parent
    (``replay_events`` is the other end)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[list[Any]] = []

    def add_metrics(self, rows) -> None:
        self.events.append(["metrics", list(rows)])

    def add_layers(self, model: str, s: LayerSnapshot) -> None:
        self.events.append(["layers", model, s.step, s.grad_norm.tolist(), s.act_std.tolist(), s.branch_ratio.tolist()])

    def add_paths(self, rows) -> None:
        self.events.append(["paths", list(rows)])

    def add_rows(self, table: str, rows) -> None:
        self.events.append(["rows", table, list(rows)])

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
        elif kind == "rows":  # the analyses' step tables: signal, jacobian, lens
            record.add_rows(event[1], event[2])
        elif kind == "lesion":  # each worker reports its own models: replace those, keep the others'
            models = {row["model"] for row in event[1]}
            record.set_lesion([r for r in record.lesion_rows() if r["model"] not in models] + event[1])
        elif kind == "regions":
            record.set_regions(event[1], event[2], event[3])
