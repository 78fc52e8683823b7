"""This server process's own scratch folder: uploads and the files of the runs its sessions train.

One private folder per server process, made by ``tempfile.mkdtemp`` (mode 0700, a fresh random
name after the process id, so no other local user can have made it first or look inside) the first
time it is needed, and removed when the process exits; a process that was killed cannot remove its
own, so the next one to start sweeps those of processes no longer running (``sweep_dead``). Inside: ``uploads/`` (points CSVs, named by their content's
hash) and ``runs/`` (one folder per live run, the tables a run streams as it trains; a session's
folder goes when its run is reset or the session ends).

Nothing here calls Streamlit.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path

from resnet_core import config

_ROOT: Path | None = None
_LOCK = threading.Lock()


PREFIX = "residual-lab-"


def root() -> Path:
    global _ROOT
    with _LOCK:
        if _ROOT is None or not _ROOT.is_dir():
            sweep_dead()
            _ROOT = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
            atexit.register(shutil.rmtree, _ROOT, True)
        return _ROOT


def sweep_dead(folder: Path | None = None) -> list[Path]:
    """Remove the scratch folders of server processes that are gone without cleaning up (kill -9,
    a power cut: ``atexit`` never ran), their uploads and run files (up to 256 MB a session) with
    them. Only folders of this user named for a process id that no longer runs; a folder of a live
    process, another user's, or a link, is left alone. Returns the folders removed."""
    folder = Path(folder or tempfile.gettempdir())
    removed = []
    try:
        children = list(os.scandir(folder))
    except OSError:
        return removed
    for child in children:
        pid = child.name[len(PREFIX):].split("-", 1)[0] if child.name.startswith(PREFIX) else ""
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            info = child.stat(follow_symlinks=False)
        except OSError:
            continue
        if child.is_symlink() or not child.is_dir(follow_symlinks=False) or info.st_uid != os.getuid():
            continue
        shutil.rmtree(child.path, ignore_errors=True)
        removed.append(Path(child.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it runs, as another user
        return True
    return True


def _sub(name: str) -> Path:
    folder = root() / name
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def uploads() -> Path:
    return _sub("uploads")


def new_run_folder() -> Path:
    """A fresh, empty folder for one live run's files."""
    return Path(tempfile.mkdtemp(prefix="run-", dir=_sub("runs")))


def run_files_limit_mb() -> int:
    """A live run's files (what its downloads hold) at most: RESIDUAL_LAB_SESSION_FILES_MB, 256 by default."""
    return config.get("SESSION_FILES_MB")


def private_config(config: dict) -> dict:
    """``config`` with every file argument of its data set (an upload's path on this server, the
    CIFAR-10 folder) cut to the file's own name, in place: a student downloads the run's
    config.json, and no path on the server is any of their business. Returns ``config``."""
    from resnet_core.data import DATASETS

    settings = config.get("settings")
    args = settings.get("dataset_args") if isinstance(settings, dict) else None
    spec = DATASETS.get(settings.get("dataset")) if isinstance(args, dict) else None
    if spec is not None:
        for name, default in spec.defaults.items():
            if isinstance(default, str) and isinstance(args.get(name), str) and args[name]:
                args[name] = Path(args[name]).name
    return config


def stream_run(record):
    """``record`` (a RunRecord) streams its full tables into a fresh folder here from now on, its
    config without the server's paths (``private_config``); returns the record."""
    private_config(record.config)
    record.stream_to(new_run_folder(), max_bytes=run_files_limit_mb() * 1024 * 1024)
    return record


def discard_run(record) -> None:
    """The end of a live run's files (``record``: a RunRecord from ``stream_run``, or None): it stops
    streaming, and its folder goes."""
    if record is not None:
        record.close_stream()
        remove(record.folder)
    return None


def remove(folder: Path | None) -> None:
    """Remove a run folder made here (and nothing outside the scratch folder)."""
    if folder is None or _ROOT is None:
        return
    try:
        Path(folder).resolve().relative_to(_ROOT.resolve())
    except ValueError:
        return
    shutil.rmtree(folder, ignore_errors=True)
