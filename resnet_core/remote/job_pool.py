"""Analysis jobs on worker processes, driven from one thread: the command line's sweep.

A sweep's runs, a loss landscape or the shattered-gradient nets are each a job: a function
``f(args: dict, report) -> dict`` named in ``JOB_KINDS``. ``JobPool`` runs jobs on training worker
processes (``python -m resnet_core.worker``: the one kind of worker, speaking the one
protocol, that the dashboard's scheduler drives too), one job per worker at a time, as each comes
free, and yields their progress and results as they arrive. A worker runs a job a time slice at a
time (``job`` then ``slice`` commands, ``resnet_core.remote.slicing``), so a cancel is noticed
within a slice. Each worker has one torch thread: tiny layers are dispatch-bound, and two
processes on two cores nearly double throughput where two threads in one process do not.

The job functions are imported by name, in the worker: this module imports no torch.
"""
from __future__ import annotations

import importlib
import itertools
import json
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from resnet_core.errors import describe
from resnet_core.remote.transport import ProcessGone
from resnet_core.remote.worker_process import WorkerError, WorkerProcess, checked

# Jobs a worker may run: kind -> "module:function(args, report) -> dict". Nothing else is callable.
JOB_KINDS = {
    "train": "resnet_core.analysis.sweep.compute:train_one",
    "landscape": "resnet_core.analysis.landscape.compute:landscape_job",
    "shattered": "resnet_core.analysis.shattered.compute:shattered_job",
}
SLICE_S = 0.2  # a worker's turn on its job between two looks at a cancel (and at the other workers' news)


class JobFailed(RuntimeError):
    """A job failed inside a worker (its one-line message), the worker died, or it was cancelled."""


def job_function(kind: str) -> Callable[[dict[str, Any], Callable], dict[str, Any]]:
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}; known: {', '.join(JOB_KINDS)}")
    module, name = JOB_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class JobEvent:
    index: int  # position of the job in the list given to ``JobPool.run``
    partial: dict[str, Any] | None = None  # progress on the way
    result: dict[str, Any] | None = None  # the job's answer (then it is done)


class JobPool:
    """``workers`` processes running jobs of ``JOB_KINDS``, one at a time each; ``workers=0`` runs
    them in this process instead (a GPU, or a test). Reusable for batch after batch until closed."""

    def __init__(self, workers: int = 1):
        self.closed = threading.Event()
        self.batches = itertools.count()
        self.workers = [WorkerProcess() for _ in range(max(0, int(workers)))]

    def run(self, kind: str, jobs: list[dict[str, Any]]) -> Iterator[JobEvent]:
        """Events of every job as they come, across workers; a failed job raises JobFailed."""
        job_function(kind)  # an unknown kind fails here, not in a worker
        if not self.workers:
            yield from self._run_here(kind, jobs)
            return
        # Ids carry the batch: a batch given up half way (an error, a caller that stopped reading)
        # has its jobs cancelled, and nothing of it can pass for the next batch's.
        batch = next(self.batches)
        pending = list(enumerate(jobs))[::-1]
        idle = list(self.workers)
        running: dict[WorkerProcess, tuple[int, str]] = {}
        try:
            while pending or running:
                while idle and pending:
                    worker = idle.pop()
                    index, args = pending.pop()
                    key = f"job-{batch}-{index}"
                    _ask(worker, cmd="job", id=key, kind=kind, args=args)
                    running[worker] = (index, key)
                if self.closed.is_set():
                    raise JobFailed("cancelled")
                for worker, (_, key) in running.items():  # every worker works on its slice at once
                    _post(worker, cmd="slice", id=key, budget_s=SLICE_S)
                replies = [(worker, index, _answer(worker)) for worker, (index, _) in list(running.items())]
                for worker, index, reply in replies:
                    if reply.get("done"):
                        del running[worker]
                        idle.append(worker)
                for worker, index, reply in replies:
                    yield from (JobEvent(index, partial=p) for p in reply.get("partials", []))
                    if reply.get("done"):
                        if "error" in reply:
                            raise JobFailed(reply["error"])
                        yield JobEvent(index, result=reply["result"])
        finally:
            for worker, (_, key) in running.items():  # the batch was given up: its jobs stop
                try:
                    worker.request(cmd="cancel", id=key)
                except WorkerError:
                    pass

    def _run_here(self, kind: str, jobs: list[dict[str, Any]]) -> Iterator[JobEvent]:
        fn = job_function(kind)
        for index, args in enumerate(jobs):
            if self.closed.is_set():
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


def _ask(worker: WorkerProcess, **msg: Any) -> dict[str, Any]:
    _post(worker, **msg)
    return _answer(worker)


def _post(worker: WorkerProcess, **msg: Any) -> None:
    try:
        worker.send(msg)
    except ProcessGone as exc:
        raise JobFailed("the training process has stopped") from exc


def _answer(worker: WorkerProcess) -> dict[str, Any]:
    try:
        return checked(worker.receive())
    except ProcessGone as exc:
        raise JobFailed("the training process ended unexpectedly") from exc
    except WorkerError as exc:
        raise JobFailed(str(exc)) from exc
