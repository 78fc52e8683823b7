"""The run cache: a finished run kept on disk under a key of what made it, served to whoever asks
for the same run again instead of training it twice.

A run is a pure function of its settings, its seed and the code that trains it (on one machine, with
one torch thread; see ``run_keys.py``). ``run_key`` hashes all three; the first session
that trains a key puts its record here, and every later session with the same key is served it,
step by step if it wants to look live (``record_until``).

Layout (one folder, ``RESIDUAL_LAB_RUN_CACHE``, default ``runs/cache`` under the project)::

    <key>/                  one finished run: the run folder the CLI writes (config.json, metrics.csv,
                            layers.csv, and paths.csv, lesion.csv, regions.csv where recorded), which
                            RunRecord.read and the Records tab read as they are, plus
        regions_history.json  every decision map of the run, not only the latest (for record_until)
        cache.json            the key and what went into it; written last
    .incoming/              folders being written; each appears as <key>/ in one rename
    .trash/                 entries being evicted; each leaves <key>/ in one rename before deletion

Safety when several server processes share the folder: a put writes a fresh folder under
``.incoming`` and renames it into place (``os.rename`` is atomic on POSIX, and refuses to replace a
non-empty folder, so the first put of a key wins and the later ones are dropped). An eviction renames
the entry into ``.trash`` before deleting anything, and ``get`` checks that the folder it read is
still the one it started on, so no half-written or half-deleted record is ever served. A temporary
folder left by a crashed process is never read and is removed by a later put once an hour old.

Size: at most ``RESIDUAL_LAB_RUN_CACHE_MB`` megabytes (default 500; 0 turns the cache off). After
each put the least recently used entries (a ``get`` counts as a use) are evicted until the rest
fit; a record larger than the whole limit is not stored.

What a key promises, and what goes into it: ``dashboard/runtime/run_keys.py``.

This module imports no torch: the dashboard's server uses it, and the server never loads torch.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from dashboard.runtime.run_keys import (KEY_PATTERN, auto_device, code_digest, code_versions, dataset_identity,
                                        device_kind, key_inputs, record_key, run_key)
from resnet_core.data import DataError
from resnet_core.records import STEP_TABLES, RecordError, RunRecord, run_finished
from resnet_core.settings import Settings, SettingsError

__all__ = ["RunCache", "record_until", "finished", "run_key", "record_key", "key_inputs", "code_versions",
           "code_digest", "dataset_identity", "device_kind", "auto_device", "cache_dir", "cache_limit_mb"]

REPO = Path(__file__).resolve().parents[2]
CACHE_ENV = "RESIDUAL_LAB_RUN_CACHE"
LIMIT_ENV = "RESIDUAL_LAB_RUN_CACHE_MB"
DEFAULT_LIMIT_MB = 500.0
HISTORY_FILE = "regions_history.json"
ENTRY_FILE = "cache.json"
INCOMING, TRASH = ".incoming", ".trash"
STALE_TEMP_S = 3600.0  # a temporary folder this old was left by a process that died while writing


# ------------------------------------------------------------------------------ partial records

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


def record_until(record: RunRecord, step: int) -> RunRecord:
    """A copy of ``record`` holding exactly what the live run had recorded when it stood at ``step``
    (``trainer.step == step``, that many updates made): the evaluations and path rows of steps up
    to it, each model's decision map as it stood then, and the layer snapshots and divergences of
    steps *before* it (both are recorded during the update from s to s + 1, under step s). Of the maps, only those current
    at ``step`` are copied (``regions()`` is what a live view draws; copying every earlier map would
    make each call cost as much as the whole history). The lesion study, which a user runs on
    demand after training, is left out."""
    out = RunRecord(copy.deepcopy(record.config), {m: list(n) for m, n in record.layer_names.items()})
    out.lineage = lineage(record)[0]
    metrics = record.metrics_frame()
    during_update = metrics["status"] == "diverged"
    out.add_metrics(_rows(metrics[(metrics["step"] < step) | ((metrics["step"] == step) & ~during_update)]))
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


# ------------------------------------------------------------------------------------ the cache

def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or REPO / "runs" / "cache")


def cache_limit_mb() -> float:
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_LIMIT_MB
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{LIMIT_ENV} must be a number of megabytes, 0 or more (got {raw!r})")
    return value


class RunCache:
    """Finished runs on disk by key; safe to share between threads and processes (see the module's
    docstring for how)."""

    def __init__(self, root: Path | None = None, limit_mb: float | None = None):
        self.root = Path(root) if root is not None else cache_dir()
        self.limit_mb = float(limit_mb) if limit_mb is not None else cache_limit_mb()
        if not (self.limit_mb >= 0 and math.isfinite(self.limit_mb)):
            raise ValueError(f"limit_mb must be a number of megabytes, 0 or more (got {limit_mb!r})")

    @property
    def limit_bytes(self) -> int:
        return int(self.limit_mb * 1024 * 1024)

    def path(self, key: str) -> Path:
        if not isinstance(key, str) or not KEY_PATTERN.match(key):
            raise ValueError(f"a run key is 64 hexadecimal digits (got {key!r})")
        return self.root / key

    # ---- reading ---------------------------------------------------------------------------
    def contains(self, key: str) -> bool:
        return (self.path(key) / ENTRY_FILE).is_file()

    def get(self, key: str) -> RunRecord | None:
        """The finished run stored under ``key``, or None; counts as a use for eviction."""
        entry = self.path(key)
        try:
            before = entry.stat().st_ino
            meta = json.loads((entry / ENTRY_FILE).read_text())
            if meta.get("key") != key or not all((entry / name).is_file() for name in meta.get("files", [])):
                return None
            record = RunRecord.read(entry)
            if (entry / HISTORY_FILE).is_file():
                record.set_region_history(_read_history(entry / HISTORY_FILE))
            if entry.stat().st_ino != before:  # evicted (and perhaps put again) while being read
                return None
        except (OSError, ValueError, KeyError, TypeError, RecordError):
            return None
        _touch(entry)
        return record

    def keys(self) -> list[str]:
        """Stored keys, least recently used first."""
        return [e.key for e in self._entries()]

    def size_bytes(self) -> int:
        return sum(e.size for e in self._entries())

    # ---- writing ---------------------------------------------------------------------------
    def put(self, key: str, record: RunRecord) -> bool:
        """Store a finished run under its key. True when this call stored it; False when the key was
        already there (the first put wins and is kept) or the record alone is over the limit.
        ValueError for a record that is not finished or whose config gives another key."""
        target = self.path(key)
        if not finished(record):
            raise ValueError("only a finished run can be cached: it has not reached its step count")
        if record_key(record) != key:
            raise ValueError("this record is not a run of that key: its settings, data or device differ "
                             "(were they changed while it trained?)")
        if self.limit_bytes <= 0 or self.contains(key):
            return False
        incoming = self.root / INCOMING
        incoming.mkdir(parents=True, exist_ok=True)
        self._clean_stale()
        temp = incoming / f"{key}.{os.getpid()}.{uuid.uuid4().hex}"
        try:
            record.write(temp)
            maps = [{"step": step, "model": model, **grid} for step, model, grid in record.region_history()]
            _write_json(temp / HISTORY_FILE, {"format": 1, "maps": maps}, allow_nan=True)  # a NaN confidence
            files = sorted(p.name for p in temp.iterdir())
            _write_json(temp / ENTRY_FILE, {"key": key, "files": files, "inputs": _inputs_of(record),
                                            "stored_at": time.time()})
            size = _folder_size(temp)
            if size > self.limit_bytes:
                return False
            _fsync_folder(temp)
            if not self._rename_into_place(temp, target):
                return False
            _touch(target)  # the newest use
            _fsync(self.root)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        self.evict()
        return True

    def evict(self) -> list[str]:
        """Remove least recently used entries until the rest fit the limit; returns their keys."""
        entries = self._entries()
        total = sum(e.size for e in entries)
        removed = []
        for e in entries:
            if total <= self.limit_bytes:
                break
            if self._remove(e.key):
                removed.append(e.key)
            total -= e.size
        return removed

    def clear(self) -> None:
        for key in self.keys():
            self._remove(key)

    # ---- internals ---------------------------------------------------------------------------
    def _rename_into_place(self, temp: Path, target: Path) -> bool:
        """Rename the written folder to the key's name; False when a whole entry is already there
        (another process put it first: theirs is kept). A folder under that name that is not a
        whole entry (no cache.json: never made by a put) is cleared out of the way first."""
        for _ in range(2):
            try:
                os.rename(temp, target)
                return True
            except OSError:
                if not target.exists():
                    raise
                if (target / ENTRY_FILE).is_file():
                    return False
                self._remove(target.name)
        return False

    def _remove(self, key: str) -> bool:
        """Rename the entry out of the way in one step, then delete it: a reader either finds it
        whole or not at all."""
        trash = self.root / TRASH
        trash.mkdir(parents=True, exist_ok=True)
        gone = trash / f"{key}.{os.getpid()}.{uuid.uuid4().hex}"
        try:
            os.rename(self.root / key, gone)
        except OSError:  # another process evicted it first
            return False
        shutil.rmtree(gone, ignore_errors=True)
        return True

    def _entries(self) -> list["_Entry"]:
        found = []
        try:
            children = list(os.scandir(self.root))
        except OSError:
            return []
        for child in children:
            if not KEY_PATTERN.match(child.name):
                continue
            try:
                used = child.stat().st_mtime
                size = _folder_size(Path(child.path))
            except OSError:
                continue
            found.append(_Entry(child.name, used, size))
        found.sort(key=lambda e: (e.used, e.key))
        return found

    def _clean_stale(self) -> None:
        """Delete what crashed processes left: temporary folders over an hour old, and the trash."""
        now = time.time()
        for folder, max_age in ((self.root / INCOMING, STALE_TEMP_S), (self.root / TRASH, STALE_TEMP_S)):
            try:
                children = list(os.scandir(folder))
            except OSError:
                continue
            for child in children:
                try:
                    if now - child.stat().st_mtime > max_age:
                        shutil.rmtree(child.path, ignore_errors=True)
                except OSError:
                    continue


class _Entry:
    __slots__ = ("key", "used", "size")

    def __init__(self, key: str, used: float, size: int):
        self.key, self.used, self.size = key, used, size


def _inputs_of(record: RunRecord) -> dict[str, Any] | None:
    try:
        settings = Settings.from_dict(record.config.get("settings", {}))
        return key_inputs(settings, device=record.config.get("device") or None)
    except (SettingsError, DataError, TypeError, ValueError):
        return None


def _read_history(path: Path) -> list[tuple[int, str, dict[str, Any]]]:
    data = json.loads(path.read_text())
    maps = []
    for m in data["maps"]:
        grid = {k: v for k, v in m.items() if k not in ("step", "model")}
        maps.append((int(m["step"]), str(m["model"]), grid))
    return maps


def _write_json(path: Path, value: Any, allow_nan: bool = False) -> None:
    path.write_text(json.dumps(value, separators=(",", ":"), allow_nan=allow_nan) + "\n")


def _touch(path: Path) -> None:
    """Mark an entry as just used (its folder's modification time is its recency)."""
    try:
        os.utime(path)
    except OSError:  # evicted meanwhile, or a read-only cache
        pass


def _folder_size(folder: Path) -> int:
    total = 0
    for child in os.scandir(folder):
        if child.is_file(follow_symlinks=False):
            total += child.stat(follow_symlinks=False).st_size
    return total


def _fsync_folder(folder: Path) -> None:
    """Flush the folder's files and the folder itself, so that a rename after a power cut never
    exposes empty files."""
    for child in folder.iterdir():
        _fsync(child)
    _fsync(folder)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
