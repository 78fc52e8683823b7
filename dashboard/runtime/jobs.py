"""Training jobs for the dashboard: one per browser session, a server-wide pool of worker processes.

The page never trains. It sends commands (train, pause, step, reset, new settings, a learning rate)
to its session's ``TrainingJob``; the job's thread waits for a worker process from the
``WorkerPool`` (the global cap on sessions training at once, with a first-come queue), drives a
``ParallelTrainer`` over that one worker a few steps at a time, and hands the worker back on reset,
on stop, or when it sits idle while others wait. The page only reads ``job.status()`` and the
thread-safe ``RunRecord``.

Nothing here calls Streamlit: the thread outlives script runs, and ``st.*`` from a foreign thread
is undefined behaviour. ``app.py`` wires these objects into ``st.cache_resource``.
"""
from __future__ import annotations

import queue
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from resnet_core.remote.trainer import REMOTE_METHODS, ParallelTrainer, WorkerError, WorkerProcess
from resnet_core.errors import describe
from resnet_core.records import RunRecord, run_finished
from resnet_core.settings import Settings

import dashboard.runtime.scratch as scratch
from dashboard.runtime.worker_pool import PoolClosed, WorkerPool

STEP_CALL_S = 0.15        # aim for one worker round trip per ~150 ms: commands stay snappy
IDLE_RELEASE_S = 20.0     # a paused or finished job keeps its worker this long while others wait
REQUEST_TIMEOUT_S = 120.0


# Settings whose change leaves the models as they are: everything else asks for a reset.
LIVE_FIELDS = ("lr", "steps")


JOB_THREAD_NAME = "rl-training"  # the OS-level name too (top -H, the bench's CPU accounting)


def _name_os_thread(name: str) -> None:
    """Best effort, Linux only: name the calling thread for the OS as well as for Python."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15 = PR_SET_NAME
    except (OSError, AttributeError):
        pass


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

    state: str                    # idle | waiting | starting | training | paused | done | error | released
    step: int
    steps: int
    record: RunRecord | None
    settings: Settings
    queue_position: int | None = None
    error: str | None = None
    notice: str | None = None     # one-off information, e.g. the worker was handed on while idle
    model_status: dict[str, str] = field(default_factory=dict)
    diverged_at: dict[str, int] = field(default_factory=dict)
    pending: bool = False         # a command not yet carried out: the page keeps polling


@dataclass
class _Request:
    method: str
    kwargs: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


_LIVE_JOBS: "weakref.WeakSet[TrainingJob]" = weakref.WeakSet()


def stop_all_jobs() -> None:
    """Stop every job of this process (tests and benchmarks; sessions stop their own on release)."""
    for job in list(_LIVE_JOBS):
        job.stop(wait=True)


class TrainingJob:
    """One session's training. Public methods are called from script threads and only enqueue;
    the job's own thread does all the work, so a slow worker never blocks the page."""

    def __init__(self, pool: WorkerPool, settings: Settings | None = None):
        self.pool = pool
        self._commands: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._settings = (settings or Settings()).checked()
        self._state = "idle"
        self._record: RunRecord | None = None
        self._streaming: RunRecord | None = None  # the record whose full tables go to the scratch folder
        self._trainer: ParallelTrainer | None = None
        self._worker: WorkerProcess | None = None
        self._ticket: int | None = None
        self._running = False
        self._pending_steps = 0
        self._error: str | None = None
        self._notice: str | None = None
        self._idle_since = time.monotonic()
        self._issued = self._handled = 0  # commands sent and carried out: the page polls while they differ
        self._seconds_per_step = 0.05     # measured as it trains; sets how many steps one call asks for
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=JOB_THREAD_NAME, daemon=True)
        self._thread.start()
        _LIVE_JOBS.add(self)

    # ---- commands (any thread) ---------------------------------------------------------------
    def _put(self, command: tuple[str, Any]) -> None:
        with self._lock:
            self._issued += 1
        self._commands.put(command)

    def train(self) -> None:
        self._put(("train", None))

    def pause(self) -> None:
        self._put(("pause", None))

    def step(self, n: int = 1) -> None:
        self._put(("step", int(n)))

    def reset(self, settings: Settings | None = None) -> None:
        self._put(("reset", settings))

    def update_settings(self, settings: Settings) -> str:
        """Apply new settings: 'reset' when a model changes (the run restarts), 'live' when only the
        learning rate or the step count moved (applied at the next step), '' when nothing changed."""
        settings = settings.checked()
        with self._lock:
            current = self._settings
            has_run = self._record is not None
            if settings == current:
                return ""
            reset = needs_reset(current, settings)
            # The page shows the new settings at once; the thread catches up between two steps.
            self._settings = settings
            if reset:
                self._record = None
        if reset:
            self.reset(settings)
            return "reset" if has_run else "changed"
        self._put(("live", settings))
        return "live"

    def request(self, method: str, **kwargs: Any) -> None:
        """Run one of ``REMOTE_METHODS`` on the trained models (in the worker) between steps and wait
        for it; what it records appears in the run's record. Raises JobError with a message."""
        if method not in REMOTE_METHODS:
            raise JobError(f"unknown analysis {method!r}; available: {', '.join(REMOTE_METHODS)}")
        req = _Request(method, kwargs)
        self._put(("request", req))
        if not req.done.wait(REQUEST_TIMEOUT_S):
            raise JobError(f"{method} took longer than {REQUEST_TIMEOUT_S:.0f} s")
        if req.error:
            raise JobError(req.error)

    def stop(self, wait: bool = False) -> None:
        """End the thread, which hands the worker back. Called (through ``on_release``) a few seconds
        after the session's tab closes, from Streamlit's own thread: so by default it does not wait."""
        if self._thread.is_alive():
            self._put(("stop", None))
            if wait:
                self._thread.join(timeout=15)
        _LIVE_JOBS.discard(self)

    # ---- reading (any thread) ----------------------------------------------------------------
    def status(self) -> JobStatus:
        with self._lock:
            trainer = self._trainer
            position = self.pool.position(self._ticket) if self._ticket is not None else None
            notice, self._notice = self._notice, None
            step = trainer.step if trainer else (self._record.latest_step() if self._record is not None else 0)
            return JobStatus(
                state=self._state, step=step, steps=self._settings.steps,
                record=self._record, settings=self._settings, queue_position=position,
                error=self._error, notice=notice,
                model_status=dict(trainer.status) if trainer else {},
                diverged_at=dict(trainer.diverged_at) if trainer else {},
                pending=self._issued != self._handled or self._pending_steps > 0)

    @property
    def settings(self) -> Settings:
        with self._lock:
            return self._settings

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ---- the thread --------------------------------------------------------------------------
    def _set(self, **values: Any) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(self, f"_{key}", value)

    def _loop(self) -> None:
        _name_os_thread(JOB_THREAD_NAME)
        try:
            while not self._stopped.is_set():
                try:
                    self._drain_commands(block=not (self._running or self._pending_steps > 0))
                    if self._stopped.is_set():
                        break
                    if self._running or self._pending_steps > 0:
                        self._advance()
                    else:
                        self._release_if_idle()
                except Exception as exc:  # noqa: BLE001 - shown in this session; the thread lives on
                    self._fail(describe(exc))
        finally:
            self._drop_trainer()
            if self._ticket is not None:
                self.pool.leave(self._ticket)

    def _drain_commands(self, block: bool) -> None:
        timeout = 0.5 if block else None
        while True:
            try:
                if block:
                    cmd, arg = self._commands.get(timeout=timeout)
                    block = False
                else:
                    cmd, arg = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                self._handle(cmd, arg)
            finally:
                with self._lock:
                    self._handled += 1
            if self._stopped.is_set():
                return

    def _handle(self, cmd: str, arg: Any) -> None:
        if cmd == "stop":
            self._stopped.set()
        elif cmd == "train":
            if self._state != "error":  # after an error the page says "press Reset": it would fail again
                self._running = True
        elif cmd == "pause":
            self._running = False
            self._pending_steps = 0
            self._leave_queue()
            if self._trainer is not None:
                self._refresh_regions()
                self._set(state="paused" if not self._finished() else "done")
            else:
                self._set(state="idle")
        elif cmd == "step":
            if self._state != "error":
                self._running = False
                self._pending_steps += arg
        elif cmd == "reset":
            self._running = False
            self._pending_steps = 0
            self._leave_queue()
            self._drop_trainer()
            self._set(record=None, error=None, state="idle", **({"settings": arg} if arg is not None else {}))
        elif cmd == "live":
            self._apply_live(arg)
        elif cmd == "request":
            self._serve(arg)

    def _apply_live(self, settings: Settings) -> None:
        self._set(settings=settings)
        trainer = self._trainer
        if trainer is None:
            return
        try:
            if settings.lr != trainer.settings.lr:
                trainer.set_lr(settings.lr)
            if settings.steps != trainer.settings.steps:
                trainer.set_steps(settings.steps)
        except WorkerError as exc:
            self._fail(str(exc))
            return
        if self._record is not None:
            self._record.config.setdefault("settings", {}).update(lr=settings.lr, steps=settings.steps)
        if self._state == "done" and not self._finished():
            self._set(state="paused")
        elif self._state in ("paused", "training") and self._finished():
            self._set(state="done")

    def _refresh_regions(self) -> None:
        """Decision maps of the models as they are now (they are otherwise drawn every few
        evaluations): a paused class looks at the current state. Image data has no maps."""
        config = self._record.config.get("dataset", {}) if self._record is not None else {}
        if len(config.get("input_shape", [])) != 1:
            return
        try:
            self._trainer.call("decision_regions")
        except WorkerError as exc:
            self._fail(str(exc))

    def _serve(self, req: _Request) -> None:
        try:
            if self._trainer is None:
                raise JobError("there is no trained model in this session yet: press Train or Step first")
            self._trainer.call(req.method, **req.kwargs)
        except (JobError, WorkerError) as exc:
            req.error = str(exc)
        finally:
            req.done.set()

    # ---- training ----------------------------------------------------------------------------
    def _finished(self) -> bool:
        t = self._trainer
        return t is not None and run_finished(t.step, self._settings.steps, t.status)

    def _advance(self) -> None:
        if self._trainer is None and not self._start():
            return
        if self._finished():
            self._running, self._pending_steps = False, 0
            self._set(state="done")
            self._idle_since = time.monotonic()
            return
        remaining = self._settings.steps - self._trainer.step
        n = min(self._steps_per_call(), remaining)
        if not self._running:
            n = min(n, self._pending_steps)
        started = time.perf_counter()
        try:
            self._trainer.train_step(n)
        except WorkerError as exc:
            self._fail(str(exc))
            return
        self._seconds_per_step = (time.perf_counter() - started) / max(n, 1)
        if not self._running:
            self._pending_steps = max(0, self._pending_steps - n)
        if self._finished():  # the worker evaluated (and mapped) the last step itself
            self._running, self._pending_steps = False, 0
            self._set(state="done")
        elif self._running:
            self._set(state="training")
        elif self._pending_steps == 0:
            self._set(state="paused")
        self._idle_since = time.monotonic()

    def _steps_per_call(self) -> int:
        return max(1, min(25, int(STEP_CALL_S / max(self._seconds_per_step, 1e-4))))

    def _start(self) -> bool:
        """Wait in line for a worker (a short wait per call, so commands stay live), then build the
        models in it. False while still waiting or after a failure."""
        if self._ticket is None:
            self._notice_if_restarting()
            self._set(ticket=self.pool.enqueue(), state="waiting")
        try:
            worker = self.pool.try_acquire(self._ticket)
        except PoolClosed as exc:
            self._fail(str(exc))
            return False
        if worker is None:
            return False
        self._set(ticket=None, worker=worker, state="starting", error=None)
        settings = self._settings
        try:
            trainer = ParallelTrainer(settings, workers=[worker])
        except WorkerError as exc:
            self._fail(str(exc))
            return False
        scratch.discard_run(self._streaming)  # the full tables go to files (the downloads), the record
        self._streaming = scratch.stream_run(trainer.record)  # keeps a bounded history
        if self._settings != settings:  # the learning rate or step count moved during start-up
            self._trainer = trainer
            self._apply_live(self._settings)
        self._set(trainer=trainer, record=trainer.record, state="training" if self._running else "paused")
        return True

    def _notice_if_restarting(self) -> None:
        if self._record is not None:
            self._set(notice="This session's models were handed to another class member while idle; "
                             "training restarts from step 0.", record=None)
            self._streaming = scratch.discard_run(self._streaming)

    def _fail(self, message: str) -> None:
        self._running, self._pending_steps = False, 0
        self._drop_trainer(keep_record=True)
        self._set(state="error", error=message)

    def _leave_queue(self) -> None:
        if self._ticket is not None:
            self.pool.leave(self._ticket)
            self._set(ticket=None)

    def _release_if_idle(self) -> None:
        """Give the worker to someone waiting when this session has sat paused or done a while."""
        if self._worker is None or self.pool.waiting() == 0:
            return
        if time.monotonic() - self._idle_since < IDLE_RELEASE_S:
            return
        self._drop_trainer(keep_record=True)
        self._set(state="released")

    def _drop_trainer(self, keep_record: bool = False) -> None:
        worker, record = self._worker, self._record
        with self._lock:
            self._trainer, self._worker = None, None
            if not keep_record:
                self._record = None
        if worker is not None:
            self.pool.release(worker)
        if keep_record and record is not None:
            record.close_stream()  # nothing more comes; its files stay for the downloads
        elif not keep_record:
            self._streaming = scratch.discard_run(self._streaming)
