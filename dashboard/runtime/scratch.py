"""This server process's own scratch folder: uploads and the files of the runs its sessions train.

One private folder per server process, made by ``tempfile.mkdtemp`` (mode 0700, a fresh random
name, so no other local user can have made it first or look inside) the first time it is needed,
and removed when the process exits. Inside: ``uploads/`` (points CSVs, named by their content's
hash) and ``runs/`` (one folder per live run, the tables a run streams as it trains; a session's
folder goes when its run is reset or the session ends).

Nothing here calls Streamlit.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

_ROOT: Path | None = None
_LOCK = threading.Lock()


def root() -> Path:
    global _ROOT
    with _LOCK:
        if _ROOT is None or not _ROOT.is_dir():
            _ROOT = Path(tempfile.mkdtemp(prefix="residual-lab-"))
            atexit.register(shutil.rmtree, _ROOT, True)
        return _ROOT


def _sub(name: str) -> Path:
    folder = root() / name
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def uploads() -> Path:
    return _sub("uploads")


def new_run_folder() -> Path:
    """A fresh, empty folder for one live run's files."""
    return Path(tempfile.mkdtemp(prefix="run-", dir=_sub("runs")))


def remove(folder: Path | None) -> None:
    """Remove a run folder made here (and nothing outside the scratch folder)."""
    if folder is None or _ROOT is None:
        return
    try:
        Path(folder).resolve().relative_to(_ROOT.resolve())
    except ValueError:
        return
    shutil.rmtree(folder, ignore_errors=True)
