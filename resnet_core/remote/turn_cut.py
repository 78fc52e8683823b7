"""A turn cut short: while its worker process is in a turn for a dozen runs together (up to
``GROUP_TURN_S``, and longer where their analyses fall on one step), the parent may ask it to end
that turn at the next step's end, because a session has just clicked Train and its first step
should not wait for everyone else's half second. A signal, not a message: the process reads its
messages only between turns. Torch-free.
"""
from __future__ import annotations

import os
import signal

SIGNAL = getattr(signal, "SIGUSR1", None)  # POSIX; elsewhere no turn is ever cut


class TurnCut:
    """The worker process's side: whether the parent has asked for a cut (``asked``) since the last
    turn that ended for it (``clear``). One made by ``listening`` hears the parent's signal; a plain
    one is never asked (trainers in turns in a process nobody signals: the tests')."""

    def __init__(self) -> None:
        self._asked = False

    @classmethod
    def listening(cls) -> "TurnCut":
        """One the parent's ``ask`` reaches: made in the process's main thread as it starts."""
        cut = cls()
        if SIGNAL is not None:
            signal.signal(SIGNAL, cut._on_signal)
        return cut

    def _on_signal(self, signum: int, frame: object) -> None:
        self._asked = True

    def asked(self) -> bool:
        return self._asked

    def clear(self) -> None:
        self._asked = False


def ask(pid: int) -> None:
    """The parent's side: ask worker process ``pid``, which made its ``TurnCut`` as it started, to
    end the turn under way at the next step's end (nothing where it has gone)."""
    if SIGNAL is not None:
        try:
            os.kill(pid, SIGNAL)
        except (ProcessLookupError, PermissionError):
            pass
