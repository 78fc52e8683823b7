"""What the sessions viewing a ``Run`` ask of it and read from it, from any thread: the steps each
viewer wants, joining a run of the class and taking it out of the class for a change, requests
for its turns, its pace. The ``Run`` (``runs.py``) carries these out at its turns. With these a
``Run`` is a ``Source`` (``source.py``), as a ``Replay`` of a finished run is.

Nothing here calls Streamlit, and this module imports no torch.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from resnet_core.records import run_finished

RATE_WINDOW_S = 5.0        # steps per second are measured over this much of the recent past
END = 1 << 60              # a target that means "to the end of the run, wherever that is by then"


@dataclass
class _Request:
    method: str
    kwargs: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


def steps_per_s(samples: Iterable[tuple[float, int]], now: float) -> float | None:
    """Steps per second over the ``(monotonic, step)`` samples of the last ``RATE_WINDOW_S``: None
    until two of them, at two moments, have been taken. A run's (``Viewed``) and a cursor's."""
    recent = [(t, s) for t, s in samples if now - t <= RATE_WINDOW_S]
    steady = len(recent) >= 2 and recent[-1][0] > recent[0][0]
    return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0]) if steady else None


class Viewed:
    """The viewers' side of a ``Run`` (its state: ``lock``, ``targets``, ``sessions``, ``control``,
    ``key``, ``closing``, ``progress``, set up by ``Run``)."""

    live = True  # it can train further (a ``Source``'s question; a ``Replay`` cannot)

    # ---- what viewers ask (any thread) -----------------------------------------------------
    def want(self, viewer: int, step: int | None, session: str | None = None) -> None:
        """Viewer ``viewer`` (of session ``session``) wants the run to reach ``step`` (None: it has gone)."""
        with self.lock:
            if step is None:
                self.targets.pop(viewer, None)
                self.sessions.pop(viewer, None)
                close = not self.targets
            else:
                self.targets[viewer] = step
                self.sessions[viewer] = session
                close = False
        if close:
            self.close()
        else:
            self.wake()

    def join(self, viewer: int, session: str | None, key: str) -> bool:
        """Viewer ``viewer`` (of session ``session``), asking for a run of ``key``, starts viewing this
        one if it still is a run of that key: checked and registered at once, so that a change asked
        for meanwhile cannot slip in between (``take_out_of_class``)."""
        with self.lock:
            if self.key != key or self.closing or self.error is not None:
                return False
            self.targets.setdefault(viewer, 0)
            self.sessions[viewer] = session
            return True

    def take_out_of_class(self, viewer: int) -> bool:
        """Viewer ``viewer``, alone on this run, is about to change it: from this moment it is no
        run of its key, so nobody asking for that key is handed it (not from the turn that carries
        the change out: a classmate pressing Train meanwhile would get the changed run). False when
        another viewer is on it: the change must fork instead."""
        with self.lock:
            if set(self.targets) - {viewer}:
                return False
            changed, self.key = self.key is not None, None
        if changed and self.on_change is not None:
            self.on_change(self)
        return True

    def alone(self, viewer: int) -> bool:
        """Whether ``viewer`` is its only viewer (a change it asks for is then made in place)."""
        with self.lock:
            return not set(self.targets) - {viewer}

    def push(self, item: Any) -> None:
        with self.lock:
            self.control.append(item)
        self.wake()

    def close(self) -> None:
        """Nobody watches any more: the trainer leaves its process at the next turn."""
        with self.lock:
            self.closing = True
        self.wake()

    # ---- reading (any thread) ----------------------------------------------------------------
    @property
    def done(self) -> bool:
        return run_finished(self.step, self.settings.steps, self.status)

    @property
    def behind(self) -> bool:
        """Its models in their process are behind its head: dropped while idle, or being rebuilt up
        to it (read under ``lock``)."""
        return self.record is not None and self.step > 0 and (not self.built or self.trainer_step < self.step)

    @property
    def host_pid(self) -> int | None:
        """The worker process it trains in (tests, benchmarks)."""
        host = self.host
        return host.pid if host is not None else None

    def steps_per_s(self) -> float | None:
        """The run's pace over the last few seconds: None until two turns have been measured."""
        with self.lock:
            progress = list(self.progress)
        return steps_per_s(progress, time.monotonic())
