"""A fork: a run of a session's own, replayed up to the step its cursor stands at and changed there.

A session that changes the learning rate or the step count of a run it does not have to itself (the
class's run others follow, a replay of a finished one, a run it stands behind the head of) cannot
change that run: it forks. A run is a pure function of its settings and the changes made to it at
the steps they were made (``runs.py``), so a new ``Run`` given the same settings and the changes up
to the cursor's step, and the new change at it, is the very run with that change. It trains up to
that step recording nothing new to the page, which stays at the step meanwhile; then the session's
cursor goes on in it (``Cursor.take_over``), live.

Nothing here calls Streamlit, and this module imports no torch.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from dashboard.runtime.runs import Run
from resnet_core.scheduling.scheduler import Scheduler
from dashboard.runtime.source import Source


class Fork:
    """A run of the session's own on its way to ``step``; see the module's docstring."""

    def __init__(self, scheduler: Scheduler, source: Source, step: int, changes: list[tuple[str, Any]],
                 goal: int, viewer: int, owner: str | None):
        """``changes``: (name, value) made at ``step`` (none: a run of its own to answer a request
        at that step); ``goal``: the step the viewer wants to go on to."""
        made = [c for c in source.changes if c[0] <= step]
        initial = source.initial
        for name, value in changes:  # the page checked the values (Settings.checked): trusted here
            if step == 0:
                initial = replace(initial, **{name: value})
            else:
                made.append((step, name, value))
        self.step = step
        self.run = Run(scheduler, initial, changes=made)
        self.run.hold_until = step  # requests wait until it is there
        scheduler.add(self.run)
        self.run.want(viewer, max(step, goal), owner)
        source.want(viewer, None)  # this session no longer wants that run further

    def change(self, name: str, value: Any) -> None:
        """One more change to make at the fork's step (it is still on its way there)."""
        run = self.run
        with run.lock:
            run.changes = [c for c in run.changes if c[:2] != (self.step, name)]
            if self.step == 0:
                run.initial = replace(run.initial, **{name: value})
            else:
                run.changes.append((self.step, name, value))

    def caught_up(self) -> bool:
        """At its step (or failed on the way): the session goes on in it."""
        run = self.run
        return run.error is not None or (run.record is not None and run.step >= self.step)
