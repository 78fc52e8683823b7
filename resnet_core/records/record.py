"""The record of one run, in memory while it trains (see ``resnet_core.records``)."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from resnet_core.records.history import History
from resnet_core.records.step_tables import StepTables
from resnet_core.records.stream import Stream
from resnet_core.records.tables import (LAYER_COLUMNS, LESION_COLUMNS, METRIC_COLUMNS, PATH_COLUMNS, PATH_OPTIONAL,
                                        STEP_TABLES,
                                        LayerSnapshot, RecordError, StoredMap, jsonable, regions_frame)

if TYPE_CHECKING:  # pandas is imported where a table is asked for: a process that only records
    import pandas as pd  # (a worker, the CLI) never pays its 0.3 s

# The history a record keeps in memory (the run folder keeps everything).
METRIC_HISTORY = 1000       # evaluations per model
LAYER_VALUES = 1_000_000    # per-layer values per field, all models together: ~24 MB
LAYER_SNAPSHOTS = (64, 1000)  # ... and at least / at most this many snapshots per model
PATH_ROWS = 12_000          # path-analysis rows, all models together (6 models x 2,000)
PATH_ANALYSES = (4, 40)     # analyses kept per model, at least / at most (the mean-length-over-time chart)
REGION_HISTORY = 100        # decision maps kept per model (about 7 KB each, compact) for regions_at


class RunRecord:
    def __init__(self, config: dict[str, Any] | None = None, layer_names: dict[str, list[str]] | None = None):
        self.config = config or {}
        self.layer_names = dict(layer_names or {})
        self._lock = threading.Lock()
        self._seq = 0                                   # arrival order of metric rows
        self._metrics: dict[str, History] = {}          # per model: (seq, row) of its evaluations
        self._events: list[tuple[int, dict[str, Any]]] = []  # rows that are not evaluations (divergence)
        self._layers: dict[str, History] = {}
        self._paths: dict[str, History] = {}            # per model: (step, rows) of each analysis
        self._path_columns: set[str] = set()
        self._lesion: list[dict[str, Any]] = []
        self._step_tables = StepTables()               # signal, jacobian, lens: per table and model, bounded
        self._regions: dict[str, tuple[int, dict[str, Any]]] = {}  # latest decision map per model
        self._region_history: dict[str, History] = {}  # per model: (seq, step, map) of the maps set
        self._latest_step = 0
        self._stream: Stream | None = None
        self.folder: Path | None = None  # where the full tables are: the stream's or the read folder
        self.version = 0  # bumped on every change, so a reader can tell when to redraw

    # ---- writing -------------------------------------------------------------------------
    def add_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        with self._lock:
            for row in rows:
                self._seq += 1
                if row.get("status", "ok") == "ok":
                    history = self._metrics.setdefault(str(row.get("model")), History(METRIC_HISTORY))
                    history.add(float(row.get("step") or 0), (self._seq, row))
                else:
                    self._events.append((self._seq, row))
                self._latest_step = max(self._latest_step, int(row.get("step") or 0))
            if self._stream is not None:
                self._stream.metrics(rows)
            self.version += 1

    def add_layers(self, model: str, snapshot: LayerSnapshot) -> None:
        with self._lock:
            history = self._layers.get(model)
            if history is None:
                history = self._layers[model] = History(self._snapshot_budget(model, len(snapshot.grad_norm)))
            history.add(float(snapshot.step), snapshot)
            if self._stream is not None:
                self._stream.layers(model, self.layer_names.get(model, []), snapshot)
            self.version += 1

    def _snapshot_budget(self, model: str, depth: int) -> int:
        depths = {m["name"]: int(m["depth"]) for m in self.config.get("models", [])
                  if isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("depth"), int)}
        depths.update({m: len(n) for m, n in self.layer_names.items()})
        depths[model] = max(depth, 1)
        lo, hi = LAYER_SNAPSHOTS
        return int(min(hi, max(lo, LAYER_VALUES // max(sum(depths.values()), 1))))

    def add_paths(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        with self._lock:
            groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
            for row in rows:
                groups.setdefault((str(row.get("model")), int(row.get("step") or 0)), []).append(row)
                self._path_columns.update(c for c in PATH_OPTIONAL if c in row)
            for (model, step), group in groups.items():
                history = self._paths.get(model)
                if history is None:
                    lo, hi = PATH_ANALYSES
                    budget = min(hi, max(lo, PATH_ROWS // (6 * max(len(group), 1))))
                    history = self._paths[model] = History(budget)
                history.add(float(step), group)
            if self._stream is not None:
                self._stream.paths(rows)
            self.version += 1

    def add_rows(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        """Rows of one of the analyses' step tables (``tables.STEP_TABLES``: "signal.csv", ...)."""
        with self._lock:
            rows = self._step_tables.add(table, rows)
            if self._stream is not None:
                self._stream.table(table, rows)
            self.version += 1

    def set_lesion(self, rows: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            self._lesion = list(rows)
            if self._stream is not None:
                self._stream.dirty.add("lesion.csv")
            self.version += 1

    def set_regions(self, model: str, step: int, grid: dict[str, Any]) -> None:
        with self._lock:
            self._regions[model] = (step, grid)
            self._remember_map(model, int(step), StoredMap.of(grid))
            if self._stream is not None:
                self._stream.dirty.add("regions.csv")
            self.version += 1

    def set_region_history(self, maps: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        """Replace every decision map with ``maps`` ((step, model, grid), oldest first): the latest
        map per model becomes the last one given for it."""
        history = [(int(step), model, StoredMap.of(grid)) for step, model, grid in maps]
        with self._lock:
            self._region_history = {}
            for step, model, stored in history:
                self._remember_map(model, step, stored)
            self._regions = {model: (step, stored.grid()) for step, model, stored in history}
            if self._stream is not None:
                self._stream.dirty.add("regions.csv")
            self.version += 1

    def _remember_map(self, model: str, step: int, stored: "StoredMap") -> None:
        """Called with the lock held: the map joins its model's bounded history of maps."""
        self._seq += 1
        self._region_history.setdefault(model, History(REGION_HISTORY)).add(float(step), (self._seq, step, stored))

    # ---- reading -------------------------------------------------------------------------
    def regions(self) -> dict[str, tuple[int, dict[str, Any]]]:
        with self._lock:
            return dict(self._regions)

    def _maps(self) -> list[tuple[int, str, "StoredMap"]]:
        """(step, model, map) of the maps kept (``REGION_HISTORY`` a model, thinned evenly), oldest first."""
        with self._lock:
            kept = [(seq, step, model, stored) for model, h in self._region_history.items()
                    for seq, step, stored in h.items]
        kept.sort(key=lambda item: item[0])
        return [(step, model, stored) for _, step, model, stored in kept]

    def region_history(self, until: int | None = None) -> list[tuple[int, str, dict[str, Any]]]:
        """The decision maps kept so far as (step, model, grid), oldest first (the latest of each
        model always among them); with ``until``, only those of steps up to it. ``regions()`` is the
        latest of each model's."""
        return [(step, model, stored.grid()) for step, model, stored in self._maps() if until is None or step <= until]

    def regions_at(self, step: int) -> dict[str, tuple[int, dict[str, Any]]]:
        """Each model's decision map as it stood at ``step``: the latest kept at or before it."""
        current = {model: (s, stored) for s, model, stored in self._maps() if s <= step}
        return {model: (s, stored.grid()) for model, (s, stored) in current.items()}

    def lesion_rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._lesion)

    def metric_rows(self) -> list[dict[str, Any]]:
        """The metric rows kept, in the order they came."""
        with self._lock:
            kept = [pair for h in self._metrics.values() for pair in h.items] + list(self._events)
        kept.sort(key=lambda pair: pair[0])
        return [row for _, row in kept]

    @property
    def metrics_version(self) -> int:
        """Bumped by every metric row added, and by nothing else: what a chart of the curves
        depends on (``version`` also moves with each layer snapshot, every other step)."""
        return self._seq

    def metrics_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.metric_rows(), columns=METRIC_COLUMNS)

    def paths_frame(self) -> pd.DataFrame:
        import pandas as pd

        with self._lock:
            groups = [(step, rows) for h in self._paths.values() for step, rows in zip(h.keys, h.items)]
            extra = [c for c in PATH_OPTIONAL if c in self._path_columns]
        rows = [row for _, group in sorted(groups, key=lambda g: g[0]) for row in group]
        return pd.DataFrame(rows, columns=PATH_COLUMNS + extra)

    def table_frame(self, table: str) -> pd.DataFrame:
        """One of the step tables (``tables.STEP_TABLES``) as kept in memory, by step."""
        import pandas as pd

        with self._lock:
            rows = self._step_tables.rows(table)
        return pd.DataFrame(rows, columns=STEP_TABLES[table])

    def lesion_frame(self) -> pd.DataFrame:
        import pandas as pd

        with self._lock:
            rows = list(self._lesion)
        return pd.DataFrame(rows, columns=LESION_COLUMNS)

    def regions_frame(self) -> pd.DataFrame:
        """Each model's latest decision map as rows: the grid runs over x fastest, then y."""
        return regions_frame(self.regions())

    def snapshots(self, model: str) -> list[LayerSnapshot]:
        with self._lock:
            history = self._layers.get(model)
            return list(history.items) if history is not None else []

    def layer_matrix(self, model: str, field: str, max_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values[step, layer]) for one measurement; evenly thinned to max_steps rows."""
        snaps = self.snapshots(model)
        if max_steps and len(snaps) > max_steps:
            keep = np.unique(np.linspace(0, len(snaps) - 1, max_steps).round().astype(int))
            snaps = [snaps[i] for i in keep]
        steps = np.array([s.step for s in snaps], dtype=np.int64)
        depth = len(self.layer_names.get(model, []))
        values = np.stack([getattr(s, field) for s in snaps]) if snaps else np.empty((0, depth))
        return steps, values

    def layers_frame(self) -> pd.DataFrame:
        import pandas as pd

        frames = []
        with self._lock:
            items = [(m, list(h.items)) for m, h in self._layers.items()]
        for model, snaps in items:
            names = self.layer_names.get(model, [])
            for snap in snaps:
                frames.append(pd.DataFrame({
                    "step": snap.step, "model": model, "layer": np.arange(len(names)), "name": names,
                    "grad_norm": snap.grad_norm, "act_std": snap.act_std, "branch_ratio": snap.branch_ratio,
                }))
        if not frames:
            return pd.DataFrame(columns=LAYER_COLUMNS)
        return pd.concat(frames, ignore_index=True)[LAYER_COLUMNS]

    def models(self) -> list[str]:
        return [m["name"] for m in self.config.get("models", []) if isinstance(m, dict) and "name" in m] \
            or list(self.layer_names)

    def latest_step(self) -> int:
        with self._lock:
            return self._latest_step

    # ---- files -----------------------------------------------------------------------------
    def stream_to(self, folder: str | Path, max_bytes: int | None = None) -> Path:
        """From now on every row recorded is also appended to the run folder ``folder`` (what the
        record already holds is written first). ``max_bytes`` caps the folder: past it, layers.csv
        stops growing (``stream_truncated_at`` says from which step) and the rest goes on."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._stream is not None:
                self._stream.close(self.config, self._lesion, self._regions)
            stream = Stream(out, max_bytes)
            self._stream, self.folder = stream, out
            stream.write_config(self.config)
            kept = sorted([pair for h in self._metrics.values() for pair in h.items] + list(self._events),
                          key=lambda pair: pair[0])
            stream.metrics([row for _, row in kept])
            for model, history in self._layers.items():
                for snap in history.items:
                    stream.layers(model, self.layer_names.get(model, []), snap)
            stream.paths([row for h in self._paths.values() for group in h.items for row in group])
            for table, rows in self._step_tables.kept().items():
                stream.table(table, rows)
            stream.dirty.update(("lesion.csv", "regions.csv"))
            stream.flush(self._lesion, self._regions)
        return out

    @property
    def stream_truncated_at(self) -> int | None:
        stream = self._stream
        return stream.truncated_at if stream is not None else None

    def flush(self) -> None:
        """Write out what a streaming record has buffered (before a download reads its files)."""
        with self._lock:
            if self._stream is not None:
                self._stream.flush(self._lesion, self._regions)

    def close_stream(self) -> None:
        """Write out everything and stop streaming; the folder is then a complete run folder."""
        with self._lock:
            if self._stream is not None:
                self._stream.close(self.config, self._lesion, self._regions)
                self._stream = None

    def write(self, out_dir: str | Path) -> Path:
        """The run folder: when this record streams into ``out_dir``, its files are completed; else
        they are written from what the record holds (the full run, unless it outgrew its history)."""
        out = Path(out_dir)
        if self._stream is not None and self._stream.folder.resolve() == out.resolve():
            self.close_stream()
            return out
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(self.config, indent=2, default=jsonable) + "\n")
        self.metrics_frame().to_csv(out / "metrics.csv", index=False)
        self.layers_frame().to_csv(out / "layers.csv", index=False)
        paths = self.paths_frame()
        if len(paths):
            paths.to_csv(out / "paths.csv", index=False)
        tables = [(name, self.table_frame(name)) for name in STEP_TABLES]
        for name, frame in (("lesion.csv", self.lesion_frame()), ("regions.csv", self.regions_frame()), *tables):
            if len(frame):
                frame.to_csv(out / name, index=False)
        return out

    @classmethod
    def read(cls, run_dir: str | Path, max_bytes: int | None = None, name: str | None = None) -> "RunRecord":
        """A run folder's record. Files are opened only when they are regular files (no link, no
        pipe, no device) and, with ``max_bytes``, no larger than that; every column is checked.
        Messages name the folder as ``name`` (default: its path)."""
        run = Path(run_dir)
        label = name if name is not None else str(run)
        from resnet_core.records.read import Reader  # with pandas: only a reader of folders pays for it

        reader = Reader(run, label, max_bytes)
        try:
            return reader.read(cls)
        except RecordError:
            raise
        except RecursionError:
            raise RecordError(f"{label}/{reader.current}: nested too deeply to be a run's file") from None
        except (ValueError, OSError, KeyError, TypeError, IndexError, OverflowError, UnicodeDecodeError) as exc:
            raise RecordError(f"{label}/{reader.current}: cannot read it ({type(exc).__name__})") from None
