"""A session's cursor on a source (``source.py``): the step it shows, and how that step moves.

Playing, the cursor follows a live run's head (it is ``glued`` to it), or, behind the head (a class's
run joined late, a replay of a finished run), moves through what the run recorded at the pace the
run was trained at (``Pace``), until it catches up with a run still under way and follows it from
there. Stepping, it moves to the step asked for as soon as the run has it. The page is shown the
record as it stood at the cursor (``record``): every table and chart exactly as a live run's at
that step.

A cursor has no lock of its own: its session's guards it. Nothing here calls Streamlit, and this
module imports no torch.
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np

from resnet_core.records import RunRecord

from dashboard.runtime.record_at import record_until
from dashboard.runtime.run_viewers import END, steps_per_s
from dashboard.runtime.source import Source

DEFAULT_PACE = 50.0     # steps per second to replay at where a record says nothing of its pace


class Cursor:
    """Where one session stands in one source; see the module's docstring."""

    def __init__(self, source: Source, own: bool):
        """``own``: the session started this source (nobody else's run is served to it)."""
        self.source, self.own = source, own
        self.step = 0                        # the step shown
        self.glued = source.live and source.step == 0  # the cursor is the run's head, and follows it
        self.goal = 0                        # the step wanted: END while playing
        self.playing = False
        self.anchor = (0, 0.0)               # (step, monotonic): where a paced replay counts from
        self.pace: Pace | None = None
        self.samples: deque[tuple[float, int]] = deque(maxlen=64)  # (monotonic, step shown)
        self._copy: tuple[tuple, RunRecord] | None = None  # the record with this session's own lesion study

    # ---- moving ----------------------------------------------------------------------------
    def play(self, now: float) -> None:
        self.playing, self.goal = True, END
        self.anchor = (self.step, now)

    def hold(self) -> None:
        self.playing = False
        self.goal = self.step

    def forward(self, n: int) -> None:
        self.playing = False
        self.goal = self.step + int(n)

    def take_over(self, source: Source, now: float) -> None:
        """Go on in ``source``, a run of the session's own at this very step (a fork that caught up)."""
        self.source, self.own, self.glued = source, True, True
        self.anchor, self._copy = (self.step, now), None

    def sync(self, now: float) -> None:
        """Move the cursor to where it is by now."""
        source = self.source
        head = source.step
        if self.goal > self.step:
            if self.glued:
                self.step = min(self.goal, head)
            elif self.playing:
                record = source.record
                if record is not None and (self.pace is None or self.pace.version != record.version):
                    self.pace = Pace(record)
                pace = self.pace
                paced = pace.step_at(pace.wall_at(self.anchor[0]) + now - self.anchor[1]) if pace else head
                self.step = max(self.step, min(self.goal, head, paced))
            else:
                self.step = min(self.goal, head)
            if self.step >= head and source.live and not source.done:
                self.glued = True  # caught up with a run still under way: live from here
        if not self.samples or self.samples[-1][1] != self.step or now - self.samples[-1][0] > 1:
            self.samples.append((now, self.step))

    # ---- reading ---------------------------------------------------------------------------
    def at_head(self) -> bool:
        return self.glued and self.step == self.source.step

    def steps_per_s(self) -> float | None:
        """How fast the cursor moves (a replay's pace; glued, the run's own is read instead)."""
        return steps_per_s(self.samples, time.monotonic())

    def record(self) -> RunRecord | None:
        """The record as it stood at the cursor (the run's own while the cursor is its head)."""
        source = self.source
        record = source.record
        if record is None:
            return None
        maps = source.pause_maps
        overlay = maps is not None and maps[0] == self.step
        if self.step >= source.step and not overlay:
            return record
        view = source.views.at(record, self.step, maps[1] if overlay else None)
        lesion = record.lesion_rows() if self.own else []
        if not lesion:
            return view
        key = (id(view), len(lesion))  # this session's own lesion study, on its own run: a copy of its own
        if self._copy is None or self._copy[0] != key:
            mine = record_until(view, self.step)
            mine.set_lesion(lesion)
            self._copy = (key, mine)
        return self._copy[1]

    def record_changed(self) -> None:
        """An analysis added to the record: the copy made for this session is made again."""
        self._copy = None


class Pace:
    """How fast a run went: steps against its trainer's clock (metrics' wall_s), to replay it at
    the pace it was trained at."""

    def __init__(self, record: RunRecord):
        metrics = record.metrics_frame()
        if len(metrics):
            by_step = metrics.groupby("step", sort=True)["wall_s"].max()
            self.steps = by_step.index.to_numpy(float)
            self.walls = np.maximum.accumulate(by_step.to_numpy(float))
        else:
            self.steps = self.walls = np.zeros(1)
        self.version = record.version

    def wall_at(self, step: float) -> float:
        if len(self.steps) < 2 or self.walls[-1] <= self.walls[0]:
            return step / DEFAULT_PACE
        if step > self.steps[-1]:  # beyond the last evaluation: at the last stretch's pace
            rate = (self.steps[-1] - self.steps[-2]) / max(self.walls[-1] - self.walls[-2], 1e-6)
            return float(self.walls[-1] + (step - self.steps[-1]) / max(rate, 1e-6))
        return float(np.interp(step, self.steps, self.walls))

    def step_at(self, wall: float) -> int:
        if len(self.steps) < 2 or self.walls[-1] <= self.walls[0]:
            return int(wall * DEFAULT_PACE)
        if wall > self.walls[-1]:
            rate = (self.steps[-1] - self.steps[-2]) / max(self.walls[-1] - self.walls[-2], 1e-6)
            return int(self.steps[-1] + (wall - self.walls[-1]) * rate)
        return int(np.interp(wall, self.walls, self.steps))
