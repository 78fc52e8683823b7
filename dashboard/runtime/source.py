"""What a session views: a ``Source``, either a live ``Run`` (``runs.py``: a computation that can
train further) or a ``Replay`` (a finished run from the run cache: nothing to compute, only to show).

A session's cursor (``cursor.py``) and the session itself (``session.py``) ask every source the same
questions and never which kind it is: ``live`` says whether it can train further, and a replay
answers the rest as a finished run would (it wants nothing, takes no change, has no process).

Nothing here calls Streamlit, and this module imports no torch.
"""
from __future__ import annotations

import threading
from typing import Any, Protocol

from resnet_core.records import RunRecord
from resnet_core.settings import Settings

from dashboard.runtime.record_at import Views


class Source(Protocol):
    """The interface a viewer needs of what it views. Fields are read under ``lock``."""

    live: bool                                # it can train further (a Run); False: a finished replay
    lock: threading.Lock
    key: str | None                           # the run cache's key while it is a run of one
    settings: Settings                        # as they are now
    initial: Settings                         # as it began: with ``changes``, what it is a function of
    changes: list[tuple[int, str, Any]]       # (step, "lr" | "steps", value), made on the way
    record: RunRecord | None
    step: int                                 # its head: the latest step recorded
    error: str | None
    status: dict[str, str]                    # model -> ok | diverged
    diverged_at: dict[str, int]
    busy: bool                                # a turn is under way: the step may still move
    later: bool                               # step 0's analyses are held back for a turn (turns.py)
    control: Any                              # what is still to be carried out between steps
    pause_maps: tuple[int, dict[str, Any]] | None  # (step, maps) drawn at a Pause
    views: Views                              # its record as it stood at a step, per step
    step_s: float                             # the process's time its last step took

    @property
    def done(self) -> bool: ...

    @property
    def behind(self) -> bool:
        """Its models in their process are behind its head (dropped, or being rebuilt to it)."""

    @property
    def host_pid(self) -> int | None:
        """The worker process it trains in, if any."""

    def want(self, viewer: int, step: int | None, session: str | None = None) -> None: ...

    def push(self, item: Any) -> None: ...

    def retry(self) -> None:
        """Train pressed again after the server's limits refused it."""

    def alone(self, viewer: int) -> bool:
        """Whether ``viewer`` is its only viewer, so that it may change it in place."""

    def take_out_of_class(self, viewer: int) -> bool: ...

    def steps_per_s(self) -> float | None: ...


class Replay:
    """A finished run from memory or the cache folder (``finished_runs``): a ``Source`` with nothing
    to compute. It wants nothing and takes no change (a viewer changing it forks a live run)."""

    live = False
    error: str | None = None
    busy = False
    later = False
    behind = False
    host_pid = None
    pause_maps = None
    control: tuple = ()
    done = True
    step_s = 0.0

    def __init__(self, record: RunRecord, key: str):
        self.record, self.key = record, key
        self.lock = threading.Lock()
        self.settings = self.initial = Settings.from_dict(record.config["settings"])
        self.changes: list[tuple[int, str, Any]] = []
        self.step = record.latest_step()
        metrics = record.metrics_frame()
        self.status = {m: ("diverged" if (metrics[metrics.model == m].status == "diverged").any() else "ok")
                       for m in record.models()}
        self.diverged_at: dict[str, int] = {}
        self.views = Views()

    def want(self, viewer: int, step: int | None, session: str | None = None) -> None:
        """A finished run goes nowhere: viewers move through what it recorded."""

    def push(self, item: Any) -> None:
        """Nothing to carry out (a Pause's maps, a change: the viewer forks a live run instead)."""

    def retry(self) -> None:
        """Nothing was refused: a replay needs no process."""

    def alone(self, viewer: int) -> bool:
        return False  # a finished run is nobody's to change: a change forks

    def take_out_of_class(self, viewer: int) -> bool:
        return False

    def steps_per_s(self) -> float | None:
        return None
