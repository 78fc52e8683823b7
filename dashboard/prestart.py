"""The server's first worker process, started before anything else the app imports.

The first page view of a fresh server runs ``app.py``, and its first line imports this module: a
worker process starts at once and warms up (imports torch, builds and steps the degradation preset
once: about 3 s of one core) on one core while the server imports pandas and plotly and draws the
page on the other. The scheduler's first host takes it over (``take``), so the day's first Train
finds a warm process. Importing this module is what starts it, once per server process.
"""
from __future__ import annotations

import threading

from resnet_core.remote.transport import JsonProcess

import dashboard.runtime.scratch as scratch

TRAINING_WORKER = "resnet_core.worker"  # what resnet_core.remote.worker_process.WorkerProcess runs

_lock = threading.Lock()
_spare: JsonProcess | None = None


def start() -> None:
    global _spare
    with _lock:
        if _spare is None:
            try:
                from resnet_core.sizing.budget import server_processes, server_worker_limit_mb

                _spare = JsonProcess(TRAINING_WORKER, server_worker_limit_mb(server_processes()))
                _spare.send({"cmd": "warm"})
            except (OSError, RuntimeError):
                _spare = None  # the scheduler starts one itself, and reports if it cannot


def take() -> JsonProcess | None:
    """The pre-started process (its reply to "warm" still to be read), once; None after that."""
    global _spare
    with _lock:
        spare, _spare = _spare, None
    return spare


scratch.sweep_dead()  # what a killed server left in the temporary folder goes as this one starts
start()
