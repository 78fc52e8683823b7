"""Run folders written by the CLI (``python -m resnet_core train --out runs/x``), listed for replay.

The page offers the folders found under the runs directory and never takes a free path: a name
picked from the list is resolved again here and refused if it leads outside that directory
(``..``, a symlink elsewhere).
"""
from __future__ import annotations

import os
from pathlib import Path

from resnet_core.records import RecordError, RunRecord
from resnet_core.settings import Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]


def runs_dir() -> Path:
    return Path(os.environ.get("RESIDUAL_LAB_RUNS") or REPO / "runs").resolve()


def run_folders(root: Path | None = None) -> list[str]:
    """Names of the folders (one level, or two: runs/lesson/seed0) holding a config.json, newest first."""
    root = root or runs_dir()
    if not root.is_dir():
        return []
    found = [p.parent for p in list(root.glob("*/config.json")) + list(root.glob("*/*/config.json"))]
    found = [p for p in found if _inside(root, p)]
    found.sort(key=lambda p: (-p.stat().st_mtime, str(p)))
    return [p.relative_to(root).as_posix() for p in found]


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def resolve(name: str, root: Path | None = None) -> Path:
    """The folder for a listed name; RecordError for anything else."""
    root = root or runs_dir()
    if name not in run_folders(root):
        raise RecordError(f"{name!r} is not a run folder under {root}")
    path = (root / name).resolve()
    if not _inside(root, path):
        raise RecordError(f"{name!r} is outside the runs folder")
    return path


def stamp(path: Path) -> float:
    """Newest modification time among the folder's files: a re-written run is read again."""
    return max((p.stat().st_mtime for p in path.iterdir() if p.is_file()), default=0.0)


def load(name: str, root: Path | None = None) -> RunRecord:
    return RunRecord.read(resolve(name, root))


def settings_of(record: RunRecord) -> tuple[Settings, str | None]:
    """The settings a run was made with, or the defaults and a note when they cannot be read."""
    try:
        return Settings.from_dict(record.config.get("settings", {})), None
    except (SettingsError, TypeError) as exc:
        return Settings(), f"this run's settings could not be read ({exc}); showing it with the default settings"
