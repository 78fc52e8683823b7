"""Batches of analysis jobs for a waiting thread: the command line's sweep, through a scheduler.

``JobPool(workers)`` holds a scheduler of ``workers`` processes (the one driver of worker
processes, the server's too) whose one owner is the calling thread. ``run(kind, jobs)`` hands the
batch to an ``AnalysisRun`` (``analysis_run.py``: each job a task given time slices, at most one per
process at a time, the next started as one finishes, deepest first as planned) and yields each
partial result and result as it arrives; a failed job raises ``JobFailed`` with its one line, and
the batch's other jobs are cancelled. ``workers=0`` runs the jobs in this process instead (a GPU,
or a test), with the same JSON round trip a worker's results take. Torch-free: the job functions
are imported by name where they run.
"""
from __future__ import annotations

import json
import queue
from typing import Any, Iterator

from resnet_core.errors import describe
from resnet_core.remote.job_kinds import JobEvent, JobFailed, job_function
from resnet_core.scheduling.analysis_run import AnalysisRun
from resnet_core.scheduling.parallel_trainer import OWNER, command_line_scheduler

_DONE = object()  # the batch has ended (every job finished, failed or cancelled)


class JobPool:
    """Reusable for batch after batch until closed."""

    def __init__(self, workers: int = 1):
        self.processes = max(0, int(workers))
        self.scheduler = command_line_scheduler(self.processes) if self.processes else None
        self.cancelled = False
        self._batch: AnalysisRun | None = None

    def run(self, kind: str, jobs: list[dict[str, Any]]) -> Iterator[JobEvent]:
        """Events of every job as they come, across processes; a failed job raises JobFailed."""
        job_function(kind)  # an unknown kind fails here, not in a worker
        if self.scheduler is None:
            yield from self._run_here(kind, jobs)
            return
        if self.cancelled:
            raise JobFailed("cancelled")
        events: queue.SimpleQueue = queue.SimpleQueue()
        batch = self._batch = AnalysisRun(self.scheduler, kind, jobs, lambda run, event: events.put(event),
                                          parallel=self.processes, owner=OWNER, on_done=lambda run: events.put(_DONE))
        try:
            while (event := events.get()) is not _DONE:
                if batch.error is not None:
                    break
                yield event
            if batch.error is not None:
                raise JobFailed(batch.error)
            if batch.cancelled:
                raise JobFailed("cancelled")
        finally:
            batch.cancel()  # a batch given up half way (an error, a caller that stopped reading) stops

    def _run_here(self, kind: str, jobs: list[dict[str, Any]]) -> Iterator[JobEvent]:
        fn = job_function(kind)
        for index, args in enumerate(jobs):
            if self.cancelled:
                raise JobFailed("cancelled")
            partials: list[dict[str, Any]] = []

            def report(partial: dict[str, Any] | None = None) -> None:
                if partial is not None:
                    partials.append(partial)

            # The same JSON round trip as a worker's, so both paths hand back the same values.
            try:
                result = json.loads(json.dumps(fn(json.loads(json.dumps(args)), report)))
            except Exception as exc:  # noqa: BLE001 - the same message a worker would send
                raise JobFailed(describe(exc)) from exc
            yield from (JobEvent(index, partial=p) for p in partials)
            yield JobEvent(index, result=result)

    def cancel(self) -> None:
        """From any thread: the thread iterating ``run`` stops within a slice (and should close)."""
        self.cancelled = True
        if self._batch is not None:
            self._batch.cancel()

    def close(self, wait_s: float = 0.5) -> None:
        """End the processes; a job under way is abandoned."""
        self.cancel()
        if self.scheduler is not None:
            self.scheduler.close(wait_s)

    @property
    def usable(self) -> bool:
        return not self.cancelled and (self.scheduler is None or all(
            h.process is None or h.process.alive for h in self.scheduler.hosts))

    def __enter__(self) -> "JobPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
