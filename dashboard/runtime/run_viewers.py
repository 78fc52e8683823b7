"""What the sessions viewing a ``Run`` ask of it and read from it, from any thread: the steps each
viewer wants, joining a run of the class and taking it out of the class for a change, requests
for its turns, its pace. The ``Run`` (``runs.py``) carries these out at its turns.

Nothing here calls Streamlit, and this module imports no torch.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from resnet_core.records import run_finished

RATE_WINDOW_S = 5.0        # steps per second are measured over this much of the recent past
END = 1 << 60              # a target that means "to the end of the run, wherever that is by then"


@dataclass
class _Request:
    method: str
    kwargs: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class Viewed:
    """The viewers' side of a ``Run`` (its state: ``lock``, ``targets``, ``sessions``, ``control``,
    ``key``, ``closing``, ``progress``, set up by ``Run``)."""

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

    def steps_per_s(self) -> float | None:
        """The run's pace over the last few seconds: None until two turns have been measured."""
        with self.lock:
            now = time.monotonic()
            recent = [(t, s) for t, s in self.progress if now - t <= RATE_WINDOW_S]
        steady = len(recent) >= 2 and recent[-1][0] > recent[0][0]
        return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0]) if steady else None
