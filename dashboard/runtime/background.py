"""Analyses (sweeps, landscapes, shattered gradients) run for a page in a background thread, and
the server's first-come queue for the worker processes they use.

``BackgroundRun`` consumes a stream of results in a thread that never touches the page, for a
page that polls it; ``start_queued`` makes it wait its turn in the ``SlotQueue`` first.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from resnet_core.errors import describe
from resnet_core.remote.jobs import POLL_S, JobError, JobPool


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
            self.error = describe(exc)
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
