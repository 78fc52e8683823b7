"""What a run records, in memory while it trains and as tidy files in its folder.

Metrics are rows; per-layer measurements are kept as one numpy vector per (model, step) so
that a 1000-layer net over 1000 steps stays compact, and are turned into tidy rows only when
written or asked for as a table. Every method is safe to call from another thread.

Memory stays bounded however long a run goes: the record keeps a fixed budget of history per
model (``METRIC_HISTORY`` evaluations, ``LAYER_VALUES`` per-layer values over all models, a row
budget for the path analyses), thinning old steps evenly as new ones come (the first and the
latest two are always kept), which is all a page draws. The full tables go to the run folder as
the run goes (``stream_to``): a run that dies has written what it trained, and downloads are
built from those files.

``RunRecord.read`` reads a run folder back, checking every column's type and every file it opens
(a regular file inside the folder, no link, no device, within a size limit when asked), so a
folder that is not what a run writes is a ``RecordError`` with one line, never a traceback.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from resnet_core.errors import UserError
from resnet_core.settings import SettingsError, parse_model_name

METRIC_COLUMNS = ["step", "model", "train_loss", "train_error", "test_error", "wall_s", "status"]
LAYER_COLUMNS = ["step", "model", "layer", "name", "grad_norm", "act_std", "branch_ratio"]
PATH_COLUMNS = ["step", "model", "length", "n_paths", "grad_norm", "share", "residual"]
PATH_OPTIONAL = ["path_norm"]  # Veit et al.'s sampled per-path magnitude, where it was measured
LESION_COLUMNS = ["model", "block", "train_error"]
REGION_COLUMNS = ["step", "model", "x", "y", "predicted", "confidence"]  # the latest map per model, one row per grid point
RUN_FILES = ("config.json", "metrics.csv", "layers.csv", "paths.csv", "lesion.csv", "regions.csv")

# The history a record keeps in memory (the run folder keeps everything).
METRIC_HISTORY = 1000       # evaluations per model
LAYER_VALUES = 1_000_000    # per-layer values per field, all models together: ~24 MB
LAYER_SNAPSHOTS = (64, 1000)  # ... and at least / at most this many snapshots per model
PATH_ROWS = 12_000          # path-analysis rows, all models together (6 models x 2,000)
PATH_ANALYSES = (4, 40)     # analyses kept per model, at least / at most (the mean-length-over-time chart)
REGION_HISTORY = 100        # decision maps kept per model (about 7 KB each, compact) for regions_at
FLUSH_EVERY_S = 2.0         # a streaming record writes its buffers out at least this often
CONFIG_MAX_BYTES = 1 << 20  # a config.json is a few kilobytes; more is not a run's
READ_CHUNK_ROWS = 200_000   # tables are read in chunks of this many rows and thinned as they come


class RecordError(UserError):
    """A run folder that cannot be read; the message names the file and what is wrong."""


def run_finished(step: int, steps: int, status: Mapping[str, str]) -> bool:
    """The one definition of a run that is over: it reached its step count, or every model has
    diverged (status: model -> "ok" or "diverged"; no models yet means not over)."""
    return step >= steps or (bool(status) and all(s != "ok" for s in status.values()))


@dataclass(frozen=True)
class LayerSnapshot:
    step: int
    grad_norm: np.ndarray     # one value per weighted layer, depth order
    act_std: np.ndarray
    branch_ratio: np.ndarray  # NaN where the layer does not end a residual block


class History:
    """At most ``budget`` items of a growing series, spread evenly over it: each item past the budget
    removes the kept item whose neighbours are closest together (the oldest such), never the first
    or the latest two. So the count stays at the budget and the spacing within about a factor of two
    of even, at any length (at 100,000 steps and a budget of 1,000: every 64 to 136 steps)."""

    def __init__(self, budget: int):
        self.budget = max(3, int(budget))
        self.items: list[Any] = []
        self.keys: list[float] = []

    def add(self, key: float, item: Any) -> None:
        self.items.append(item)
        self.keys.append(key)
        if len(self.items) > self.budget:
            k = np.asarray(self.keys[:-1], dtype=np.float64)  # the latest is never a candidate ...
            gaps = k[2:] - k[:-2]                               # ... nor the first, nor the one before the latest
            i = int(np.argmin(gaps)) + 1
            del self.items[i], self.keys[i]

    def __len__(self) -> int:
        return len(self.items)


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
        self._regions: dict[str, tuple[int, dict[str, Any]]] = {}  # latest decision map per model
        self._region_history: dict[str, History] = {}  # per model: (seq, step, map) of the maps set
        self._latest_step = 0
        self._stream: _Stream | None = None
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

    def set_lesion(self, rows: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            self._lesion = list(rows)
            if self._stream is not None:
                self._stream.dirty.add("lesion.csv")
            self.version += 1

    def set_regions(self, model: str, step: int, grid: dict[str, Any]) -> None:
        with self._lock:
            self._regions[model] = (step, grid)
            self._remember_map(model, int(step), _StoredMap.of(grid))
            if self._stream is not None:
                self._stream.dirty.add("regions.csv")
            self.version += 1

    def set_region_history(self, maps: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        """Replace every decision map with ``maps`` ((step, model, grid), oldest first): the latest
        map per model becomes the last one given for it."""
        history = [(int(step), model, _StoredMap.of(grid)) for step, model, grid in maps]
        with self._lock:
            self._region_history = {}
            for step, model, stored in history:
                self._remember_map(model, step, stored)
            self._regions = {model: (step, stored.grid()) for step, model, stored in history}
            if self._stream is not None:
                self._stream.dirty.add("regions.csv")
            self.version += 1

    def _remember_map(self, model: str, step: int, stored: "_StoredMap") -> None:
        """Called with the lock held: the map joins its model's bounded history of maps."""
        self._seq += 1
        self._region_history.setdefault(model, History(REGION_HISTORY)).add(float(step), (self._seq, step, stored))

    # ---- reading -------------------------------------------------------------------------
    def regions(self) -> dict[str, tuple[int, dict[str, Any]]]:
        with self._lock:
            return dict(self._regions)

    def _maps(self) -> list[tuple[int, str, "_StoredMap"]]:
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

    def metrics_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.metric_rows(), columns=METRIC_COLUMNS)

    def paths_frame(self) -> pd.DataFrame:
        with self._lock:
            groups = [(step, rows) for h in self._paths.values() for step, rows in zip(h.keys, h.items)]
            extra = [c for c in PATH_OPTIONAL if c in self._path_columns]
        rows = [row for _, group in sorted(groups, key=lambda g: g[0]) for row in group]
        return pd.DataFrame(rows, columns=PATH_COLUMNS + extra)

    def lesion_frame(self) -> pd.DataFrame:
        with self._lock:
            rows = list(self._lesion)
        return pd.DataFrame(rows, columns=LESION_COLUMNS)

    def regions_frame(self) -> pd.DataFrame:
        """Each model's latest decision map as rows: the grid runs over x fastest, then y."""
        return _regions_frame(self.regions())

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
                self._stream.close(self)
            stream = _Stream(out, max_bytes)
            self._stream, self.folder = stream, out
            stream.write_config(self.config)
            kept = sorted([pair for h in self._metrics.values() for pair in h.items] + list(self._events),
                          key=lambda pair: pair[0])
            stream.metrics([row for _, row in kept])
            for model, history in self._layers.items():
                for snap in history.items:
                    stream.layers(model, self.layer_names.get(model, []), snap)
            stream.paths([row for h in self._paths.values() for group in h.items for row in group])
            stream.dirty.update(("lesion.csv", "regions.csv"))
            stream.flush(self)
        return out

    @property
    def stream_truncated_at(self) -> int | None:
        stream = self._stream
        return stream.truncated_at if stream is not None else None

    def flush(self) -> None:
        """Write out what a streaming record has buffered (before a download reads its files)."""
        with self._lock:
            if self._stream is not None:
                self._stream.flush(self)

    def close_stream(self) -> None:
        """Write out everything and stop streaming; the folder is then a complete run folder."""
        with self._lock:
            if self._stream is not None:
                self._stream.close(self)
                self._stream = None

    def write(self, out_dir: str | Path) -> Path:
        """The run folder: when this record streams into ``out_dir``, its files are completed; else
        they are written from what the record holds (the full run, unless it outgrew its history)."""
        out = Path(out_dir)
        if self._stream is not None and self._stream.folder.resolve() == out.resolve():
            self.close_stream()
            return out
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(self.config, indent=2, default=_jsonable) + "\n")
        self.metrics_frame().to_csv(out / "metrics.csv", index=False)
        self.layers_frame().to_csv(out / "layers.csv", index=False)
        paths = self.paths_frame()
        if len(paths):
            paths.to_csv(out / "paths.csv", index=False)
        for name, frame in (("lesion.csv", self.lesion_frame()), ("regions.csv", self.regions_frame())):
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
        reader = _Reader(run, label, max_bytes)
        try:
            return reader.read(cls)
        except RecordError:
            raise
        except RecursionError:
            raise RecordError(f"{label}/{reader.current}: nested too deeply to be a run's file") from None
        except (ValueError, OSError, KeyError, TypeError, IndexError, OverflowError, UnicodeDecodeError) as exc:
            raise RecordError(f"{label}/{reader.current}: cannot read it ({type(exc).__name__})") from None


# ------------------------------------------------------------------------------------------ writing
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(float(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return "" if math.isnan(v) else repr(v)
    return str(value)


_PLAIN = re.compile(r"[A-Za-z0-9_.\-]*")  # needs no CSV quoting


def _floats(values: np.ndarray) -> list[str]:
    """Each value as pandas' to_csv writes it: the shortest repr, NaN as an empty cell."""
    return ["" if v != v else repr(v) for v in np.asarray(values, dtype=np.float64).tolist()]


class _Stream:
    """Appends a record's rows to its run folder's CSV files; lesion.csv and regions.csv (small,
    replaced rather than grown) are rewritten when they changed, at the next flush."""

    def __init__(self, folder: Path, max_bytes: int | None):
        self.folder = folder
        self.max_bytes = max_bytes
        self.written = 0
        self.truncated_at: int | None = None
        self.files: dict[str, Any] = {}
        self.dirty: set[str] = set()
        self.last_flush = time.monotonic()
        self._open("metrics.csv", METRIC_COLUMNS)
        self._open("layers.csv", LAYER_COLUMNS)

    def _open(self, name: str, header: list[str]) -> Any:
        f = open(self.folder / name, "w", newline="", encoding="utf-8")
        f.write(",".join(header) + "\n")
        self.files[name] = (f, csv.writer(f, lineterminator="\n"), header)
        return self.files[name]

    def _rows(self, name: str, rows: list[list[str]]) -> None:
        f, writer, _ = self.files[name]
        writer.writerows(rows)
        self.written += sum(len(c) + 1 for row in rows for c in row)
        if time.monotonic() - self.last_flush > FLUSH_EVERY_S:
            self._flush_files()

    def write_config(self, config: dict[str, Any]) -> None:
        tmp = self.folder / "config.json.tmp"
        tmp.write_text(json.dumps(config, indent=2, default=_jsonable) + "\n")
        os.replace(tmp, self.folder / "config.json")

    def metrics(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._rows("metrics.csv", [[_cell(r.get(c)) for c in METRIC_COLUMNS] for r in rows])

    def layers(self, model: str, names: list[str], snap: LayerSnapshot) -> None:
        if self.max_bytes is not None and self.written > self.max_bytes:
            if self.truncated_at is None:
                self.truncated_at = int(snap.step)
            return
        g, a, r = (_floats(v) for v in (snap.grad_norm, snap.act_std, snap.branch_ratio))
        names = list(names[:len(g)]) + [""] * (len(g) - len(names))
        head = f"{int(snap.step)},{model},"
        if _PLAIN.fullmatch(model) and all(_PLAIN.fullmatch(n) for n in names):
            # The hot path (a 1002-layer net probed every step): one string, no csv module per cell.
            f = self.files["layers.csv"][0]
            text = "".join(f"{head}{i},{names[i]},{g[i]},{a[i]},{r[i]}\n" for i in range(len(g)))
            f.write(text)
            self.written += len(text)
            if time.monotonic() - self.last_flush > FLUSH_EVERY_S:
                self._flush_files()
            return
        self._rows("layers.csv", [[str(int(snap.step)), model, str(i), names[i], g[i], a[i], r[i]] for i in range(len(g))])

    def paths(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if "paths.csv" not in self.files:
            self._open("paths.csv", PATH_COLUMNS + [c for c in PATH_OPTIONAL if c in rows[0]])
        header = self.files["paths.csv"][2]
        self._rows("paths.csv", [[_cell(r.get(c)) for c in header] for r in rows])

    def _flush_files(self) -> None:
        for f, _, _ in self.files.values():
            f.flush()
        self.last_flush = time.monotonic()

    def flush(self, record: RunRecord) -> None:
        """Called with the record's lock held."""
        if "lesion.csv" in self.dirty and record._lesion:
            _replace_csv(self.folder / "lesion.csv", pd.DataFrame(record._lesion, columns=LESION_COLUMNS))
        if "regions.csv" in self.dirty and record._regions:
            _replace_csv(self.folder / "regions.csv", _regions_frame(dict(record._regions)))
        self.dirty.clear()
        self._flush_files()

    def close(self, record: RunRecord) -> None:
        self.write_config(record.config)
        self.flush(record)
        for f, _, _ in self.files.values():
            f.close()
        self.files.clear()


def _replace_csv(path: Path, frame: pd.DataFrame) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _regions_frame(regions: dict[str, tuple[int, dict[str, Any]]]) -> pd.DataFrame:
    frames = []
    for model, (step, grid) in regions.items():
        n = grid["n"]
        xs, ys = np.linspace(*grid["x"], n), np.linspace(*grid["y"], n)
        frames.append(pd.DataFrame({"step": step, "model": model, "x": np.tile(xs, n), "y": np.repeat(ys, n),
                                    "predicted": grid["classes"], "confidence": grid["confidence"]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=REGION_COLUMNS)


# ------------------------------------------------------------------------------------------ reading
class _Limited(io.RawIOBase):
    """A file read up to ``limit`` bytes; one byte more is an error naming the limit."""

    def __init__(self, f, limit: int | None, what: str):
        self.f, self.left, self.what, self.limit = f, limit, what, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.f.read(len(buffer))
        if self.left is not None:
            self.left -= len(data)
            if self.left < 0:
                raise RecordError(f"{self.what} is larger than {_size(self.limit)}, more than a replay reads")
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.f.close()
        super().close()


class _Reader:
    """One read of a run folder: safe opens, chunked typed parsing, every problem a RecordError."""

    def __init__(self, run: Path, label: str, max_bytes: int | None):
        self.run, self.label, self.max_bytes = run, label, max_bytes
        self.current = "config.json"

    def where(self, file: str) -> str:
        return f"{self.label}/{file}"

    def open(self, file: str, required: bool = True):
        """The file as a bounded binary stream, or None when it is optional and absent."""
        self.current = file
        path = self.run / file
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            if required:
                raise RecordError(f"{self.label} is not a run folder: {file} is missing") from None
            return None
        if stat.S_ISLNK(info.st_mode):
            raise RecordError(f"{self.where(file)} is a link; a run folder holds its own files")
        if not stat.S_ISREG(info.st_mode):
            raise RecordError(f"{self.where(file)} is not a regular file")
        if self.max_bytes is not None and info.st_size > self.max_bytes:
            raise RecordError(f"{self.where(file)} has {_size(info.st_size)}, more than the {_size(self.max_bytes)} "
                              "a replay reads")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        f = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped since the check
            f.close()
            raise RecordError(f"{self.where(file)} is not a regular file")
        return io.BufferedReader(_Limited(f, self.max_bytes, self.where(file)))

    def chunks(self, file: str, columns: list[str], required: bool = True):
        stream = self.open(file, required)
        if stream is None:
            return
        with stream:
            try:
                reader = pd.read_csv(stream, dtype=str, keep_default_na=False, chunksize=READ_CHUNK_ROWS)
                first = True
                line = 2
                for chunk in reader:
                    if first:
                        _require(chunk, columns, self.where(file))
                        first = False
                    yield _Typed(chunk.fillna(""), self.where(file), line)
                    line += len(chunk)
                if first:  # a header and no rows
                    yield None
            except pd.errors.EmptyDataError:
                raise RecordError(f"{self.where(file)} is empty; it needs at least its header line") from None
            except pd.errors.ParserError:
                raise RecordError(f"{self.where(file)}: cannot read it (ParserError)") from None
            except UnicodeDecodeError:
                raise RecordError(f"{self.where(file)} is not UTF-8 text") from None

    def config(self) -> dict[str, Any]:
        stream = self.open("config.json")
        with stream:
            raw = stream.read(CONFIG_MAX_BYTES + 1)
        if len(raw) > CONFIG_MAX_BYTES:
            raise RecordError(f"{self.where('config.json')} is larger than {_size(CONFIG_MAX_BYTES)}; a run's is a "
                              "few kilobytes")
        try:
            config = json.loads(raw.decode("utf-8"))
        except RecursionError:
            raise RecordError(f"{self.where('config.json')} is nested too deeply to be a run's configuration") from None
        except (ValueError, UnicodeDecodeError):
            raise RecordError(f"{self.where('config.json')} is not valid JSON") from None
        if not isinstance(config, dict):
            raise RecordError(f"{self.where('config.json')} must hold a JSON object, not a {type(config).__name__}")
        for key in ("settings", "dataset"):
            if key in config and not isinstance(config[key], dict):
                raise RecordError(f"{self.where('config.json')}: {key} must be an object")
        models = config.get("models", [])
        if not isinstance(models, list):
            raise RecordError(f"{self.where('config.json')}: models must be a list")
        for i, model in enumerate(models):
            if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not model["name"].strip():
                raise RecordError(f"{self.where('config.json')}: model {i + 1} has no name")
            _model_name(model["name"], self.where("config.json"))
        return config

    def read(self, cls) -> RunRecord:
        config = self.config()
        record = cls(config)
        for typed in self.chunks("metrics.csv", METRIC_COLUMNS):
            if typed is None:
                continue
            cols = {"step": typed.whole("step"), "model": typed.models(), "train_loss": typed.number("train_loss"),
                    "train_error": typed.fraction("train_error"), "test_error": typed.fraction("test_error"),
                    "wall_s": typed.number("wall_s"), "status": typed.choice("status", ("ok", "diverged"))}
            record.add_metrics([{c: (int(v[i]) if c == "step" else v[i] if c in ("model", "status") else _none(v[i]))
                                 for c, v in cols.items()} for i in range(len(cols["step"]))])
        self._read_layers(record)
        if self._exists("paths.csv"):
            for typed in self.chunks("paths.csv", PATH_COLUMNS, required=False):
                if typed is None:
                    continue
                cols = {"step": typed.whole("step"), "model": typed.models(), "length": typed.whole("length")}
                extra = [c for c in PATH_OPTIONAL if c in typed.frame.columns]
                for c in ("n_paths", "grad_norm", "share", "residual", *extra):
                    cols[c] = typed.number(c)
                n = len(cols["step"])
                record.add_paths([{c: (int(v[i]) if c in ("step", "length") else v[i] if c == "model" else float(v[i]))
                                   for c, v in cols.items()} for i in range(n)])
        if self._exists("lesion.csv"):
            rows = []
            for typed in self.chunks("lesion.csv", LESION_COLUMNS, required=False):
                if typed is None:
                    continue
                models, blocks, errors = typed.models(), typed.whole("block", lo=-1), typed.fraction("train_error")
                rows += [{"model": models[i], "block": int(blocks[i]), "train_error": float(errors[i])}
                         for i in range(len(models))]
            record.set_lesion(rows)
        if self._exists("regions.csv"):
            frames = [typed.regions() for typed in self.chunks("regions.csv", REGION_COLUMNS, required=False)
                      if typed is not None]
            if frames:
                _add_regions(record, pd.concat(frames, ignore_index=True), self.where("regions.csv"))
        record.folder = self.run
        return record

    def _exists(self, file: str) -> bool:
        return os.path.lexists(self.run / file)

    def _read_layers(self, record: RunRecord) -> None:
        """Snapshots from layers.csv: the rows of one (model, step) come together, layers 0..L-1 in
        order, and every step of a model has the same L layers."""
        pending: pd.DataFrame | None = None
        where = self.where("layers.csv")
        depth: dict[str, tuple[int, int]] = {}  # model -> (layers, first step)

        def add(group: pd.DataFrame) -> None:
            model, step = group["model"].iloc[0], int(group["step"].iloc[0])
            layers = group["layer"].to_numpy()
            if not np.array_equal(layers, np.arange(len(layers))):
                raise RecordError(f"{where}: the layers of {model} at step {step} are not 0 to {len(layers) - 1} "
                                  "in order, one row each")
            if model not in depth:
                depth[model] = (len(layers), step)
                record.layer_names[model] = list(group["name"])
            elif depth[model][0] != len(layers):
                first, at = depth[model]
                raise RecordError(f"{where}: {model} has {first} layer{'s' if first != 1 else ''} at step {at} but "
                                  f"{len(layers)} at step {step}; every step needs the same layers")
            record.add_layers(model, LayerSnapshot(step, group["grad_norm"].to_numpy(float),
                                                   group["act_std"].to_numpy(float),
                                                   group["branch_ratio"].to_numpy(float)))

        for typed in self.chunks("layers.csv", LAYER_COLUMNS):
            if typed is None:
                continue
            frame = pd.DataFrame({"step": typed.whole("step"), "model": typed.models(), "layer": typed.whole("layer"),
                                  "name": typed.frame["name"].to_numpy(), "grad_norm": typed.number("grad_norm"),
                                  "act_std": typed.number("act_std"), "branch_ratio": typed.number("branch_ratio")})
            if pending is not None:
                frame = pd.concat([pending, frame], ignore_index=True)
            key = frame["model"] + "\x00" + frame["step"].astype(str)
            starts = np.flatnonzero(np.r_[True, key.to_numpy()[1:] != key.to_numpy()[:-1]])
            for a, b in zip(starts[:-1], starts[1:]):
                add(frame.iloc[a:b])
            pending = frame.iloc[starts[-1]:]  # the last group may go on in the next chunk
        if pending is not None and len(pending):
            add(pending)


@dataclass(frozen=True)
class _StoredMap:
    """A decision map kept compactly for the history: classes as small integers and confidences
    (rounded to 3 decimals by the trainer) as thousandths, where that loses nothing."""
    meta: dict[str, Any]
    classes: np.ndarray
    confidence: np.ndarray  # uint16 thousandths, or float64 when the values are not whole thousandths

    @classmethod
    def of(cls, grid: dict[str, Any]) -> "_StoredMap":
        meta = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in grid.items()
                if k not in ("classes", "confidence")}
        classes = np.asarray(grid["classes"])
        small = classes.astype(np.uint8)
        confidence = np.asarray(grid["confidence"], dtype=np.float64)
        milli = np.rint(np.clip(np.nan_to_num(confidence), 0, 1) * 1000).astype(np.uint16)
        return cls(meta, small if np.array_equal(small, classes) else classes.astype(np.int64),
                   milli if np.array_equal(milli / 1000, confidence) else confidence)

    def grid(self) -> dict[str, Any]:
        confidence = self.confidence / 1000 if self.confidence.dtype == np.uint16 else self.confidence
        return {**{k: (list(v) if isinstance(v, list) else v) for k, v in self.meta.items()},
                "classes": self.classes.tolist(), "confidence": confidence.tolist()}


class _Typed:
    """One chunk of a table, as text, with checked conversions that name the first bad cell."""

    def __init__(self, frame: pd.DataFrame, where: str, first_line: int):
        self.frame, self.where, self.first_line = frame, where, first_line

    def _bad(self, column: str, mask: np.ndarray, what: str) -> None:
        i = int(np.flatnonzero(mask)[0])
        value = str(self.frame[column].iloc[i])
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise RecordError(f"{self.where}: column {column} has {shown!r} on line {self.first_line + i}; {what}")

    def number(self, column: str) -> np.ndarray:
        raw = self.frame[column]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        text = raw.str.strip().str.lower()
        bad = np.isnan(values) & ~text.isin(["", "nan"]).to_numpy()
        if bad.any():
            self._bad(column, bad, "it must be a number (or empty)")
        return values

    def fraction(self, column: str) -> np.ndarray:
        values = self.number(column)
        bad = ~np.isnan(values) & ((values < 0) | (values > 1))
        if bad.any():
            self._bad(column, bad, "errors are fractions from 0 to 1")
        return values

    def whole(self, column: str, lo: int = 0) -> np.ndarray:
        values = pd.to_numeric(self.frame[column], errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (values != np.floor(values)) | (values < lo) | (values > 1e12)
        if bad.any():
            self._bad(column, bad, f"it must be a whole number, {lo} or more")
        return values.astype(np.int64)

    def models(self) -> np.ndarray:
        names = self.frame["model"].to_numpy(dtype=object)
        for name in pd.unique(names):
            _model_name(name, self.where)
        return names

    def choice(self, column: str, allowed: tuple[str, ...]) -> np.ndarray:
        values = self.frame[column].to_numpy(dtype=object)
        bad = ~np.isin(values, allowed)
        if bad.any():
            self._bad(column, bad, f"it must be one of {', '.join(allowed)}")
        return values

    def regions(self) -> pd.DataFrame:
        out = pd.DataFrame({"step": self.whole("step"), "model": self.models()})
        for c in ("x", "y", "confidence"):
            out[c] = self.number(c)
        bad = ~np.isfinite(out[["x", "y"]].to_numpy()).all(axis=1)
        if bad.any():
            self._bad("x", bad, "grid points must be finite numbers")
        out["predicted"] = self.whole("predicted")
        return out


def _model_name(name: Any, where: str) -> None:
    """A run's model names are the app's own (plain-D, resnet-D): anything else did not come from a run."""
    text = str(name)
    try:
        if not text.strip():
            raise SettingsError("empty")
        parse_model_name(text)
    except SettingsError:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise RecordError(f"{where}: {shown!r} is not a model name like plain-20 or resnet-56") from None


def _none(value: float) -> float | None:
    v = float(value)
    return None if math.isnan(v) else v


def _add_regions(record: RunRecord, frame: pd.DataFrame, where: str) -> None:
    for model, g in frame.groupby("model", sort=False):
        g = g.sort_values(["y", "x"])
        n = g["x"].nunique()
        if n < 2 or len(g) != n * n or g["step"].nunique() != 1:
            raise RecordError(f"{where}: the map of {model} is not one square grid of one step")
        record.set_regions(str(model), int(g["step"].iloc[0]), {
            "x": [float(g["x"].min()), float(g["x"].max())], "y": [float(g["y"].min()), float(g["y"].max())],
            "n": n, "classes": g["predicted"].astype(int).tolist(), "confidence": g["confidence"].astype(float).tolist()})


def _require(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RecordError(f"{where} lacks the column(s) {', '.join(missing)}")


def _size(n: int) -> str:
    mb = n / (1 << 20)
    return f"{mb:,.0f} MB" if mb >= 10 else f"{mb:.1f} MB" if mb >= 1 else f"{n:,} bytes"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
