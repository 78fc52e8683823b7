"""Independent jobs in worker processes, JSON in and JSON out, and a thread to drive them.

A sweep's runs, a loss landscape or the shattered-gradient nets are each a job: a function
``f(args: dict, report) -> dict`` named in ``JOB_KINDS``. ``JobPool`` runs jobs on worker
processes with one torch thread each (tiny layers are dispatch-bound: two processes on two cores
nearly double throughput, two threads in one process do not), as each worker comes free, and
yields their progress and results as they arrive.

A worker is a fresh interpreter (``python -m resnet_core.analysis.worker``) talking JSON lines over
its stdin and stdout (``resnet_core.remote.transport``), as the training workers do. The job
functions are imported by name, in the worker: this module imports no torch.
"""
from __future__ import annotations

import importlib
import itertools
import json
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from resnet_core.errors import describe
from resnet_core.remote.transport import JsonProcess, ProcessGone
from resnet_core.sizing.budget import out_of_memory, out_of_memory_message

# Jobs a worker may run: kind -> "module:function(args, report) -> dict". Nothing else is callable.
JOB_KINDS = {
    "train": "resnet_core.analysis.sweep.compute:train_one",
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


def run_job(msg: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
    """A worker's handling of one job: progress lines, then the result (or the error in one line)."""
    job_id = msg["id"]
    try:
        result = job_function(msg["kind"])(msg["args"], lambda partial: send({"id": job_id, "partial": partial}))
        send({"id": job_id, "result": result})
    except Exception as exc:  # noqa: BLE001 - sent to the parent, which shows it
        send({"id": job_id, "error": out_of_memory_message() if out_of_memory(exc) else describe(exc)})


@dataclass
class JobEvent:
    index: int  # position of the job in the list given to ``JobPool.run``
    partial: dict[str, Any] | None = None  # progress on the way
    result: dict[str, Any] | None = None  # the job's answer (then it is done)


class _Worker(JsonProcess):
    """One worker interpreter; a reader thread turns its messages into events on a queue."""

    def __init__(self, events: queue.Queue):
        super().__init__("resnet_core.analysis.worker")
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
                raise JobError(describe(exc)) from exc
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
