"""A run's record as it stood at a step: what a session standing behind a run's head is shown.

``record_until`` copies what a live run had recorded by a step, from a record in memory (its bounded
history) or from a ``FullRecord`` (a finished run read back from its folder: every row, so that a
replay is the live run at every step, past the history's budget too). ``metrics_key`` says which
copies hold the same metrics table, for the sessions to share one. ``finished``: whether a record
is a whole run.

Nothing here imports torch.
"""
from __future__ import annotations

import copy
import itertools
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from resnet_core.records import STEP_TABLES, RecordError, RunRecord, run_finished

_lineages = itertools.count(1)


def lineage(record: RunRecord) -> tuple[int, bool]:
    """(which run, whether this is a copy): the same for every copy ``record_until`` makes of one
    record, so that sessions standing at different steps of one run share what only depends on a
    table they see alike (two copies holding as many metric rows hold the same rows)."""
    origin = record.__dict__.get("lineage")
    if origin is not None:
        return origin, True
    own = record.__dict__.get("_lineage_id")
    if own is None:
        own = record.__dict__["_lineage_id"] = next(_lineages)
    return own, False


class FullRecord(RunRecord):
    """A finished run read back from its folder: a record like any other (the bounded history a page
    draws), that also keeps every row of its tables in the order the run recorded them. A live
    record thins its history as it grows past its budget (``METRIC_HISTORY`` evaluations a model):
    at step 750 of a 1,500-step run evaluated every step, the live page showed 751 evaluations, which
    the finished record no longer holds. From every row, ``record_until`` makes the record exactly as
    the live one stood at any step, and ``write`` writes the whole run, as its stream did."""

    def __init__(self, config: dict[str, Any] | None = None, layer_names: dict[str, list[str]] | None = None):
        super().__init__(config, layer_names)
        self.every_metric: list[dict[str, Any]] = []
        self.every_layer: list[tuple[str, Any]] = []
        self.every_path: list[dict[str, Any]] = []
        self.every_row: dict[str, list[dict[str, Any]]] = {table: [] for table in STEP_TABLES}  # signal, jacobian, lens

    def add_metrics(self, rows) -> None:
        rows = list(rows)
        self.every_metric += rows
        super().add_metrics(rows)

    def add_layers(self, model: str, snapshot) -> None:
        self.every_layer.append((model, snapshot))
        super().add_layers(model, snapshot)

    def add_paths(self, rows) -> None:
        rows = list(rows)
        self.every_path += rows
        super().add_paths(rows)

    def add_rows(self, table: str, rows) -> None:
        rows = list(rows)
        self.every_row[table] += rows
        super().add_rows(table, rows)

    def until(self, step: int) -> RunRecord:
        """The record as the live run's stood at ``step``: its rows up to then, added in their order."""
        out = RunRecord(copy.deepcopy(self.config), {m: list(n) for m, n in self.layer_names.items()})
        out.add_metrics(r for r in self.every_metric if r["step"] < step or (r["step"] == step and r["status"] != "diverged"))
        for model, snap in self.every_layer:
            if snap.step < step:
                out.add_layers(model, snap)
        out.add_paths(r for r in self.every_path if r["step"] <= step)
        for table, rows in self.every_row.items():
            out.add_rows(table, [r for r in rows if r["step"] <= step])
        return out

    def write(self, out_dir: str | Path) -> Path:
        """The whole run's folder: every row, not only the history kept in memory."""
        import pandas as pd

        from resnet_core.records.tables import METRIC_COLUMNS

        whole = RunRecord(self.config, self.layer_names)  # a run folder writer of its own rows
        out = whole.write(out_dir)
        pd.DataFrame(self.every_metric, columns=METRIC_COLUMNS).to_csv(out / "metrics.csv", index=False)
        layers = [pd.DataFrame({"step": snap.step, "model": model, "layer": range(len(self.layer_names.get(model, []))),
                                "name": self.layer_names.get(model, []), "grad_norm": snap.grad_norm,
                                "act_std": snap.act_std, "branch_ratio": snap.branch_ratio})
                  for model, snap in self.every_layer]
        if layers:
            pd.concat(layers, ignore_index=True).to_csv(out / "layers.csv", index=False)
        if self.every_path:
            pd.DataFrame(self.every_path, columns=list(self.paths_frame().columns)).to_csv(out / "paths.csv", index=False)
        for table, rows in self.every_row.items():
            if rows:
                pd.DataFrame(rows, columns=STEP_TABLES[table]).to_csv(out / table, index=False)
        if len(self.regions()):
            self.regions_frame().to_csv(out / "regions.csv", index=False)
        return out


def full_record(record: RunRecord, max_bytes: int | None = None) -> RunRecord:
    """Every row of a finished live run: read back from the folder it streamed to (the record in
    memory keeps a bounded history), or the record itself where it streams nowhere. RecordError or
    OSError where its folder cannot be read back whole (gone, or its stream truncated)."""
    if isinstance(record, FullRecord) or record.folder is None:
        return record
    if record.stream_truncated_at is not None:
        raise RecordError("the run's folder stopped growing at its size limit: it is not the whole run")
    record.flush()
    full = FullRecord.read(record.folder, max_bytes=max_bytes)
    full.config = copy.deepcopy(record.config)
    full.set_region_history(record.region_history())
    full.set_lesion([])  # a user's request on the side, not part of the run
    full.folder = None
    return full


def metrics_key(record: RunRecord) -> tuple:
    """What a record's metrics table is a function of, for sessions to share one table: a record's
    own rows as they grow (its run, and how many it was given), or, for a copy ``record_until``
    made, its run, how many rows it holds and the step of the latest. Not the count alone: past the
    history's budget a run thins its rows, so a copy at step 2,105 and one at step 700 can hold as
    many rows, different ones; rows up to one step, as many of them, are the same rows (a run's
    history only ever loses rows, and a cached run's copies are made from every row)."""
    fixed = record.__dict__.get("metrics_key")
    if fixed is not None:
        return fixed
    return (*lineage(record), record.metrics_version)


def _seal(out: RunRecord, origin: int) -> RunRecord:
    """A copy's metrics are complete: note what its metrics table is a function of (``metrics_key``)."""
    out.lineage = origin
    out.metrics_key = (origin, True, len(out.metric_rows()), out.latest_step())
    return out


def record_until(record: RunRecord, step: int) -> RunRecord:
    """A copy of ``record`` holding exactly what the live run had recorded when it stood at ``step``
    (``trainer.step == step``, that many updates made): the evaluations and path rows of steps up
    to it, each model's decision map as it stood then, and the layer snapshots and divergences of
    steps *before* it (both are recorded during the update from s to s + 1, under step s). Of the maps, only those current
    at ``step`` are copied (``regions()`` is what a live view draws; copying every earlier map would
    make each call cost as much as the whole history). The lesion study, which a user runs on
    demand after training, is left out. A ``FullRecord`` (a cached run) makes it from every row the
    run recorded, so even past the history's budget it is what the live run had shown."""
    if isinstance(record, FullRecord):
        out = _seal(record.until(step), lineage(record)[0])
        for model, (at, grid) in record.regions_at(step).items():
            out.set_regions(model, at, grid)
        return out
    out = RunRecord(copy.deepcopy(record.config), {m: list(n) for m, n in record.layer_names.items()})
    out.lineage = lineage(record)[0]
    metrics = record.metrics_frame()
    during_update = metrics["status"] == "diverged"
    out.add_metrics(_rows(metrics[(metrics["step"] < step) | ((metrics["step"] == step) & ~during_update)]))
    _seal(out, out.lineage)
    for model in record.layer_names:
        for snap in record.snapshots(model):
            if snap.step < step:
                out.add_layers(model, snap)
    paths = record.paths_frame()
    if len(paths):
        out.add_paths(_rows(paths[paths["step"] <= step]))
    for table in STEP_TABLES:  # signal, jacobian, lens: recorded at a step like the path analysis
        rows = record.table_frame(table)
        out.add_rows(table, _rows(rows[rows["step"] <= step]))
    for model, (at, grid) in record.regions_at(step).items():
        out.set_regions(model, at, grid)
    return out


def _rows(frame) -> list[dict[str, Any]]:
    return frame.to_dict("records")


def finished(record: RunRecord) -> bool:
    """Whether a record is a whole run (``run_finished``: it reached its settings' step count, or
    every model diverged), from the record alone."""
    steps = record.config.get("settings", {}).get("steps")
    metrics = record.metrics_frame()
    if steps is None or not len(metrics):
        return False
    status = metrics.groupby("model", sort=False)["status"].last().to_dict()
    return run_finished(record.latest_step(), int(steps), status)


class Views:
    """A run's record as it stood at a step (``record_until``), kept for the viewers standing there:
    a class following one run mostly stands at a few steps, and each copy is made once."""

    KEEP = 32

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._views: OrderedDict[tuple, RunRecord] = OrderedDict()

    def at(self, record: RunRecord, step: int, maps: dict[str, tuple[int, dict]] | None = None) -> RunRecord:
        """``maps``: a Pause's decision maps drawn at ``step``, shown instead of the last ones drawn."""
        key = (id(record), step, maps is not None)
        with self._lock:
            view = self._views.get(key)
            if view is not None:
                self._views.move_to_end(key)
                return view
        view = record_until(record, step)
        for model, (at, grid) in (maps or {}).items():
            view.set_regions(model, at, grid)
        with self._lock:
            self._views[key] = view
            while len(self._views) > self.KEEP:
                self._views.popitem(last=False)
        return view
