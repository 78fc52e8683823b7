"""How a scheduler starts and drives its worker processes: the server's way and the command line's.

A server's processes are many sessions' for hours: each may hold its share of the server's memory,
gives way to the server answering pages once warm (``transport.server_worker_nice``), and the first
is started and warmed up before anyone asks (the first Train of the day finds it ready). The
command line's are one run's for a moment: each may hold one run's memory, runs at the command's
own priority, and all start at once, their start-up (an interpreter, torch) overlapping the
command's checks, with no warm-up to pay for. Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass

from resnet_core.remote.transport import server_worker_nice
from resnet_core.sizing.budget import server_worker_limit_mb


@dataclass(frozen=True)
class WorkerPolicy:
    limit_mb: int | None    # the memory each process may use (None: one run's, ``worker_limit_bytes``)
    nice: int               # how much lower than its owner's a warm process's priority is
    warm_up: bool           # a fresh process is told to warm up (torch's lazy imports, first kernels)
    eager: bool             # every host starts its process at once, not at its first task


def server_policy(size: int) -> WorkerPolicy:
    """A server's ``size`` processes."""
    return WorkerPolicy(limit_mb=server_worker_limit_mb(size), nice=server_worker_nice(), warm_up=True, eager=False)


COMMAND_LINE = WorkerPolicy(limit_mb=None, nice=0, warm_up=False, eager=True)
