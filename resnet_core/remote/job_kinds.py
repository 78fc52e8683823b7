"""The analysis jobs a worker process may run, and what a driver hears of them. Torch-free.

A sweep's runs, a loss landscape or the shattered-gradient nets are each a job: a function
``f(args: dict, report) -> dict`` named in ``JOB_KINDS`` and imported by name in the worker
(``resnet_core/worker.py``), which runs it a time slice at a time (``job`` then ``slice`` commands,
``slicing.SlicedThread``). Its driver (``resnet_core/scheduling/analysis_run.py``) hears each partial
result and the result as a ``JobEvent``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

# Jobs a worker may run: kind -> "module:function(args, report) -> dict". Nothing else is callable.
JOB_KINDS = {
    "train": "resnet_core.analysis.sweep.compute:train_one",
    "landscape": "resnet_core.analysis.landscape.compute:landscape_job",
    "shattered": "resnet_core.analysis.shattered.compute:shattered_job",
}


class JobFailed(RuntimeError):
    """A job failed inside a worker (its one-line message), the worker died, or it was cancelled."""


def job_function(kind: str) -> Callable[[dict[str, Any], Callable], dict[str, Any]]:
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}; known: {', '.join(JOB_KINDS)}")
    module, name = JOB_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class JobEvent:
    index: int  # position of the job in its list
    partial: dict[str, Any] | None = None  # progress on the way
    result: dict[str, Any] | None = None  # the job's answer (then it is done)
