"""Analyses (sweeps, landscapes, shattered gradients): jobs on a scheduler, the server's or a command's.

``start_analysis(kind, jobs, on_event)`` gives each job of the list (``resnet_core.remote.job_kinds
.JOB_KINDS``) to a ``Scheduler``, at most ``parallel`` at a time: each job is a task that takes
time slices on a worker process. On the server it takes them round robin with the training runs
there, so an analysis neither waits behind a long run nor adds a process beyond the server's
budget. ``on_event(run, event)`` turns each partial result and result into what the page shows
(``run.add``, ``run.set_progress``), or hands it to the command line's waiting thread
(``job_pool.JobPool``); it is called on the scheduler's thread and must be quick, as ``on_done``,
called once when the last job has ended.

The jobs are charged to ``owner``, the browser session that asked for the analysis: however many
run at once, they and that session's training run take turns in one share of the process
(``scheduler``). Without an owner (tests) each job is its own.

The page reads ``snapshot()``, ``progress``, ``status``, ``error`` and ``done`` whenever it
refreshes; ``cancel()`` stops the jobs at their next checkpoint. Nothing here calls Streamlit.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Any, Callable

from resnet_core.errors import describe
from resnet_core.remote.job_kinds import JobEvent, job_function
from resnet_core.remote.worker_process import WorkerError

from resnet_core.scheduling.scheduler import Host, Scheduler, SchedulerClosed, Task, reply_deadline

_ids = itertools.count(1)


class AnalysisRun:
    """A list of jobs of one kind, their results as they come, and how far along they are."""

    def __init__(self, scheduler: Scheduler, kind: str, jobs: list[dict[str, Any]],
                 on_event: Callable[["AnalysisRun", JobEvent], None], parallel: int = 1,
                 affinity: str | None = None, label: str = "job", owner: str | None = None,
                 on_done: Callable[["AnalysisRun"], None] | None = None):
        job_function(kind)  # an unknown kind fails here, in the caller
        self.scheduler, self.kind, self.label, self.affinity = scheduler, kind, label, affinity
        self.owner = owner  # the session whose share of the processes its jobs use (None: each its own)
        self.on_event, self.on_done = on_event, on_done
        self.results: list[Any] = []
        self.progress = 0.0
        self.status = ""  # a few words on what is being done
        self.error: str | None = None
        self.cancelled = False
        self.done = False
        self.started_at, self.finished_at = time.perf_counter(), None
        self.lock = threading.Lock()
        self._finished = threading.Event()
        self._pending = deque(enumerate(jobs))
        self._active: set[AnalysisTask] = set()
        self._parallel = max(1, int(parallel))
        if not jobs:
            self._finish()
            return
        for _ in range(self._parallel):
            self._start_next()

    # ---- the page's side -----------------------------------------------------------------
    def add(self, item: Any) -> None:
        with self.lock:
            self.results.append(item)

    def set_progress(self, fraction: float, status: str | None = None) -> None:
        self.progress = min(max(float(fraction), 0.0), 1.0)
        if status is not None:
            self.status = status

    def snapshot(self) -> list[Any]:
        with self.lock:
            return list(self.results)

    @property
    def elapsed(self) -> float:
        return (self.finished_at or time.perf_counter()) - self.started_at

    def cancel(self) -> None:
        """Stop: jobs not started never start, jobs under way stop at their next checkpoint."""
        with self.lock:
            self.cancelled = True
            self._pending.clear()
            active = list(self._active)
        for task in active:
            task.wake()
        if not active:
            self._finish()

    def wait(self, timeout: float | None = None) -> bool:
        self._finished.wait(timeout)
        return self.done

    # ---- the tasks' side (the scheduler's threads) -----------------------------------------
    def _start_next(self) -> None:
        with self.lock:
            if self.cancelled or self.error is not None or not self._pending:
                return
            index, args = self._pending.popleft()
            task = AnalysisTask(self, index, args)
            self._active.add(task)
        try:
            self.scheduler.add(task)
        except SchedulerClosed as exc:
            self._ended(task, str(exc))

    def _event(self, event: JobEvent) -> None:
        try:
            self.on_event(self, event)
        except Exception as exc:  # noqa: BLE001 - a result the page cannot use: shown as one line
            self._fail(describe(exc))

    def _ended(self, task: "AnalysisTask", error: str | None) -> None:
        """A job finished (error None), failed or was cancelled (``task.cancelling``)."""
        if error is not None and not task.cancelling:
            self._fail(error)
        with self.lock:
            self._active.discard(task)
            last = not self._active and (not self._pending or self.cancelled or self.error is not None)
        if last:
            self._finish()
        else:
            self._start_next()

    def _fail(self, message: str) -> None:
        with self.lock:
            if self.error is None and not self.cancelled:
                self.error = message
            self._pending.clear()
            active = list(self._active)
        for task in active:
            task.wake()  # the others stop too: the run has failed

    def _finish(self) -> None:
        if not self.done:
            self.finished_at = time.perf_counter()
            self.done = True
            self._finished.set()
            if self.on_done is not None:
                self.on_done(self)

    @property
    def stopping(self) -> bool:
        return self.cancelled or self.error is not None


class AnalysisTask(Task):
    """One of an AnalysisRun's jobs (``JOB_KINDS``) as a task of the scheduler: started in a worker
    process, then run a slice per turn."""

    def __init__(self, run: AnalysisRun, index: int, args: dict[str, Any]):
        self.run, self.index, self.args = run, index, args
        self.id = f"job-{next(_ids)}"
        self.affinity, self.owner = run.affinity, run.owner
        self.started = False
        self.finished = False
        self.longest_turn_s = 0.0

    @property
    def cancelling(self) -> bool:
        return self.run.stopping

    def runnable(self) -> bool:
        return not self.finished

    def turn(self, host: Host, quantum_s: float) -> None:
        if self.cancelling:
            if self.started:
                try:
                    host.call("cancel", self._deadline(), id=self.id)
                except WorkerError:
                    pass
            self._end(host, None)
            return
        try:
            if not self.started:
                host.call("job", id=self.id, kind=self.run.kind, args=self.args)
                self.started = True
            reply = host.call("slice", self._deadline(), id=self.id, budget_s=quantum_s)
        except WorkerError as exc:
            self._end(host, str(exc))
            return
        self.longest_turn_s = max(self.longest_turn_s, float(reply.get("elapsed_s", 0.0)))
        for partial in reply.get("partials", []):
            self.run._event(JobEvent(self.index, partial=partial))
        if reply.get("done"):
            if "error" in reply:
                self._end(host, reply["error"])
                return
            self.run._event(JobEvent(self.index, result=reply.get("result")))
            self._end(host, None)

    def _deadline(self) -> float:
        return reply_deadline(self.longest_turn_s)

    def _end(self, host: Host | None, error: str | None) -> None:
        if self.finished:
            return
        self.finished = True
        if host is not None:
            host.remove(self)
        self.run._ended(self, error)

    def lost(self, message: str) -> None:
        self._end(self.host, message)


def start_analysis(scheduler: Scheduler, kind: str, jobs: list[dict[str, Any]],
                   on_event: Callable[[AnalysisRun, JobEvent], None], parallel: int = 1,
                   affinity: str | None = None, label: str = "job", owner: str | None = None) -> AnalysisRun:
    """Run ``jobs`` on the server's scheduler, ``parallel`` at a time, in ``owner``'s share; see the
    module's docstring."""
    return AnalysisRun(scheduler, kind, jobs, on_event, parallel, affinity, label, owner)
