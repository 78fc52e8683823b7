"""A task driven by a thread outside the scheduler: one command at a time, its answer waited for.

The command line's main thread is its scheduler's one owner: it leaves a command with each of its
tasks (``send``), every host gives its task a turn at once, and the main thread collects the
answers (``reply``) in its own order. The round trip itself, its deadline, its decoding and its
errors are the host's (``Host.call``), as for every task of the server: a worker's error arrives
as a ``WorkerError`` (its one line, and whether it is the user's to fix), a process that died as
one too. Torch-free.
"""
from __future__ import annotations

import math
import threading
from typing import Any

from resnet_core.remote.worker_process import WorkerError
from resnet_core.scheduling.task import Host, Task


class RoundTrip(Task):
    """One worker process's conversation with a waiting thread: ``send``, then ``reply``."""

    def __init__(self, owner: str, deadline_s: float = math.inf):
        """``deadline_s``: how long an answer may take (default: as long as it takes, as a user at a
        terminal waits for a deep net's step)."""
        self.owner, self.deadline_s = owner, deadline_s
        self._command: dict[str, Any] | None = None
        self._answer: dict[str, Any] = {}
        self._error: WorkerError | None = None
        self._answered = threading.Event()

    def runnable(self) -> bool:
        return self._command is not None

    def send(self, cmd: str, **msg: Any) -> None:
        """Leave ``cmd`` for the host's next turn (at once: this task is its host's only one)."""
        if self._error is not None:
            raise self._error
        self._answered.clear()
        self._command = {"cmd": cmd, **msg}
        self.wake()

    def reply(self) -> dict[str, Any]:
        """The answer to the command sent; raises the conversation's WorkerError."""
        self._answered.wait()
        if self._error is not None:
            raise self._error
        return self._answer

    def turn(self, host: Host, quantum_s: float) -> None:
        command, self._command = self._command, None
        if command is None:
            return
        try:
            self._answer = host.call(command.pop("cmd"), self.deadline_s, **command)
        except WorkerError as exc:
            self._error = exc
        self._answered.set()

    def lost(self, message: str) -> None:
        self._command = None
        self._error = WorkerError(message)
        self._answered.set()
