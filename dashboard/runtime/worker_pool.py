"""The server-wide pool of training processes: the cap on sessions training at once, and the queue.

At most ``size`` worker processes (env ``RESIDUAL_LAB_MAX_TRAINING``, else one per core but one:
each worker keeps a core busy with one torch thread, and the pages need the last one), created lazily,
one started a few seconds ahead (once the first page is drawn) so the first Train of the day does
not wait for a process to import torch.
A session takes a ticket and gets a worker when it is first in line and one is free; its place in
line is what the page shows. A worker whose process died is dropped, and a fresh one started on
demand. Nothing here calls Streamlit.
"""
from __future__ import annotations

import itertools
import os
import threading
from collections import deque

from resnet_core.remote.trainer import WorkerProcess


class PoolClosed(RuntimeError):
    """The server is shutting down: no more workers."""


def max_training_sessions() -> int:
    """The server-wide cap: env RESIDUAL_LAB_MAX_TRAINING, else one worker per core but one."""
    raw = os.environ.get("RESIDUAL_LAB_MAX_TRAINING", "")
    try:
        return max(1, int(raw))
    except ValueError:
        # One core is left to serve pages: on 2 cores, 30 sessions with 10 pressing Train got page
        # interactions at p95 0.23 s with one trainer, 1.2 s with two (bench/load_test.py).
        return max(1, (os.cpu_count() or 1) - 1)


PRESTART_AFTER_S = 3.0  # the first page is drawn by then (about 3-4 s from the server's start here)


class WorkerPool:
    """At most ``size`` worker processes, created lazily (one pre-started), handed out first come,
    first served. A worker that died is dropped and a fresh one made on demand."""

    def __init__(self, size: int | None = None, prestart: bool = True):
        self.size = size or max_training_sessions()
        self._cond = threading.Condition()
        self._idle: list[WorkerProcess] = []
        self._count = 0                # workers alive or being started
        self._in_use = 0
        self._queue: deque[int] = deque()
        self._tickets = itertools.count(1)
        self._closed = False
        if prestart:  # the first Train of the day should not wait for a process to import torch ...
            timer = threading.Timer(PRESTART_AFTER_S, self._start_spare)
            timer.name, timer.daemon = "residual-lab-prestart", True
            timer.start()

    def _start_spare(self) -> None:
        """... but it should not import torch while the browser draws the first page on the same
        cores either; a Train pressed before then starts its worker as usual."""
        with self._cond:
            if self._closed or self._count > 0:
                return
            self._count = 1
        self._start_one()

    def _start_one(self) -> None:
        try:
            worker = WorkerProcess()
        except Exception:  # noqa: BLE001 - a later acquire will try again and report
            with self._cond:
                self._count -= 1
                self._cond.notify_all()
            return
        with self._cond:
            if self._closed:
                worker.close()
                return
            self._idle.append(worker)
            self._cond.notify_all()

    # ---- the queue -------------------------------------------------------------------------
    def enqueue(self) -> int:
        with self._cond:
            ticket = next(self._tickets)
            self._queue.append(ticket)
            return ticket

    def leave(self, ticket: int) -> None:
        with self._cond:
            if ticket in self._queue:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def position(self, ticket: int) -> int | None:
        """1 = next in line; None = not waiting."""
        with self._cond:
            try:
                return self._queue.index(ticket) + 1
            except ValueError:
                return None

    def try_acquire(self, ticket: int, wait_s: float = 0.25) -> WorkerProcess | None:
        """The ticket's worker if it is first in line and one is free (or may be started), else None
        after at most ``wait_s``. Starting a process happens outside the lock."""
        start = False
        with self._cond:
            if self._closed:
                raise PoolClosed("the server is shutting down")
            if self._queue and self._queue[0] == ticket:
                if self._idle:
                    worker = self._idle.pop()
                    self._queue.popleft()
                    self._in_use += 1
                    self._cond.notify_all()
                    return worker
                if self._count < self.size:
                    self._count += 1
                    start = True
            if not start:
                self._cond.wait(wait_s)
                return None
        threading.Thread(target=self._start_one, name="residual-lab-start", daemon=True).start()
        return None

    def release(self, worker: WorkerProcess) -> None:
        """Back to the pool, or closed and forgotten if it died (a step crashed it)."""
        alive = worker.alive
        with self._cond:
            self._in_use -= 1
            if alive and not self._closed:
                self._idle.append(worker)
            else:
                self._count -= 1
            self._cond.notify_all()
        if not alive or self._closed:
            worker.close()

    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"size": self.size, "training": self._in_use, "waiting": len(self._queue),
                    "workers": self._count}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for worker in idle:
            worker.close()
