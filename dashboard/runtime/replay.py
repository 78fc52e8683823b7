"""Run folders written by the CLI (``python -m resnet_core train --out runs/x``), listed for replay.

The page offers the folders found under the runs directory and never takes a free path: a name
picked from the list is resolved again here and refused if it leads outside that directory
(``..``, a symlink elsewhere). Reading it, ``RunRecord.read`` opens only regular files of the folder
itself (no link, pipe or device), at most ``max_file_bytes()`` each, and checks every column; its
messages name the folder as it is listed, not by its place on the server. A replayed config.json
never makes the server read a file: the data set's paths in it are dropped (``settings_of``).
"""
from __future__ import annotations

import os
from pathlib import Path

from resnet_core import config
from resnet_core.data import DATASETS
from resnet_core.records import RecordError, RunRecord
from resnet_core.settings import Settings, SettingsError

from dashboard.text import literal

REPO = Path(__file__).resolve().parents[2]


def runs_dir() -> Path:
    return (config.get("RUNS") or REPO / "runs").resolve()


CACHE_ENTRY = "cache.json"  # what marks a folder of the class's run cache (run_cache.ENTRY_FILE)


def run_folders(root: Path | None = None) -> list[str]:
    """Names of the folders (one level, or two: runs/lesson/seed0) holding a config.json, newest first.
    The class's run cache is never listed (its entries are every session's runs, uploads included;
    ``run_cache``), nor any hidden folder: the runs folder lists what was recorded on purpose."""
    root = root or runs_dir()
    if not root.is_dir():
        return []
    found = [p.parent for p in list(root.glob("*/config.json")) + list(root.glob("*/*/config.json"))]
    found = [p for p in found if _inside(root, p) and not _cached(root, p)]
    found.sort(key=lambda p: (-p.stat().st_mtime, str(p)))
    return [p.relative_to(root).as_posix() for p in found]


def _cached(root: Path, path: Path) -> bool:
    """A run cache's entry, or under a hidden folder (the cache's .incoming, .trash)."""
    parts = path.relative_to(root).parts
    return os.path.lexists(path / CACHE_ENTRY) or any(part.startswith(".") for part in parts)


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def resolve(name: str, root: Path | None = None) -> Path:
    """The folder for a listed name; RecordError for anything else."""
    root = root or runs_dir()
    shown = name if len(name) <= 60 else name[:60] + "…"
    if name not in run_folders(root):
        raise RecordError(f"{shown!r} is not a run folder under the runs folder")
    path = (root / name).resolve()
    if not _inside(root, path):
        raise RecordError(f"{shown!r} is outside the runs folder")
    return path


def max_file_bytes() -> int:
    """RESIDUAL_LAB_REPLAY_MB per file (128 by default: a 1002-layer net probed 2,000 times)."""
    return config.get("REPLAY_MB") * 1024 * 1024


def stamp(path: Path) -> float:
    """Newest modification time among the folder's files (not following links): a re-written run
    is read again."""
    times = []
    for p in path.iterdir():
        try:
            times.append(p.lstat().st_mtime)
        except OSError:
            continue
    return max(times, default=0.0)


def load(name: str, root: Path | None = None) -> RunRecord:
    return RunRecord.read(resolve(name, root), max_bytes=max_file_bytes(), name=name)


def settings_of(record: RunRecord) -> tuple[Settings, str | None]:
    """The settings a run was made with, or the defaults and a note when they cannot be read. The
    data set's file arguments (a CSV's path, CIFAR-10's folder) are never taken from a replayed
    folder: the defaults stand in for them."""
    values = dict(record.config.get("settings", {}))
    try:
        dataset = values.get("dataset", Settings().dataset)
        if dataset not in DATASETS:
            raise SettingsError(f"dataset {str(dataset)[:40]!r} is unknown")
        args = values.get("dataset_args") or {}
        if not isinstance(args, dict):
            raise SettingsError("dataset_args must be an object")
        defaults = DATASETS[dataset].defaults
        values["dataset_args"] = {k: v for k, v in args.items() if k in defaults and not isinstance(defaults[k], str)}
        return Settings.from_dict(values), None
    except (SettingsError, TypeError, ValueError, AttributeError) as exc:
        return Settings(), (f"this run's settings could not be read ({literal(exc)}); "
                            "showing it with the default settings")
