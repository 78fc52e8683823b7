"""Training for the dashboard: one ``TrainingJob`` per browser session, each viewing a ``Run``.

A ``Run`` (``dashboard.runtime.runs``) is one computation: a trainer for some settings, living in
one of the server's worker processes, and the ``RunRecord`` it fills, stepped at its turns on the
server's ``Scheduler`` while a session viewing it wants it further.

A ``TrainingJob`` is a session's side: its settings, the buttons it pressed, the step it shows,
and its errors. Its methods are called from script threads; they change the job's wishes at
once and leave the work to the run's turns, so a slow process never blocks the page. The page
reads ``job.status()`` and the thread-safe ``RunRecord``.

Nothing here calls Streamlit: ``app.py`` wires these objects into ``st.cache_resource``.
"""
from __future__ import annotations

import itertools
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from resnet_core.remote.trainer import REMOTE_METHODS
from resnet_core.records import RunRecord
from resnet_core.settings import Settings

from dashboard.runtime.runs import END, Run, _Request
from dashboard.runtime.scheduler import Scheduler, SchedulerClosed

REQUEST_TIMEOUT_S = 120.0

# Settings whose change leaves the models as they are: everything else asks for a reset.
LIVE_FIELDS = ("lr", "steps")


def needs_reset(old: Settings, new: Settings) -> bool:
    """True when ``new`` changes a model, the data or the training recipe, not just lr or steps."""
    a, b = old.to_dict(), new.to_dict()
    return any(a[k] != b[k] for k in a if k not in LIVE_FIELDS)


class JobError(RuntimeError):
    """A request the job cannot serve (no trained model, an unknown method, a failure in the worker)."""


# ------------------------------------------------------------------------------------------- job
@dataclass(frozen=True)
class JobStatus:
    """What the page shows; a copy, so it can be read without any lock."""

    state: str                    # idle | starting | training | paused | done | error
    step: int
    steps: int
    record: RunRecord | None
    settings: Settings
    error: str | None = None
    notice: str | None = None     # one-off information
    model_status: dict[str, str] = field(default_factory=dict)
    diverged_at: dict[str, int] = field(default_factory=dict)
    pending: bool = False         # a command not yet carried out: the page keeps polling
    steps_per_s: float | None = None
    rebuilding: bool = False      # the models are being rebuilt up to the step shown


_LIVE_JOBS: "weakref.WeakSet[TrainingJob]" = weakref.WeakSet()
_viewer_ids = itertools.count(1)


def stop_all_jobs() -> None:
    """Stop every job of this process (tests and benchmarks; sessions stop their own on release)."""
    for job in list(_LIVE_JOBS):
        job.stop(wait=True)


class TrainingJob:
    """One session's training: what it asked for, and the run it views."""

    def __init__(self, scheduler: Scheduler, settings: Settings | None = None):
        self.scheduler = scheduler
        self.id = next(_viewer_ids)
        self._lock = threading.Lock()
        self._settings = (settings or Settings()).checked()
        self._run: Run | None = None
        self._running = False
        self._error: str | None = None
        self._notice: str | None = None
        self._stopped = False
        _LIVE_JOBS.add(self)

    # ---- commands (any thread) -----------------------------------------------------------------
    def train(self) -> None:
        run = self._ensure_run()
        if run is None:
            return
        with self._lock:
            self._running = True
        run.want(self.id, END)

    def pause(self) -> None:
        with self._lock:
            self._running = False
            run = self._run
        if run is not None:
            run.want(self.id, run.step)
            run.push(("regions",))  # a paused class looks at the models as they are now

    def step(self, n: int = 1) -> None:
        run = self._ensure_run()
        if run is None:
            return
        with self._lock:
            self._running = False
        run.want(self.id, run.step + int(n))

    def reset(self, settings: Settings | None = None) -> None:
        with self._lock:
            run, self._run = self._run, None
            self._running, self._error = False, None
            if settings is not None:
                self._settings = settings.checked()
        if run is not None:
            run.want(self.id, None)

    def update_settings(self, settings: Settings) -> str:
        """Apply new settings: 'reset' when a model changes (the run restarts), 'live' when only the
        learning rate or the step count moved (applied at the next step), '' when nothing changed."""
        settings = settings.checked()
        with self._lock:
            current, run = self._settings, self._run
            if settings == current:
                return ""
            reset = needs_reset(current, settings)
            self._settings = settings
        if reset:
            self.reset(settings)
            return "reset" if run is not None else "changed"
        if run is not None:
            for name in LIVE_FIELDS:
                if getattr(settings, name) != getattr(current, name):
                    run.push((name, getattr(settings, name)))
        return "live"

    def request(self, method: str, **kwargs: Any) -> None:
        """Run one of ``REMOTE_METHODS`` on the trained models (in the worker) between steps and wait
        for it; what it records appears in the run's record. Raises JobError with a message."""
        if method not in REMOTE_METHODS:
            raise JobError(f"unknown analysis {method!r}; available: {', '.join(REMOTE_METHODS)}")
        with self._lock:
            run = self._run
        if run is None or run.record is None or run.error is not None:
            raise JobError("there is no trained model in this session yet: press Train or Step first")
        req = _Request(method, kwargs)
        run.push(req)
        if not req.done.wait(REQUEST_TIMEOUT_S):
            raise JobError(f"{method} took longer than {REQUEST_TIMEOUT_S:.0f} s")
        if req.error:
            raise JobError(req.error)

    def settle(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until the run has carried out what was just asked of it: its
        first step is taken, or it has nothing left to do. A click's own script run then shows it."""
        with self._lock:
            run = self._run
        if run is None:
            return
        deadline = time.monotonic() + timeout
        with run.lock:
            start = run.step

            def settled() -> bool:
                wanted = run.targets.get(self.id, 0)
                moved = run.record is not None and run.step > start
                idle = wanted <= run.step and not run.control and not run.busy
                return moved or run.error is not None or idle or run.closing

            while not settled():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                run.moved.wait(left)

    def stop(self, wait: bool = False) -> None:
        """The session has gone: its run leaves its process at its next turn. Called (through
        ``on_release``) a few seconds after the tab closes, from Streamlit's own thread."""
        with self._lock:
            self._stopped = True
        self.reset()
        _LIVE_JOBS.discard(self)

    def _ensure_run(self) -> Run | None:
        with self._lock:
            if self._stopped or self._error is not None:
                return None
            if self._run is not None:
                if self._run.error is not None:
                    return None  # the page says "press Reset": it would fail again
                return self._run
            run = self._run = Run(self.scheduler, self._settings)
        try:
            self.scheduler.add(run)
        except SchedulerClosed as exc:
            with self._lock:
                self._error = str(exc)
            return None
        return run

    # ---- reading (any thread) ------------------------------------------------------------------
    def status(self) -> JobStatus:
        with self._lock:
            run, settings, running = self._run, self._settings, self._running
            notice, self._notice = self._notice, None
            own_error = self._error
        if run is None:
            return JobStatus("error" if own_error else "idle", 0, settings.steps, None, settings, own_error, notice)
        with run.lock:
            record, step, error, done = run.record, run.step, run.error, run.done
            wanted = run.targets.get(self.id, 0)
            pending = error is None and (bool(run.control) or (wanted > step and not done))
            rebuilding = pending and record is not None and step > 0 and (not run.built or run.trainer_step < step)
            status, diverged = dict(run.status), dict(run.diverged_at)
            moving = running or run.busy
        if error is not None:
            state = "error"
        elif record is None:
            state = "starting" if pending else "idle"
        elif done:
            state = "done"
        elif rebuilding:
            state = "starting"
        else:
            state = "training" if moving else "paused"
        rate = run.steps_per_s() if state == "training" else None
        return JobStatus(state, step, settings.steps, record, settings, error, notice, status, diverged,
                         pending, rate, rebuilding)

    @property
    def settings(self) -> Settings:
        with self._lock:
            return self._settings

    @property
    def alive(self) -> bool:
        with self._lock:
            return not self._stopped

    @property
    def pid(self) -> int | None:
        """The worker process this session's run lives in (tests, benchmarks)."""
        with self._lock:
            run = self._run
        return run.host.pid if run is not None and run.host is not None else None
