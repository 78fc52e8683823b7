"""Training for the dashboard: one ``TrainingJob`` per browser session, each viewing a run.

A ``Run`` (``dashboard.runtime.runs``) is one computation: a trainer for some settings, living in
one of the server's worker processes, and the ``RunRecord`` it fills, stepped at its turns on the
server's ``Scheduler`` while a session viewing it wants it further. With ``ClassRuns``
(``dashboard.runtime.class_runs``) sessions with the same settings share one: the first to train a
key trains it, the others follow it, or replay it once it is finished (from the run cache).

A ``TrainingJob`` is a session's side: its settings, the buttons it pressed, its errors, and its
own cursor, the step it shows. Playing, the cursor follows the run's head live, or, behind it,
moves through what the run recorded at the pace the run was trained at, until it catches up. The
page is shown the record as it stood at the cursor (``run_cache.record_until``): every table and
chart exactly as a live run's at that step. A change of the learning rate or the step count on a
run others share (or on a replay) forks: a run of this session's own is replayed to the cursor's
step, gets the change there, and goes on live; meanwhile the page stays at that step. The job's
``owner`` is its session (the page's id), whose share of the processes pays for the runs it alone
views (``scheduler``, ``runs``).

Methods are called from script threads; they change the job's wishes at once and leave the work
to the runs' turns, so a slow process never blocks the page. Nothing here calls Streamlit:
``app.py`` wires these objects into ``st.cache_resource``.
"""
from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections import deque
from typing import Any

from resnet_core.remote.trainer import REMOTE_METHODS
from resnet_core.records import RunRecord
from resnet_core.settings import Settings

import dashboard.runtime.clients as clients
from dashboard.runtime.class_runs import ClassRuns, Pace, Replay
from dashboard.runtime.job_status import LIVE_FIELDS, JobError, JobStatus, needs_reset, slowed
from dashboard.runtime.run_cache import record_until
from dashboard.runtime.run_viewers import END, RATE_WINDOW_S, _Request
from dashboard.runtime.runs import Run
from dashboard.runtime.scheduler import Scheduler, SchedulerClosed, SchedulerFull

REQUEST_TIMEOUT_S = 120.0

_LIVE_JOBS: "weakref.WeakSet[TrainingJob]" = weakref.WeakSet()
_viewer_ids = itertools.count(1)
Source = Run | Replay


def stop_all_jobs() -> None:
    """Stop every job of this process (tests and benchmarks; sessions stop their own on release)."""
    for job in list(_LIVE_JOBS):
        job.stop(wait=True)


class TrainingJob:
    """One session's training: what it asked for, the run it views and where it stands in it."""

    def __init__(self, scheduler: Scheduler, settings: Settings | None = None, runs: ClassRuns | None = None,
                 owner: str | None = None, client: str | None = None):
        """``client``: the computer the session's tab is on (its address), whose tabs may train at
        most ``clients.runs_per_client()`` runs at once."""
        self.scheduler, self.runs, self.owner, self.client = scheduler, runs, owner, client
        self._refused: str | None = None  # the server's limit that refused the last Train (not sticky)
        self.id = next(_viewer_ids)
        self._lock = threading.Lock()
        self._settings = (settings or Settings()).checked()
        self._stopped = False
        self._error: str | None = None
        self._clear()
        _LIVE_JOBS.add(self)

    def _clear(self) -> None:
        self._source: Source | None = None
        self._own = False                    # this session started it (nobody's run is served to it)
        self._cursor = 0                     # the step shown
        self._glued = True                   # the cursor is the run's head, and follows it
        self._goal = 0                       # the step wanted: END while playing
        self._playing = False
        self._anchor = (0, 0.0)              # (step, monotonic): where a paced replay counts from
        self._pace: Pace | None = None
        self._fork: Run | None = None        # a run of our own, replayed up to the cursor, to go on from there
        self._view: tuple[tuple, RunRecord] | None = None
        self._samples: deque[tuple[float, int]] = deque(maxlen=64)

    # ---- commands (any thread) -----------------------------------------------------------------
    def train(self) -> None:
        crowded = clients.crowded(self, list(_LIVE_JOBS))  # before our own lock: other tabs take theirs
        with self._lock:
            if crowded is not None:
                self._refused = crowded
                return
            source = self._attach()
            if source is None:
                return
            self._sync()
            self._playing, self._goal = True, END
            self._anchor = (self._cursor, time.monotonic())
            target = self._fork or source
        target.want(self.id, END, self.owner)

    def pause(self) -> None:
        with self._lock:
            source, fork = self._source, self._fork
            if source is None:
                return
            self._sync()
            self._playing = False
            self._goal = self._cursor
            at_head = self._glued and fork is None and isinstance(source, Run) and source.step == self._cursor
        (fork or source).want(self.id, self._goal if fork is None else max(self._goal, fork.hold_until), self.owner)
        if at_head:
            source.push(("regions",))  # a paused class looks at the models as they are now

    def step(self, n: int = 1) -> None:
        with self._lock:
            source = self._attach()
            if source is None:
                return
            self._sync()
            self._playing = False
            self._goal = self._cursor + int(n)
            self._sync()
            target = self._fork or source
        target.want(self.id, self._goal, self.owner)

    def reset(self, settings: Settings | None = None) -> None:
        with self._lock:
            source, fork = self._source, self._fork
            self._clear()
            self._error = None
            if settings is not None:
                self._settings = settings.checked()
        for run in (source, fork):
            if run is not None:
                run.want(self.id, None)

    def update_settings(self, settings: Settings) -> str:
        """Apply new settings: 'reset' when a model changes (the run restarts), 'live' when only the
        learning rate or the step count moved (applied at the next step), '' when nothing changed."""
        settings = settings.checked()
        with self._lock:
            current, source = self._settings, self._source
            if settings == current:
                return ""
            reset = needs_reset(current, settings)
            self._settings = settings
        if reset:
            self.reset(settings)
            return "reset" if source is not None else "changed"
        for name in LIVE_FIELDS:
            if getattr(settings, name) != getattr(current, name):
                self._change(name, getattr(settings, name))
        return "live"

    def _change(self, name: str, value: Any) -> None:
        with self._lock:
            self._sync()
            source, fork = self._source, self._fork
            if source is None:
                return
            if fork is not None:  # still replaying to the cursor: one more change to make there
                with fork.lock:
                    fork.changes = [c for c in fork.changes if c[:2] != (fork.hold_until, name)]
                    fork.changes.append((fork.hold_until, name, value))
                    if fork.hold_until == 0:
                        fork.initial = fork.initial.with_changes(**{name: value})
                        fork.changes.pop()
                return
            if self._alone_at_head(source) and source.take_out_of_class(self.id):
                in_place = source
            else:
                in_place = None
                self._fork_here((name, value))
        if in_place is not None:
            in_place.push((name, value))
            if self._playing:
                in_place.want(self.id, END, self.owner)

    def request(self, method: str, **kwargs: Any) -> None:
        """Run one of ``REMOTE_METHODS`` on the trained models (in the worker) at the step shown and
        wait for it; what it records appears in this session's record. Raises JobError."""
        if method not in REMOTE_METHODS:
            raise JobError(f"unknown analysis {method!r}; available: {', '.join(REMOTE_METHODS)}")
        with self._lock:
            self._sync()
            source = self._source
            if source is None or source.record is None or source.error is not None:
                raise JobError("there is no trained model in this session yet: press Train or Step first")
            if self._fork is not None:
                run = self._fork
            elif self._alone_at_head(source):
                run = source
            else:  # another session's run, or a replay: a run of our own at this step answers it
                run = self._fork_here(None)
        req = _Request(method, kwargs)
        run.push(req)
        if not req.done.wait(REQUEST_TIMEOUT_S):
            raise JobError(f"{method} took longer than {REQUEST_TIMEOUT_S:.0f} s")
        if req.error:
            raise JobError(req.error)
        with self._lock:
            self._view = None  # the record has something new to show

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
        _LIVE_JOBS.discard(self)

    def training(self) -> bool:
        """Whether this tab is training a run now (playing, not finished, not failed): what counts
        against its computer's limit. Read without the lock: a moment's staleness costs nothing."""
        run = self._fork or self._source
        return self._playing and isinstance(run, Run) and run.error is None and not run.done

    # ---- the cursor (under self._lock) ---------------------------------------------------------
    def _attach(self) -> Source | None:
        """The run this session views, found or started on its first Train or Step."""
        self._refused = None  # the server's limits are asked again at each Train or Step
        if self._stopped or self._error is not None:
            return None
        if self._source is not None:
            if isinstance(self._source, Run):
                self._source.retry()
            return None if self._source.error is not None else self._source
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
        self._source, self._own = source, created
        self._cursor, self._glued = 0, source.step == 0 and not isinstance(source, Replay)
        return source

    def _alone_at_head(self, source: Source) -> bool:
        """Changing this run in place is this session's business alone."""
        if not isinstance(source, Run):
            return False
        with source.lock:
            others = set(source.targets) - {self.id}
            return not others and self._glued and self._cursor == source.step

    def _fork_here(self, change: tuple[str, Any] | None) -> Run:
        """A run of this session's own, replayed to the cursor's step (where ``change`` is made)."""
        source, k = self._source, self._cursor
        changes = [c for c in source.changes if c[0] <= k]
        initial = source.initial
        if change is not None:
            if k == 0:
                initial = initial.with_changes(**{change[0]: change[1]})
            else:
                changes.append((k, *change))
        fork = Run(self.scheduler, initial, changes=changes)
        fork.hold_until = k
        self._fork = fork
        self.scheduler.add(fork)
        fork.want(self.id, max(k, self._goal), self.owner)
        source.want(self.id, None)  # this session no longer wants that run further
        return fork

    def _sync(self) -> None:
        """Move the cursor to where it is by now, and take over a fork that has caught up."""
        fork, now = self._fork, time.monotonic()
        if fork is not None:
            if fork.error is None and (fork.record is None or fork.step < fork.hold_until):
                return  # the page stays at the step it forked at meanwhile
            self._source, self._fork, self._own, self._glued = fork, None, True, True
            self._anchor, self._view = (self._cursor, now), None
        source = self._source
        if source is None:
            return
        head = source.step
        if self._goal > self._cursor:
            if self._glued:
                self._cursor = min(self._goal, head)
            elif self._playing:
                record = source.record
                if record is not None and (self._pace is None or self._pace.version != record.version):
                    self._pace = Pace(record)
                pace = self._pace
                paced = pace.step_at(pace.wall_at(self._anchor[0]) + now - self._anchor[1]) if pace else head
                self._cursor = max(self._cursor, min(self._goal, head, paced))
            else:
                self._cursor = min(self._goal, head)
            if self._cursor >= head and isinstance(source, Run) and not source.done:
                self._glued = True  # caught up with a run still under way: live from here
        if not self._samples or self._samples[-1][1] != self._cursor or now - self._samples[-1][0] > 1:
            self._samples.append((now, self._cursor))

    def _record(self) -> RunRecord | None:
        """The record as it stood at the cursor (the run's own while the cursor is its head)."""
        source = self._source
        record = source.record if source is not None else None
        if record is None:
            return None
        maps = source.pause_maps
        overlay = maps is not None and maps[0] == self._cursor
        if self._cursor >= source.step and not overlay:
            return record
        view = source.views.at(record, self._cursor, maps[1] if overlay else None)
        lesion = record.lesion_rows() if self._own else []
        if not lesion:
            return view
        key = (id(view), len(lesion))  # this session's own lesion study, on its own run: a copy of its own
        if self._view is None or self._view[0] != key:
            mine = record_until(view, self._cursor)
            mine.set_lesion(lesion)
            self._view = (key, mine)
        return self._view[1]

    # ---- reading (any thread) ------------------------------------------------------------------
    def status(self) -> JobStatus:
        with self._lock:
            self._sync()
            source, fork, settings = self._source, self._fork, self._settings
            error = self._error or self._refused or (source.error if source is not None else None) or (
                fork.error if fork else None)
            if source is None:
                return JobStatus("error" if error else "idle", 0, settings.steps, None, settings, error)
            record, cursor, glued, playing = self._record(), self._cursor, self._glued, self._playing
            with source.lock:
                head, done, control = source.step, source.done, bool(source.control) and self._own
                rebuilding = glued and isinstance(source, Run) and source.record is not None and head > 0 and (
                    not source.built or source.trainer_step < head) and (self._goal > head or control)
                status = dict(source.status) if glued else {}
                diverged = dict(getattr(source, "diverged_at", {})) if glued else {}
                busy = source.busy and glued
            finished = done and cursor >= head
            pending = error is None and (fork is not None or control or (self._goal > cursor and not finished))
            rate = None
            if playing and not finished:
                rate = source.steps_per_s() if glued else self._rate()
            cached = not self._own
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
        return JobStatus(state, cursor, settings.steps, record, settings, error, None, status, diverged,
                         pending, rate if state == "training" else None, fork is not None or rebuilding, cached,
                         slowed(getattr(source, "step_s", 0.0)) if glued else None)

    def _rate(self) -> float | None:
        now = time.monotonic()
        recent = [(t, s) for t, s in self._samples if now - t <= RATE_WINDOW_S]
        steady = len(recent) >= 2 and recent[-1][0] > recent[0][0]
        return (recent[-1][1] - recent[0][1]) / (now - recent[0][0]) if steady else None

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
            run = self._fork or self._source
        return run.host.pid if isinstance(run, Run) and run.host is not None else None
