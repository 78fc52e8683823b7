"""One computation, many viewers: this server's runs by key, live or finished.

A run is a pure function of its settings, its seed and the code (``run_keys.run_key``). So the
first session that trains a key trains it for everyone: ``ClassRuns.source(settings)`` hands every
later session with the same key that same ``Run`` while it is in progress (each session follows
it with a cursor of its own, ``cursor.Cursor``), or, once it is finished, a ``Replay`` of it from
the one cache of finished runs (``finished_runs.FinishedRuns``: this process's memory, in front of
the run cache folder, so across server processes and restarts too). A finished run is put there as
it finishes, unless it was changed on the way (the learning-rate slider, a new step count: then it
is no longer a run of its key, and the registry forgets it).

The page marks a session served this way with ``CACHED_NOTICE``. Nothing here calls Streamlit,
and this module imports no torch.
"""
from __future__ import annotations

import threading
import time

from resnet_core.errors import UserError
from resnet_core.settings import Settings

from dashboard.runtime.finished_runs import KEEP_FINISHED, FinishedRuns, whole_run
from dashboard.runtime.run_cache import RunCache
from dashboard.runtime.run_keys import run_key
from dashboard.runtime.runs import Run
from resnet_core.scheduling.scheduler import Scheduler
from dashboard.runtime.source import Replay, Source

CACHED_NOTICE = "from the class's run cache"


class ClassRuns:
    """The runs of one server process by key; see the module's docstring."""

    def __init__(self, scheduler: Scheduler, cache: RunCache | None = None, keep: int = KEEP_FINISHED):
        """``cache``: the run cache folder behind the finished runs kept in memory (``keep`` of them)."""
        self.scheduler = scheduler
        self.finished = FinishedRuns(cache, keep)
        self._lock = threading.Lock()
        self._live: dict[str, Run] = {}
        self.writes: list[threading.Thread] = []  # puts under way (tests wait for them)

    def source(self, settings: Settings, viewer: int | None = None,
               session: str | None = None) -> tuple[Source | None, bool]:
        """What a session that asks for a run of ``settings`` should view: (a run or a replay, whether
        it is new, started for this session). (None, False) for settings without a key: the session
        trains a run of its own, which reports its error if it has one. ``viewer`` (of ``session``)
        joins a live run in the same breath as its key is checked (``Run.join``)."""
        try:
            key = run_key(settings)
        except (UserError, ValueError, OSError):
            return None, False
        with self._lock:
            run = self._live.get(key)
            if run is not None and (run.error is not None or run.closing or run.key != key):
                del self._live[key]
                run = None
            if run is not None and viewer is not None and not run.join(viewer, session, key):
                del self._live[key]  # changed a moment ago: no longer the class's run
                run = None
            if run is not None:
                return run, False
        record = self.finished.get(key)
        if record is not None:
            return Replay(record, key), False
        run = Run(self.scheduler, settings, key=key, on_finish=self._finished_run, on_change=self._forget)
        with self._lock:
            self._live[key] = run
        return run, True

    def _finished_run(self, run: Run) -> None:
        """Called on the scheduler's thread as a run of a key finishes: its whole record is read
        back from the folder it streamed to (every row, not the history kept in memory: a replay is
        then the live run at every step), in the background; until that is done the finished run
        itself serves whoever asks for its key. Then it is kept in memory for the next session, and
        written to the cache folder."""
        key = run.key
        if key is None:
            return
        with self._lock:
            thread = threading.Thread(target=self._keep, args=(key, run), name="rl-run-cache", daemon=True)
            self.writes = [t for t in self.writes if t.is_alive()] + [thread]
        thread.start()

    def _keep(self, key: str, run: Run) -> None:
        record = whole_run(run.record)
        if record is not None:
            self.finished.remember(key, record)  # before the live run is forgotten: no key goes unserved
        with self._lock:
            if self._live.get(key) is run:
                del self._live[key]
        if record is not None:
            self.finished.store(key, record)

    def _forget(self, run: Run) -> None:
        """The run got a change on the way: it is no longer a run of any key."""
        with self._lock:
            for key, live in list(self._live.items()):
                if live is run:
                    del self._live[key]

    def wait_for_writes(self, timeout: float = 30.0) -> None:
        """Until every run that has finished is in the cache folder (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                finishing = any(run.key is not None and run.done for run in self._live.values())
                writing = any(t.is_alive() for t in self.writes)
            if not finishing and not writing:
                return
            time.sleep(0.02)
