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

import json
import math
import os
import shutil
import stat
import time
import uuid
from pathlib import Path
from typing import Any

from dashboard.runtime.run_keys import (KEY_PATTERN, auto_device, code_digest, code_versions, dataset_identity,
                                        device_kind, key_inputs, record_key, run_key)
from dashboard.runtime.record_at import FullRecord, finished, full_record, lineage, metrics_key, record_until
from dashboard.runtime.replay import CACHE_ENTRY, max_file_bytes
from resnet_core import config
from resnet_core.data import DataError
from resnet_core.records import RecordError, RunRecord
from resnet_core.settings import Settings, SettingsError

__all__ = ["RunCache", "FullRecord", "full_record", "record_until", "metrics_key", "lineage", "finished", "run_key", "record_key", "key_inputs", "code_versions",
           "code_digest", "dataset_identity", "device_kind", "auto_device", "cache_dir", "cache_limit_mb"]

REPO = Path(__file__).resolve().parents[2]
CACHE_ENV = config.env_name("RUN_CACHE")
LIMIT_ENV = config.env_name("RUN_CACHE_MB")
HISTORY_FILE = "regions_history.json"
ENTRY_FILE = CACHE_ENTRY  # written last: what makes a folder an entry (and keeps it off the replay list)
INCOMING, TRASH = ".incoming", ".trash"
STALE_TEMP_S = 3600.0  # a temporary folder this old was left by a process that died while writing


# ------------------------------------------------------------------------------------ the cache

def cache_dir() -> Path:
    return config.get("RUN_CACHE") or REPO / "runs" / "cache"


def cache_limit_mb() -> float:
    return config.get("RUN_CACHE_MB")


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
        limit = max_file_bytes()
        try:
            before = entry.stat().st_ino
            meta = json.loads(_read_text(entry / ENTRY_FILE, limit))
            files = meta.get("files", []) if isinstance(meta, dict) else None
            if not isinstance(files, list) or meta.get("key") != key or not all(
                    isinstance(name, str) and (entry / name).is_file() for name in files):
                return None
            # Every file is checked as a replayed folder's is (columns, types, links, size limits),
            # and the record must be a run of the key it is stored under: an entry copied or
            # written under another key is not served for it.
            record = FullRecord.read(entry, max_bytes=limit)
            if record_key(record) != key or not finished(record):
                return None
            if (entry / HISTORY_FILE).is_file():
                record.set_region_history(_read_history(entry / HISTORY_FILE, record, limit))
            if entry.stat().st_ino != before:  # evicted (and perhaps put again) while being read
                return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, RecordError):
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
        record = full_record(record)  # the streamed folder, every row: not the history kept in memory
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


def _read_text(path: Path, limit: int) -> str:
    """A regular file of an entry (no link, no pipe), at most ``limit`` bytes; ValueError else."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        raise ValueError(f"{path.name} is not a regular file within the replay limit")
    return path.read_text()


def _read_history(path: Path, record: RunRecord, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
    """Every decision map of a stored run, each checked: a step, one of the run's models, and a
    square grid of class numbers and confidences. ValueError for anything else."""
    data = json.loads(_read_text(path, limit))
    if not isinstance(data, dict) or not isinstance(data.get("maps"), list):
        raise ValueError("regions_history.json holds no list of maps")
    models, classes = set(record.models()), int(record.config.get("dataset", {}).get("classes", 0))
    maps = []
    for m in data["maps"]:
        if not isinstance(m, dict) or m.get("model") not in models:
            raise ValueError("a decision map of regions_history.json names no model of the run")
        step, n = m.get("step"), m.get("n")
        cells = [m.get("classes"), m.get("confidence")]
        if not (isinstance(step, int) and step >= 0 and isinstance(n, int) and 1 < n <= 512
                and all(isinstance(c, list) and len(c) == n * n for c in cells)
                and all(isinstance(v, int) and 0 <= v < max(classes, 1) for v in cells[0])
                and all(v is None or (isinstance(v, (int, float)) and (v != v or 0 <= v <= 1)) for v in cells[1])
                and all(_span(m.get(axis)) for axis in ("x", "y"))):
            raise ValueError("a decision map of regions_history.json is not a square grid of classes and confidences")
        maps.append((step, m["model"], {k: v for k, v in m.items() if k not in ("step", "model")}))
    return maps


def _span(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value))


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
