"""Time slices for long jobs inside a worker process: one job runs at a time, for a bounded while.

A worker process hosts several sessions' work at once (``resnet_core.worker``): trainers,
stepped a few at a time by its main thread, and analysis jobs (a sweep's run, a loss landscape),
which are long function calls. Each such call runs in a thread of its own that may only run while
the main thread waits for it: ``SlicedThread.run_slice(budget_s)`` lets it go and returns once the job
calls the ``report`` it was handed after the budget is spent (or ends). So the process never runs two
things at once (one torch thread per process, as everywhere here), and the parent decides who runs
next, round robin, as it does for the trainers.

The job is handed the callback, not made to import it: ``report(partial)`` hands a progress
report to the parent, and ``report()`` with nothing is a place where the job may be paused (a
training loop calls it from its ``on_step``). This module imports no torch.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable

OUR_CODE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # resnet_core/: where a job may be paused


class Cancelled(BaseException):
    """Raised inside a sliced job at its next ``report`` after ``cancel``. A BaseException, so that
    the job's own ``except Exception`` blocks do not swallow it."""


class SlicedThread:
    """``function(report)`` in a thread that runs only during ``run_slice`` calls; ``report(partial)``
    collects a partial result, and every call of ``report`` is a place to pause or stop."""

    def __init__(self, function: Callable[[Callable[[Any], None]], Any], name: str = "sliced"):
        self._function = function
        self._go = threading.Event()       # the job may run
        self._back = threading.Event()     # the main thread may go on
        self._deadline = 0.0
        self._overdue = False              # the slice is spent: a preemptible job pauses at its next call
        self._cancelled = False
        self.used_s = 0.0                  # the process's CPU time during the last slice
        self.partials: list[Any] = []
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    # ---- the main thread's side ------------------------------------------------------------
    def run_slice(self, budget_s: float) -> list[Any]:
        """Let the job run for about ``budget_s`` (to its first ``report`` past it, or its end);
        the partial results reported meanwhile."""
        cpu = time.process_time()
        if not self.done:
            self._deadline = time.perf_counter() + budget_s
            self._overdue = False
            self._back.clear()
            self._go.set()
            if not self._back.wait(max(budget_s, 0.0)):
                self._overdue = True  # a preemptible job stops at its next call into this project's code
                self._back.wait()
        self.used_s = time.process_time() - cpu
        partials, self.partials = self.partials, []
        return partials

    def cancel(self) -> None:
        """Stop the job at its next ``report``, and wait for that."""
        self._cancelled = True
        while not self.done:
            self.run_slice(0.0)

    # ---- the job's thread --------------------------------------------------------------------
    def _main(self) -> None:
        self._go.wait()
        try:
            if self._cancelled:
                raise Cancelled
            self.result = self._function(self._report)
        except Cancelled:
            self.error = None
        except Exception as exc:  # noqa: BLE001 - handed to the main thread, which reports it
            self.error = exc
        finally:
            self.done = True
            self._back.set()

    def _report(self, partial: Any = None) -> None:
        if partial is not None:
            self.partials.append(partial)
        self._pause_if_due()

    def _pause_if_due(self) -> None:
        if self._cancelled:
            raise Cancelled
        if time.perf_counter() < self._deadline:
            return
        self.pause_here()

    def spent(self) -> bool:
        """From the job's thread: whether this slice's time is up."""
        return time.perf_counter() >= self._deadline

    def pause_here(self) -> None:
        """From the job's thread: give the process back until the next slice (or a cancel)."""
        self._go.clear()
        self._back.set()
        self._go.wait()
        if self._cancelled:
            raise Cancelled

    def preemptible(self, on: bool) -> None:
        """From the job's thread: whether it may also be paused between any two calls into this
        project's code once its slice is spent, not only at a ``report`` (so a slice of a step whose
        analyses take seconds still ends on time). It costs the job about a tenth of its speed (a
        profile hook on every call), so a job turns it on only while its steps are slow."""
        sys.setprofile(self._preempt if on else None)

    def _preempt(self, frame, event: str, arg: Any) -> None:
        where = frame.f_code.co_filename
        if (self._overdue or self._cancelled) and event == "call" and where.startswith(OUR_CODE) and where != __file__:
            self._overdue = False
            self._pause_if_due()
