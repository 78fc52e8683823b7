"""The analyses' tables that grow step by step (``tables.STEP_TABLES``: signal, jacobian, lens), kept
in memory as a bounded history per table and model, like the path analyses.

Every table's rows come in groups, one per (step, model): one analysis of one model. A table keeps
at least ``STEP_ANALYSES[0]`` and at most ``STEP_ANALYSES[1]`` analyses per model, fewer for a deep
model so that a table holds about ``STEP_ROWS`` rows whatever the depth; older analyses are thinned
evenly (``History``), the first and the latest two always kept. The run folder keeps every row.
"""
from __future__ import annotations

from typing import Any, Iterable

from resnet_core.records.history import History
from resnet_core.records.tables import STEP_TABLES

STEP_ROWS = 12_000       # rows of one table, all models together (6 models x 2,000)
STEP_ANALYSES = (4, 40)  # analyses kept per model, at least / at most


class StepTables:
    """Not thread-safe by itself: ``RunRecord`` calls it with its lock held."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, History]] = {name: {} for name in STEP_TABLES}

    def add(self, table: str, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Keep ``rows`` (of ``table``, a name in STEP_TABLES); returns them as a list."""
        if table not in self._tables:
            raise KeyError(f"unknown table {table!r}; known: {', '.join(STEP_TABLES)}")
        rows = list(rows)
        groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault((str(row.get("model")), int(row.get("step") or 0)), []).append(row)
        histories = self._tables[table]
        for (model, step), group in groups.items():
            history = histories.get(model)
            if history is None:
                lo, hi = STEP_ANALYSES
                history = histories[model] = History(min(hi, max(lo, STEP_ROWS // (6 * max(len(group), 1)))))
            history.add(float(step), group)
        return rows

    def rows(self, table: str) -> list[dict[str, Any]]:
        """The rows kept, by step (models in the order they came at each step)."""
        groups = [(step, group) for h in self._tables[table].values() for step, group in zip(h.keys, h.items)]
        return [row for _, group in sorted(groups, key=lambda g: g[0]) for row in group]

    def kept(self) -> dict[str, list[dict[str, Any]]]:
        """Every table's rows kept (what a stream started later writes first)."""
        return {name: self.rows(name) for name in self._tables}
