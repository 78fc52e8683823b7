"""Independent jobs in worker processes, JSON in and JSON out, and a thread to drive them.

A sweep's runs, a loss landscape or the shattered-gradient nets are each a job: a function
``f(args: dict, report) -> dict`` named in ``JOB_KINDS``. ``JobPool`` runs jobs on worker
processes with one torch thread each (tiny layers are dispatch-bound: two processes on two cores
nearly double throughput, two threads in one process do not), as each worker comes free, and
yields their progress and results as they arrive.

A worker is a fresh interpreter (``python -m resnet_core.remote.jobs``) talking JSON lines over its
stdin and stdout (``resnet_core.remote.transport``), as the training workers do.
``BackgroundRun`` consumes such a stream in a thread that never touches the page, for a page
that polls it.
"""
from __future__ import annotations

import importlib
import itertools
import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from resnet_core.remote.transport import JsonProcess, ProcessGone, serve
from resnet_core.training.budget import out_of_memory, out_of_memory_message

# Jobs a worker may run: kind -> "module:function(args, report) -> dict". Nothing else is callable.
JOB_KINDS = {
    "train": "resnet_core.analysis.sweep:train_one",
    "landscape": "resnet_core.analysis.landscape.compute:landscape_job",
    "shattered": "resnet_core.analysis.shattered.compute:shattered_job",
}
POLL_S = 0.2  # how soon a cancel is noticed


class JobError(RuntimeError):
    """A job failed inside a worker (its one-line message), the worker died, or it was cancelled."""


def job_function(kind: str) -> Callable[[dict[str, Any], Callable], dict[str, Any]]:
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}; known: {', '.join(JOB_KINDS)}")
    module, name = JOB_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def one_line(exc: BaseException) -> str:
    """A user's mistake (SettingsError, DataError: ValueErrors that say what to change) as its
    message alone; anything else with its type, since the type is then part of the story."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, ValueError) and text else f"{type(exc).__name__}: {text}"


def run_job(msg: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
    """A worker's handling of one job: progress lines, then the result (or the error in one line)."""
    job_id = msg["id"]
    try:
        result = job_function(msg["kind"])(msg["args"], lambda partial: send({"id": job_id, "partial": partial}))
        send({"id": job_id, "result": result})
    except Exception as exc:  # noqa: BLE001 - sent to the parent, which shows it
        send({"id": job_id, "error": out_of_memory_message() if out_of_memory(exc) else one_line(exc)})


@dataclass
class JobEvent:
    index: int  # position of the job in the list given to ``JobPool.run``
    partial: dict[str, Any] | None = None  # progress on the way
    result: dict[str, Any] | None = None  # the job's answer (then it is done)


class _Worker(JsonProcess):
    """One worker interpreter; a reader thread turns its messages into events on a queue."""

    def __init__(self, events: queue.Queue):
        super().__init__("resnet_core.remote.jobs")
        self.events = events
        threading.Thread(target=self._read, daemon=True, name="residual-lab-job-reader").start()

    def _read(self) -> None:
        for msg in self.messages():
            self.events.put((self, msg))
        self.events.put((self, None))  # the worker is gone

    def submit(self, msg: dict[str, Any]) -> None:
        try:
            self.send(msg)
        except ProcessGone as exc:
            raise JobError("a worker process has stopped") from exc


class JobPool:
    """``workers`` processes running jobs of ``JOB_KINDS``, one at a time each; ``workers=0`` runs
    them in this process instead (a GPU, or a test). Reusable for batch after batch until closed."""

    def __init__(self, workers: int = 1):
        self.events: queue.Queue = queue.Queue()
        self.closed = threading.Event()
        self.batches = itertools.count()
        self.workers = [_Worker(self.events) for _ in range(max(0, int(workers)))]

    def run(self, kind: str, jobs: list[dict[str, Any]]) -> Iterator[JobEvent]:
        """Events of every job as they come, across workers; a failed job raises JobError."""
        job_function(kind)  # an unknown kind fails here, not in a worker
        if not self.workers:
            yield from self._run_here(kind, jobs)
            return
        # Messages carry [batch, index]: a batch given up half way (an error, a caller that stopped
        # reading) leaves workers finishing its jobs, and their answers must not pass for this one's.
        batch = next(self.batches)
        pending = list(enumerate(jobs))[::-1]
        idle, busy = list(self.workers), set()
        while pending or busy:
            while idle and pending:
                worker = idle.pop()
                index, args = pending.pop()
                worker.submit({"id": [batch, index], "kind": kind, "args": args})
                busy.add(worker)
            if self.closed.is_set():
                raise JobError("cancelled")
            try:
                worker, msg = self.events.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if msg is None:
                raise JobError("cancelled" if self.closed.is_set() else "a worker process ended unexpectedly")
            msg_batch, index = msg["id"]
            if msg_batch != batch:
                continue
            if "partial" in msg:
                yield JobEvent(index, partial=msg["partial"])
                continue
            busy.discard(worker)
            idle.append(worker)
            if "error" in msg:
                raise JobError(msg["error"])
            yield JobEvent(index, result=msg["result"])

    def _run_here(self, kind: str, jobs: list[dict[str, Any]]) -> Iterator[JobEvent]:
        fn = job_function(kind)
        for index, args in enumerate(jobs):
            if self.closed.is_set():
                raise JobError("cancelled")
            partials: list[dict[str, Any]] = []
            # The same JSON round trip as a worker's, so both paths hand back the same values.
            try:
                result = json.loads(json.dumps(fn(json.loads(json.dumps(args)), partials.append)))
            except Exception as exc:  # noqa: BLE001 - the same message a worker would send
                raise JobError(one_line(exc)) from exc
            yield from (JobEvent(index, partial=p) for p in partials)
            yield JobEvent(index, result=result)

    def cancel(self) -> None:
        """From any thread: the thread iterating ``run`` stops within POLL_S (and should close)."""
        self.closed.set()

    def close(self) -> None:
        """End the workers; a job under way is abandoned."""
        self.closed.set()
        workers, self.workers = self.workers, []
        for worker in workers:
            worker.close(wait_s=0.5)

    @property
    def usable(self) -> bool:
        return not self.closed.is_set() and all(w.alive for w in self.workers)

    def __enter__(self) -> "JobPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SlotQueue:
    """First come, first served: at most ``capacity`` worker processes doing analyses at once in
    this server process, however many pages ask (30 students pressing Run on a 2-core laptop)."""

    def __init__(self, capacity: int):
        self.capacity = max(1, int(capacity))
        self.used = 0
        self.line: list[object] = []
        self.cond = threading.Condition()

    def acquire(self, n: int, cancelled: Callable[[], bool], on_wait: Callable[[int], None] = lambda _: None) -> bool:
        """Wait for ``n`` slots (at most the capacity); False if cancelled meanwhile. ``on_wait``
        gets the place in line (1 = next) while waiting."""
        n = min(max(1, n), self.capacity)
        ticket = object()
        with self.cond:
            self.line.append(ticket)
            try:
                while not (self.line[0] is ticket and self.used + n <= self.capacity):
                    if cancelled():
                        return False
                    on_wait(self.line.index(ticket) + 1)
                    self.cond.wait(POLL_S)
                self.used += n
                return True
            finally:
                self.line.remove(ticket)
                self.cond.notify_all()

    def release(self, n: int) -> None:
        with self.cond:
            self.used -= min(max(1, n), self.capacity)
            self.cond.notify_all()


_SLOTS: SlotQueue | None = None
_SLOTS_LOCK = threading.Lock()


def shared_slots() -> SlotQueue:
    """This process's one queue (env RESIDUAL_LAB_MAX_ANALYSIS_PROCESSES, else one per core)."""
    global _SLOTS
    with _SLOTS_LOCK:
        if _SLOTS is None:
            try:
                capacity = int(os.environ.get("RESIDUAL_LAB_MAX_ANALYSIS_PROCESSES", ""))
            except ValueError:
                capacity = os.cpu_count() or 1
            _SLOTS = SlotQueue(capacity)
        return _SLOTS


class BackgroundRun:
    """Consumes a stream of results in a daemon thread that never touches the page; the page
    reads ``snapshot()``, ``progress``, ``status``, ``error`` and ``done`` whenever it refreshes.

    ``start(run)`` is called in the thread and yields results; it may call ``run.set_progress``.
    ``cancel()`` (from any thread) makes ``pool`` stop within a fraction of a second; the pool
    is closed on the way out when ``close_pool`` is set (a pool kept for later runs is not).
    """

    def __init__(self, start: Callable[["BackgroundRun"], Iterable[Any]], pool: JobPool | None = None,
                 close_pool: bool = True, label: str = "job"):
        self.pool, self.close_pool = pool, close_pool
        self.results: list[Any] = []
        self.progress = 0.0
        self.status = ""  # a few words on what is being done
        self.error: str | None = None
        self.cancelled = False
        self.done = False
        self.started_at, self.finished_at = time.perf_counter(), None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._main, args=(start,), daemon=True, name=f"residual-lab-{label}")
        self.thread.start()

    def _main(self, start) -> None:
        try:
            for item in start(self):
                with self.lock:
                    self.results.append(item)
        except JobError as exc:
            self.error = None if self.cancelled else str(exc)
        except Exception as exc:  # noqa: BLE001 - shown on the page as one line
            self.error = " ".join(str(exc).split()) or type(exc).__name__
        finally:
            if self.pool is not None and (self.close_pool or self.pool.closed.is_set()):
                self.pool.close()  # a cancelled pool is of no further use either
            self.finished_at = time.perf_counter()
            self.done = True

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

    def attach(self, pool: JobPool) -> JobPool:
        """The pool this run drives (from its thread), so that ``cancel`` can reach it."""
        self.pool = pool
        if self.cancelled:
            pool.cancel()
        return pool

    def cancel(self) -> None:
        """Ask the thread to stop; a job under way in a worker process is abandoned."""
        self.cancelled = True
        if self.pool is not None:
            self.pool.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        self.thread.join(timeout)
        return self.done


def start_queued(body: Callable[[BackgroundRun, JobPool], Iterable[Any]], workers: int,
                 pool: JobPool | None = None, label: str = "job", slots: SlotQueue | None = None) -> BackgroundRun:
    """A BackgroundRun that first waits its turn in the server's queue, then runs ``body(run, pool)``
    on ``pool`` (kept open afterwards, for a later run) or on a new pool of ``workers`` processes
    (closed afterwards); 0 workers: in this process."""
    slots = slots or shared_slots()
    n = max(1, workers)

    def start(run: BackgroundRun) -> Iterator[Any]:
        def waiting(place: int) -> None:
            run.set_progress(0.0, f"waiting for a free processor: {place} in line")

        if not slots.acquire(n, lambda: run.cancelled, waiting):
            return
        try:
            if pool is None:
                run.set_progress(0.0, "starting worker processes")
            yield from body(run, run.attach(pool if pool is not None else JobPool(workers)))
        finally:
            slots.release(n)

    return BackgroundRun(start, close_pool=pool is None, label=label)


if __name__ == "__main__":
    serve(run_job)
