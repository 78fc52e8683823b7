"""One computation, many viewers: this server's runs by key, and the run cache on disk.

A run is a pure function of its settings, its seed and the code (``run_keys.run_key``). So the
first session that trains a key trains it for everyone: ``ClassRuns.source(settings)`` hands every
later session with the same key that same ``Run`` while it is in progress (each session follows
it with a cursor of its own, ``jobs.TrainingJob``), or, once it is finished, its record: from this
process's memory, or from the ``RunCache`` folder, so across server processes and restarts too.
A finished run is put there as it finishes, unless it was changed on the way (the learning-rate
slider, a new step count: then it is no longer a run of its key, and the registry forgets it).

The page marks a session served this way with ``CACHED_NOTICE``. Nothing here calls Streamlit,
and this module imports no torch.
"""
from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from resnet_core.errors import UserError
from resnet_core.records import STEP_TABLES, RunRecord
from resnet_core.settings import Settings

from dashboard.runtime.run_cache import RunCache, full_record
from dashboard.runtime.run_keys import run_key
from dashboard.runtime.record_at import Views
from dashboard.runtime.runs import Run
from dashboard.runtime.scheduler import Scheduler

CACHED_NOTICE = "from the class's run cache"
KEEP_FINISHED = 16      # finished records kept in memory (the lesson of the day, a few variations)
DEFAULT_PACE = 50.0     # steps per second to replay at where a record says nothing of its pace


def frozen_copy(record: RunRecord) -> RunRecord:
    """A copy of everything a run recorded as it trained, for the cache: every table and every
    decision map, without the lesion study (a user's request on the side, not part of the run)."""
    out = RunRecord(copy.deepcopy(record.config), {m: list(n) for m, n in record.layer_names.items()})
    out.add_metrics(record.metrics_frame().to_dict("records"))
    for model in record.layer_names:
        for snap in record.snapshots(model):
            out.add_layers(model, snap)
    paths = record.paths_frame()
    if len(paths):
        out.add_paths(paths.to_dict("records"))
    for table in STEP_TABLES:  # signal, jacobian, lens
        out.add_rows(table, record.table_frame(table).to_dict("records"))
    out.set_region_history(record.region_history())
    return out


class Replay:
    """A finished run from memory or the cache folder: nothing to compute, only to show. It has
    what viewers read of a ``Run`` (record, step, done, settings, the lock)."""

    error: str | None = None
    busy = False
    built = False
    host = None
    pause_maps = None
    control: tuple = ()

    def __init__(self, record: RunRecord, key: str):
        self.record, self.key = record, key
        self.lock = threading.Lock()
        self.moved = threading.Condition(self.lock)
        self.settings = self.initial = Settings.from_dict(record.config["settings"])
        self.changes: list[tuple[int, str, Any]] = []
        self.step = record.latest_step()
        metrics = record.metrics_frame()
        self.status = {m: ("diverged" if (metrics[metrics.model == m].status == "diverged").any() else "ok")
                       for m in record.models()}
        self.trainer_step = self.step
        self.views = Views()

    done = True
    closing = False

    def want(self, viewer: int, step: int | None, session: str | None = None) -> None:
        """A finished run goes nowhere: viewers move through what it recorded."""

    def push(self, item: Any) -> None:
        """Nothing to carry out (a Pause's maps, a change: the viewer forks a live run instead)."""

    def steps_per_s(self) -> float | None:
        return None


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


class ClassRuns:
    """The runs of one server process by key; see the module's docstring."""

    def __init__(self, scheduler: Scheduler, cache: RunCache | None = None, keep: int = KEEP_FINISHED):
        self.scheduler, self.cache, self.keep = scheduler, cache, keep
        self._lock = threading.Lock()
        self._live: dict[str, Run] = {}
        self._finished: OrderedDict[str, RunRecord] = OrderedDict()
        self.writes: list[threading.Thread] = []  # puts under way (tests wait for them)

    def source(self, settings: Settings, viewer: int | None = None,
               session: str | None = None) -> tuple[Run | Replay | None, bool]:
        """What a session that asks for a run of ``settings`` should view: (a run or a replay, whether
        it is new, started for this session). (None, False) for settings without a key: the session
        trains a run of its own, which reports its error if it has one. ``viewer`` (of ``session``)
        joins a live run in the same breath as its key is checked (``Run.join``)."""
        try:
            key = run_key(settings)
        except (UserError, ValueError, OSError):
            return None, False
        with self._lock:
            run = self._live.get(key)
            if run is not None and (run.error is not None or run.closing or run.key != key):
                del self._live[key]
                run = None
            if run is not None and viewer is not None and not run.join(viewer, session, key):
                del self._live[key]  # changed a moment ago: no longer the class's run
                run = None
            if run is not None:
                return run, False
            record = self._finished.get(key)
            if record is not None:
                self._finished.move_to_end(key)
        if record is None and self.cache is not None:
            record = self.cache.get(key)
            if record is not None:
                self._remember(key, record)
        if record is not None:
            return Replay(record, key), False
        run = Run(self.scheduler, settings, key=key, on_finish=self._finished_run, on_change=self._forget)
        with self._lock:
            self._live[key] = run
        return run, True

    def _remember(self, key: str, record: RunRecord) -> None:
        with self._lock:
            self._finished[key] = record
            self._finished.move_to_end(key)
            while len(self._finished) > self.keep:
                self._finished.popitem(last=False)

    def _finished_run(self, run: Run) -> None:
        """Called on the scheduler's thread as a run of a key finishes: its whole record is read
        back from the folder it streamed to (every row, not the history kept in memory: a replay is
        then the live run at every step), in the background; until that is done the finished run
        itself serves whoever asks for its key. Then it is kept in memory for the next session, and
        written to the cache folder."""
        key = run.key
        if key is None:
            return
        with self._lock:
            thread = threading.Thread(target=self._keep, args=(key, run), name="rl-run-cache", daemon=True)
            self.writes = [t for t in self.writes if t.is_alive()] + [thread]
        thread.start()

    def _keep(self, key: str, run: Run) -> None:
        try:
            record = full_record(run.record)
        except (OSError, ValueError):  # its folder is gone or was cut at its size limit: memory only
            record = None
        if record is not None and record is run.record:
            record = frozen_copy(run.record)  # it streamed nowhere: the record is the whole run
        if record is not None:
            self._remember(key, record)
        with self._lock:
            if self._live.get(key) is run:
                del self._live[key]
        if self.cache is not None and record is not None:
            try:
                self.cache.put(key, record)
            except (OSError, ValueError):
                pass  # a cache that cannot be written serves nobody, and costs nobody anything either

    def _forget(self, run: Run) -> None:
        """The run got a change on the way: it is no longer a run of any key."""
        with self._lock:
            for key, live in list(self._live.items()):
                if live is run:
                    del self._live[key]

    def wait_for_writes(self, timeout: float = 30.0) -> None:
        """Until every run that has finished is in the cache folder (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                finishing = any(run.key is not None and run.done for run in self._live.values())
                writing = any(t.is_alive() for t in self.writes)
            if not finishing and not writing:
                return
            time.sleep(0.02)
