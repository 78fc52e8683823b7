"""The worker process seen from the side that drives it: ``python -m resnet_core.worker`` over JSON
lines (``transport``), and how its answers are read.

Every driver reads a reply through ``checked``: an answer that is not ``ok`` is a ``WorkerError``,
the worker's one line and whether it is the user's to fix. The one driver of worker processes is
the scheduler (``resnet_core/scheduling``), the server's and the command line's; a test may talk to
one process directly (``request``). Torch-free.
"""
from __future__ import annotations

from typing import Any

from resnet_core.remote.transport import JsonProcess, ProcessGone

# Trainer methods a parent may ask a worker to run; what they record is forwarded to the parent.
REMOTE_METHODS = ("decision_regions", "lesion_study", "path_analysis", "save_models")
WORKER_MODULE = "resnet_core.worker"


class WorkerError(RuntimeError):
    """A command failed inside a worker, or the worker is gone: the one line to show, and whether it
    is the user's to fix (a setting, a file) or a fault of ours."""

    def __init__(self, message: str, user: bool = False):
        super().__init__(message)
        self.user = user


def checked(reply: dict[str, Any]) -> dict[str, Any]:
    """``reply``, or its error raised as a WorkerError."""
    if not reply.get("ok"):
        raise WorkerError(reply.get("error", "unknown error"), user=bool(reply.get("user")))
    return reply


class WorkerProcess(JsonProcess):
    """One long-lived worker process; reusable for run after run (``init`` resets a trainer)."""

    def __init__(self, limit_mb: int | None = None) -> None:
        """``limit_mb``: the memory the process may use (default: one run's, ``worker_limit_bytes``)."""
        super().__init__(WORKER_MODULE, limit_mb)

    def request(self, **msg: Any) -> dict[str, Any]:
        """One round trip, waiting as long as it takes (a test's, a benchmark's direct line)."""
        try:
            self.send(msg)
            return checked(self.receive())
        except ProcessGone as exc:
            raise WorkerError("the training process ended unexpectedly") from exc
