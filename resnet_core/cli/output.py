"""Where the commands write, so that ``--out`` never destroys anything.

A run is written into a fresh folder beside the target (``NAME.partial-XXXXXX``, made by
``tempfile.mkdtemp``), its tables streamed there as it trains, and moved into place only when it is
complete. So:

- a folder that holds anything but a run (a user's own config.json, notes, data) is refused, with
  or without ``--overwrite``: nothing of theirs is ever replaced;
- a folder that holds a run is refused without ``--overwrite``; with it, the whole earlier run
  goes (an old paths.csv or regions.csv can never be replayed as this run's);
- a run that stops half way (an error, Ctrl-C, a kill) leaves the target as it was, and what it
  trained in the partial folder, which is itself a run folder that ``RunRecord.read`` and the
  dashboard's replay can open.

The sweep writes one file, ``sweep.csv``: ``SweepFile`` applies the same rules to it and replaces it
atomically each time a run finishes.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from resnet_core.records import RUN_FILES
from resnet_core.settings import SettingsError


def _listing(path: Path) -> list[str]:
    try:
        return sorted(p.name for p in path.iterdir())
    except OSError as exc:
        raise SettingsError(f"--out {path}: cannot look inside it ({exc.strerror or exc})") from None


def _shown(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def is_run_folder(path: Path) -> bool:
    """What this project writes: a config.json describing a run, its metrics and layers, and no
    file a run does not write."""
    names = set(_listing(path))
    if not {"config.json", "metrics.csv", "layers.csv"} <= names or names - set(RUN_FILES):
        return False
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8")[:1 << 20])
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get("settings"), dict) and "models" in config


class RunFolder:
    """The target of ``--out``, checked now and written through a partial folder beside it."""

    def __init__(self, out: str | os.PathLike, overwrite: bool):
        self.target = Path(out)
        self.partial: Path | None = None
        self.replace = False
        target = self.target
        if target.is_symlink() and not target.exists():
            raise SettingsError(f"--out {out} is a broken link; give a folder for the run")
        if target.is_symlink():
            # A link to a folder: the run goes into that folder (its partial folder beside it, where
            # the final rename can reach), and the link is left as it was, leading to the run.
            target = self.target = target.resolve()
        if target.exists() and not target.is_dir():
            raise SettingsError(f"--out {out} is a file; give a folder for the run")
        if target.is_dir():
            names = _listing(target)
            if names:
                extras = [n for n in names if n not in RUN_FILES]
                if extras:
                    raise SettingsError(f"--out {out} holds files a run does not write ({_shown(extras)}); give a new "
                                        "or empty folder (--overwrite only ever replaces a run)")
                if not is_run_folder(target):
                    raise SettingsError(f"--out {out} holds files that are not a run ({_shown(names)}); give a new "
                                        "or empty folder (--overwrite only ever replaces a run)")
                if not overwrite:
                    raise SettingsError(f"--out {out} already holds a run; choose another folder or pass --overwrite")
                self.replace = True

    def start(self) -> Path:
        """The partial folder the run is written into (after every check has passed)."""
        parent = self.target.parent
        parent.mkdir(parents=True, exist_ok=True)
        self.partial = Path(tempfile.mkdtemp(prefix=f"{self.target.name}.partial-", dir=parent))
        return self.partial

    def commit(self) -> Path:
        """Move the complete run into place (replacing the earlier run where --overwrite allowed it)."""
        assert self.partial is not None
        old = None
        if self.target.is_dir() and _listing(self.target):
            if not (self.replace and is_run_folder(self.target)):  # something arrived meanwhile
                raise SettingsError(f"--out {self.target} was filled while the run trained; this run is in "
                                    f"{self.partial}")
            old = Path(tempfile.mkdtemp(prefix=f"{self.target.name}.old-", dir=self.target.parent))
            os.replace(self.target, old / "run")
        elif self.target.is_dir():
            self.target.rmdir()
        os.replace(self.partial, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.partial = None
        return self.target

    def abandon(self, why: str) -> None:
        """The run stopped: say where what it trained is (the target is untouched)."""
        if self.partial is not None and self.partial.exists():
            print(f"{why}: what was trained is in {self.partial}/ (--out {self.target} is unchanged)", file=sys.stderr)


class SweepFile:
    """``--out DIR`` of the sweep: DIR/sweep.csv, refused where DIR holds anything else, rewritten
    atomically (a temporary file beside it, then a rename) as each run finishes."""

    def __init__(self, out: str | os.PathLike, overwrite: bool):
        self.folder = Path(out)
        if self.folder.exists() and not self.folder.is_dir():
            raise SettingsError(f"--out {out} is a file; give a folder for sweep.csv")
        if self.folder.is_dir():
            names = _listing(self.folder)
            others = [n for n in names if n != "sweep.csv"]
            if others:
                raise SettingsError(f"--out {out} holds other files ({_shown(others)}); give a new or empty folder "
                                    "for sweep.csv")
            if names and not overwrite:
                raise SettingsError(f"--out {out} already holds a sweep.csv; choose another folder or pass --overwrite")
        self.path = self.folder / "sweep.csv"

    def write(self, frame) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".sweep-", suffix=".csv", dir=self.folder)
        try:
            with os.fdopen(fd, "w", newline="") as f:
                frame.to_csv(f, index=False)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.path
