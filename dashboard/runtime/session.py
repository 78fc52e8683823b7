"""Training for the dashboard: one ``Session`` per browser session, viewing a run.

A ``Run`` (``runs.py``) is one computation: a trainer for some settings, living in one of the
server's worker processes, and the ``RunRecord`` it fills, stepped at its turns on the server's
``Scheduler`` while a session viewing it wants it further. With ``ClassRuns`` (``class_runs.py``)
sessions with the same settings share one: the first to train a key trains it, the others follow
it, or replay it once it is finished (a ``Replay``, ``source.py``). Either is a ``Source``.

A ``Session`` is a browser session's side: its settings, the buttons it pressed, its errors, and
what it composes of them: a ``Cursor`` (``cursor.py``) on the source it views, the step it shows,
and while a change it asked for is being made, a ``Fork`` (``fork.py``): a change of the learning
rate or the step count on a run others share (or on a replay) makes a run of this session's own,
replayed to the cursor's step and changed there; meanwhile the page stays at that step. The
session's ``owner`` is its browser session (the page's id), whose share of the processes pays for
the runs it alone views (``scheduler``, ``runs``).

Methods are called from script threads; they change the session's wishes at once and leave the work
to the runs' turns, so a slow process never blocks the page. The settings it is given are the
page's, checked there (``Settings.checked``, the one check on the dashboard's side): trusted here.
Nothing here calls Streamlit: ``app.py`` wires these objects into ``st.cache_resource``.
"""
from __future__ import annotations

import itertools
import threading
import time
import weakref
from typing import Any

from resnet_core.remote.worker_process import REMOTE_METHODS
from resnet_core.settings import Settings

import dashboard.runtime.clients as clients
from dashboard.runtime.class_runs import ClassRuns
from dashboard.runtime.cursor import Cursor
from dashboard.runtime.fork import Fork
from dashboard.runtime.run_viewers import END, _Request
from dashboard.runtime.runs import Run
from resnet_core.scheduling.scheduler import Scheduler, SchedulerClosed, SchedulerFull
from dashboard.runtime.session_status import LIVE_FIELDS, SessionError, SessionStatus, needs_reset, slowed
from dashboard.runtime.source import Source

REQUEST_TIMEOUT_S = 120.0

_OPEN_SESSIONS: "weakref.WeakSet[Session]" = weakref.WeakSet()
_viewer_ids = itertools.count(1)


def stop_all_sessions() -> None:
    """Stop every session of this process (tests and benchmarks; sessions stop their own on release)."""
    for session in list(_OPEN_SESSIONS):
        session.stop(wait=True)


class Session:
    """One browser session's training: what it asked for, and its cursor on the run it views."""

    def __init__(self, scheduler: Scheduler, settings: Settings | None = None, runs: ClassRuns | None = None,
                 owner: str | None = None, client: str | None = None):
        """``client``: the computer the session's tab is on (its address), whose tabs may train at
        most ``clients.runs_per_client()`` runs at once."""
        self.scheduler, self.runs, self.owner, self.client = scheduler, runs, owner, client
        self._refused: str | None = None  # the server's limit that refused the last Train (not sticky)
        self.id = next(_viewer_ids)
        self._lock = threading.Lock()
        self._settings = settings or Settings()
        self._stopped = False
        self._error: str | None = None
        self._cursor: Cursor | None = None  # on the source viewed: None until the first Train or Step
        self._fork: Fork | None = None      # a change on its way (the page stays at its step meanwhile)
        _OPEN_SESSIONS.add(self)

    # ---- commands (any thread) -----------------------------------------------------------------
    def train(self) -> None:
        crowded = clients.crowded(self, list(_OPEN_SESSIONS))  # before our own lock: other tabs take theirs
        with self._lock:
            if crowded is not None:
                self._refused = crowded
                return
            source = self._attach()
            if source is None:
                return
            self._sync()
            self._cursor.play(time.monotonic())
            target = self._fork.run if self._fork is not None else source
        target.want(self.id, END, self.owner)

    def pause(self) -> None:
        with self._lock:
            cursor, fork = self._cursor, self._fork
            if cursor is None:
                return
            source = cursor.source
            self._sync()
            cursor.hold()
            at_head = fork is None and source.live and cursor.glued and source.step == cursor.step
        if fork is None:
            source.want(self.id, cursor.goal, self.owner)
        else:
            fork.run.want(self.id, max(cursor.goal, fork.step), self.owner)
        if at_head:
            source.push(("regions",))  # a paused class looks at the models as they are now

    def step(self, n: int = 1) -> None:
        with self._lock:
            source = self._attach()
            if source is None:
                return
            self._sync()
            self._cursor.forward(n)
            self._sync()
            goal, target = self._cursor.goal, self._fork.run if self._fork is not None else source
        target.want(self.id, goal, self.owner)

    def reset(self, settings: Settings | None = None) -> None:
        with self._lock:
            cursor, fork = self._cursor, self._fork
            self._cursor = self._fork = None
            self._error = None
            if settings is not None:
                self._settings = settings
        for run in (cursor.source if cursor else None, fork.run if fork else None):
            if run is not None:
                run.want(self.id, None)

    def update_settings(self, settings: Settings) -> str:
        """Apply the page's new settings: 'reset' when a model changes (the run restarts), 'live' when
        only the learning rate or the step count moved (applied at the next step), '' when nothing
        changed. A live change is made to the run in place where this session has it to itself at
        its head; else a fork of its own is made at the cursor's step (``fork.py``)."""
        with self._lock:
            current, viewing = self._settings, self._cursor is not None
            if settings == current:
                return ""
            self._settings = settings
        if needs_reset(current, settings):
            self.reset(settings)
            return "reset" if viewing else "changed"
        changes = [(name, getattr(settings, name)) for name in LIVE_FIELDS
                   if getattr(settings, name) != getattr(current, name)]
        with self._lock:
            self._sync()
            cursor, fork = self._cursor, self._fork
            if cursor is None:
                return "live"
            if fork is not None:  # still on its way to the cursor: more changes to make there
                for name, value in changes:
                    fork.change(name, value)
                return "live"
            source, playing = cursor.source, cursor.playing
            in_place = self._alone_at_head() and source.take_out_of_class(self.id)
            if not in_place:
                self._fork = Fork(self.scheduler, source, cursor.step, changes, cursor.goal, self.id, self.owner)
        if in_place:
            for change in changes:
                source.push(change)
            if playing:
                source.want(self.id, END, self.owner)
        return "live"

    def request(self, method: str, **kwargs: Any) -> None:
        """Run one of ``REMOTE_METHODS`` on the trained models (in the worker) at the step shown and
        wait for it; what it records appears in this session's record. Raises SessionError."""
        if method not in REMOTE_METHODS:
            raise SessionError(f"unknown analysis {method!r}; available: {', '.join(REMOTE_METHODS)}")
        with self._lock:
            self._sync()
            cursor = self._cursor
            source = cursor.source if cursor is not None else None
            if source is None or source.record is None or source.error is not None:
                raise SessionError("there is no trained model in this session yet: press Train or Step first")
            if self._fork is not None:
                run = self._fork.run
            elif self._alone_at_head():
                run = source
            else:  # another session's run, or a replay: a run of our own at this step answers it
                self._fork = Fork(self.scheduler, source, cursor.step, [], cursor.goal, self.id, self.owner)
                run = self._fork.run
        req = _Request(method, kwargs)
        run.push(req)
        if not req.done.wait(REQUEST_TIMEOUT_S):
            raise SessionError(f"{method} took longer than {REQUEST_TIMEOUT_S:.0f} s")
        if req.error:
            raise SessionError(req.error)
        with self._lock:
            if self._cursor is not None:
                self._cursor.record_changed()  # the record has something new to show

    def settle(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until what was just asked is carried out: the step shown moved,
        or nothing is left to do. A click's own script run then shows it."""
        start = self.status().step
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.status()
            if s.step > start or not s.pending or s.error:
                return
            time.sleep(0.02)

    def stop(self, wait: bool = False) -> None:
        """The session has gone: its runs leave their processes at their next turns (unless others
        watch them). Called (through ``on_release``) a few seconds after the tab closes."""
        with self._lock:
            self._stopped = True
        self.reset()
        _OPEN_SESSIONS.discard(self)

    def training(self) -> bool:
        """Whether this tab is training a run now (playing, not finished, not failed): what counts
        against its computer's limit. Read without the lock: a moment's staleness costs nothing."""
        cursor, fork = self._cursor, self._fork
        if cursor is None:
            return False
        run = fork.run if fork is not None else cursor.source
        return cursor.playing and run.live and run.error is None and not run.done

    # ---- under self._lock ----------------------------------------------------------------------
    def _attach(self) -> Source | None:
        """The source this session views, found or started on its first Train or Step."""
        self._refused = None  # the server's limits are asked again at each Train or Step
        if self._stopped or self._error is not None:
            return None
        if self._cursor is not None:
            source = self._cursor.source
            source.retry()
            return None if source.error is not None else source
        source, created = self.runs.source(self._settings, self.id, self.owner) if self.runs is not None else (None, False)
        if source is None:
            source, created = Run(self.scheduler, self._settings), True
        if created:
            try:
                self.scheduler.add(source)
            except SchedulerClosed as exc:
                self._error = str(exc)
                return None
            except SchedulerFull as exc:
                source.close()  # never started: nobody else is handed it either
                self._refused = str(exc)
                return None
        self._cursor = Cursor(source, own=created)
        return source

    def _alone_at_head(self) -> bool:
        """Changing the source in place is this session's business alone."""
        return self._cursor.at_head() and self._cursor.source.alone(self.id)

    def _sync(self) -> None:
        """Move the cursor to where it is by now, and go on in a fork that has caught up."""
        now = time.monotonic()
        fork = self._fork
        if fork is not None:
            if not fork.caught_up():
                return  # the page stays at the step it forked at meanwhile
            self._cursor.take_over(fork.run, now)
            self._fork = None
        if self._cursor is not None:
            self._cursor.sync(now)

    # ---- reading (any thread) ------------------------------------------------------------------
    def status(self) -> SessionStatus:
        with self._lock:
            self._sync()
            cursor, fork, settings = self._cursor, self._fork, self._settings
            source = cursor.source if cursor is not None else None
            error = self._error or self._refused or (source.error if source is not None else None) or (
                fork.run.error if fork is not None else None)
            if cursor is None:
                return SessionStatus("error" if error else "idle", 0, settings.steps, None, settings, error)
            record, step, glued, playing = cursor.record(), cursor.step, cursor.glued, cursor.playing
            with source.lock:
                head, done, control = source.step, source.done, bool(source.control) and cursor.own
                rebuilding = glued and source.behind and (cursor.goal > head or control)
                status = dict(source.status) if glued else {}
                diverged = dict(source.diverged_at) if glued else {}
                busy = source.busy and glued
                later = source.later and glued  # step 0's analyses are on their way
            finished = done and step >= head
            pending = error is None and (fork is not None or control or later or (cursor.goal > step and not finished))
            rate = None
            if playing and not finished:
                rate = source.steps_per_s() if glued else cursor.steps_per_s()
            cached = not cursor.own
        if error is not None:
            state = "error"
        elif fork is not None or rebuilding:
            state = "starting"
        elif record is None:
            state = "starting" if pending else "idle"
        elif finished:
            state = "done"
        else:
            state = "training" if playing or busy else "paused"
        return SessionStatus(state, step, settings.steps, record, settings, error, None, status, diverged,
                             pending, rate if state == "training" else None, fork is not None or rebuilding, cached,
                             slowed(source.step_s) if glued else None)

    @property
    def settings(self) -> Settings:
        with self._lock:
            return self._settings

    @property
    def source(self) -> Source | None:
        """What this session views now (tests, benchmarks): a run, a replay, or None before Train."""
        with self._lock:
            return self._cursor.source if self._cursor is not None else None

    @property
    def alive(self) -> bool:
        with self._lock:
            return not self._stopped

    @property
    def pid(self) -> int | None:
        """The worker process this session's run lives in (tests, benchmarks)."""
        with self._lock:
            run = self._fork.run if self._fork is not None else self._cursor.source if self._cursor else None
        return run.host_pid if run is not None else None
