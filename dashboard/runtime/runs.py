"""A ``Run``: one computation of the dashboard, a trainer in one of the server's worker processes.

A run is a task of the server's ``Scheduler``: it gets turns, round robin with every other run and
analysis job on its process, and each turn steps it for about one quantum. It steps only while a
session viewing it wants it further (``want``: Train, or steps asked for with Step): a paused or
finished run costs no CPU. Changes to its learning rate or step count, decision maps for a paused
class, and analyses on its models (``push``) are carried out between steps, at its turns.

A run whose trainer was dropped from its process (idle for a long while, ``EVICT_IDLE_S``) is
rebuilt on demand: a run is a pure function of its settings, its seed and the changes made to it
(at the steps they were made), so the process replays those steps, recording nothing, up to where
it was (CPU training here is deterministic; see tests/test_sessions.py).

Whose share pays for a run's turns (``Task.owner``, see ``scheduler``): the one session viewing
it, so its run and its analyses share one. A run viewers of several sessions follow (a class on
one lesson, ``class_runs``), or of none, is its own owner: following the teacher's run costs nobody
a part of theirs. The owner follows the viewers as they come and go.

Nothing here calls Streamlit, and this module imports no torch.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Any, Callable

from resnet_core.records import RunRecord
from resnet_core.records.events import replay_events
from resnet_core.remote.worker_process import WorkerError
from resnet_core.settings import Settings, SettingsError
from resnet_core.sizing.budget import resident_bytes

import dashboard.runtime.run_groups as run_groups
import dashboard.runtime.scratch as scratch
from dashboard.runtime.session_status import refused
from dashboard.runtime.record_at import Views
from dashboard.runtime.run_viewers import Viewed, _Request
from resnet_core.scheduling.scheduler import (START_DEADLINE_S, Host, HostLost, Scheduler, SchedulerFull, Task,
                                         reply_deadline)

CALL_DEADLINE_S = 120.0    # an analysis call on the trained models (a lesion study of a deep net)
FIRST_TURN_S = 1.0         # a run's first turn may take this long: its build and its first step, in one


class Run(Viewed, Task):
    """One computation in one worker process; see the module's docstring."""

    resident = True
    _ids = itertools.count(1)

    def __init__(self, scheduler: Scheduler, settings: Settings, changes: list[tuple[int, str, Any]] = (),
                 key: str | None = None, on_finish: Callable[["Run"], None] | None = None,
                 on_change: Callable[["Run"], None] | None = None):
        """``changes``: made at the steps they name, as it gets there (a run forked from another at
        the step a session changed a setting). ``key``: the run cache's key of the run while it has
        no changes; ``on_finish(run)`` once it is finished so, ``on_change(run)`` when it gets one."""
        self.scheduler, self.id = scheduler, f"run-{next(Run._ids)}"
        self.lock = threading.Lock()
        self.moved = threading.Condition(self.lock)  # notified after every turn that changed something
        self.settings = settings            # as they are now (lr and steps may have moved)
        self.initial = settings             # as the run began: with ``changes``, what it is a function of
        self.changes: list[tuple[int, str, Any]] = list(changes)  # (step, "lr" | "steps", value), in order
        self.applied = 0                    # how many of them the trainer in the process has had
        self.key = key if not self.changes else None
        self.on_finish, self.on_change, self._reported = on_finish, on_change, False
        self.pause_maps: tuple[int, dict[str, tuple[int, dict[str, Any]]]] | None = None  # (step, maps) drawn on Pause
        self.hold_until = 0                 # requests wait until the run is at this step (a fork's)
        self.views = Views()
        self.record: RunRecord | None = None
        self.step = 0                       # the run's head: its latest step
        self.trainer_step = 0               # the trainer's in its process (below ``step`` while rebuilt)
        self.status: dict[str, str] = {}
        self.diverged_at: dict[str, int] = {}
        self.error: str | None = None
        self.built, self.closing = False, False
        self.busy = False                   # a turn is under way: the step may still move
        self.mid = False                    # the trainer is in the middle of a step (turns.py): more turns first
        self.later = False                  # its step 0 analyses wait for a turn after its first step (turns.py)
        self.step_s = 0.0                   # the process's time its last step took, analyses included
        self.targets: dict[int, int] = {}   # viewer id -> the step it wants to see
        self.sessions: dict[int, str | None] = {}  # viewer id -> its session (whose share it uses)
        self.control: deque[Any] = deque()  # ("lr" | "steps", value), ("regions",), _Request
        self.progress: deque[tuple[float, int]] = deque(maxlen=400)  # (monotonic, step) after each turn
        self.longest_turn_s, self.idle_since = 0.0, time.monotonic()
        self.kin = run_groups.shape_of(settings)  # runs of one shape: turns together where they share a process
        self.largest_stack = 1              # the most models of one shape it trained in one stack with
        try:  # what its models hold in a worker process (the scheduler places and admits it by this)
            self.memory = resident_bytes(settings)
        except SettingsError:
            self.memory = 0  # too big for any run: its process says so, and holds nothing

    # ---- the scheduler's side ----------------------------------------------------------------
    @property
    def owner(self) -> str:
        """The one session viewing this run, else the run itself; see the module's docstring."""
        with self.lock:
            sessions = set(self.sessions.values())
        return sessions.pop() if len(sessions) == 1 and None not in sessions else self.id

    @property
    def holding(self) -> bool:
        return self.built

    def wanted(self) -> int:
        """The step its viewers want it at (its step count at most)."""
        return min(max(self.targets.values(), default=0), self.settings.steps)

    def runnable(self) -> bool:
        with self.lock:
            if self.closing:
                return self.host is not None
            if self.error is not None:
                return False
            if self.built and (self.mid or self.later):
                return True
            if self.control and not (self.step < self.hold_until and all(isinstance(c, _Request) for c in self.control)):
                return True
            return self.wanted() > self.step and not self.done

    def joinable(self) -> bool:
        """Built and at its head, with nothing to do but steps (no control item, no change due):
        it may step with the runs of its shape (``kin``) in one turn, their models in shared stacks."""
        with self.lock:
            return (self.built and not self.closing and self.error is None and not self.control
                    and self.trainer_step >= self.step and self.applied >= len(self.changes)
                    and (self.mid or (self.wanted() > self.step and not self.done)))

    @classmethod
    def turn_together(cls, host: Host, budget_s: float, tasks: list[Task]) -> dict[Task, float]:
        return run_groups.turn_together(host, budget_s, tasks)  # all runs: only runs have a kin (task.py)

    def working(self) -> bool:
        with self.lock:  # step 0's held-back analyses too: evicted first, they would be lost
            return self.error is None and not self.closing and (self.later or (self.wanted() > self.step and not self.done))

    def _needs_trainer(self) -> bool:
        """Unbuilt, is there anything a trainer is needed for? (A Pause alone is not.)"""
        if self.wanted() > self.step and not self.done:
            return True
        self.control = deque(item for item in self.control if item != ("regions",))
        return bool(self.control)

    def turn(self, host: Host, quantum_s: float) -> None:
        with self.lock:
            self.busy = True
        try:
            self._turn(host, quantum_s)
        finally:
            with self.lock:
                self.busy = False
                self.idle_since = time.monotonic()  # idle from the last turn on, once it wants nothing more
                self.moved.notify_all()

    def _turn(self, host: Host, quantum_s: float) -> None:
        with self.lock:
            closing, built = self.closing, self.built
        if closing:
            self._leave(host, built)
            return
        try:
            if not built:
                with self.lock:
                    needed = self._needs_trainer()
                if not needed:
                    return
                self._build(host, quantum_s)  # a turn of its own: building and step 0's analyses
                return
            while True:
                with self.lock:
                    item = self.control.popleft() if self.control and not self.mid else None
                    if isinstance(item, _Request) and self.step < self.hold_until:
                        self.control.appendleft(item)  # answered at the step it was asked at
                        item = None
                if item is None:
                    break
                self._control(host, item)
            with self.lock:
                target = self.step if self.trainer_step < self.step else self.wanted()
                if self.error is not None or ((self.trainer_step >= target or self.done) and not (self.mid or self.later)):
                    return
                if self.applied < len(self.changes):  # rebuilding: stop where the next change falls due
                    target = min(target, self.changes[self.applied][0])
            self._advance(host, max(target, self.trainer_step + (0 if self.mid or self.later else 1)), quantum_s)
        except WorkerError as exc:
            self.fail(host, str(exc))
        except SchedulerFull as exc:  # its models could not be (re)built here now; Train asks again
            with self.lock:
                self.error = str(exc)
            self._fail_requests(self.error)

    def retry(self) -> None:
        """Train pressed again after the server was full: the run may try to build once more."""
        with self.lock:
            if refused(self.error):
                self.error = None

    def _leave(self, host: Host, built: bool) -> None:
        if built:
            try:
                host.call("drop", id=self.id)
            except (WorkerError, HostLost):
                pass
        with self.lock:
            self.built = False
        host.remove(self)
        self._fail_requests("the run was reset")
        scratch.discard_run(self.record)  # nobody views it any more: its files go

    def _build(self, host: Host, quantum_s: float) -> None:
        with self.lock:
            settings = self.initial
        host.make_room(self)
        with self.lock:
            self.built, self.trainer_step, self.applied, self.mid = True, 0, 0, True
            first = min(1, self.wanted())  # Train or Step asked for: its first turn goes on to step 1
        # A click shows a step however busy the process: built in one turn, not in many short ones
        # spread between the others' (the ledger charges its owner the time all the same).
        # A new run's step 0 analyses (half of a build) wait for the next turn: the first step is the
        # click's answer (a run rebuilt has its record already: nothing is held back).
        self._take_turn(host, "init", START_DEADLINE_S, settings=settings.to_dict(), turns=True, to=first,
                        budget_s=max(quantum_s, FIRST_TURN_S) if first else quantum_s, answer_first=self.record is None)

    def _take_turn(self, host: Host, cmd: str, deadline: float, **msg: Any) -> None:
        """One bounded turn of the trainer in its process (``init`` or ``run``), and what it brought:
        its config (once built), the events of steps the record lacks, the steps it completed."""
        self.took_turn(host, host.call(cmd, deadline, id=self.id, **msg))

    def took_turn(self, host: Host, reply: dict[str, Any]) -> None:
        """What a turn brought (its own, or its part of one taken together: ``run_groups``)."""
        with self.lock:
            rebuilding = self.trainer_step < self.step
            self.trainer_step, self.mid = reply.get("step", self.trainer_step), bool(reply.get("mid"))
            self.later = bool(reply.get("later"))
            self.step_s = float(reply.get("step_s", self.step_s))
            first = self.record is None and "config" in reply
            if first:
                self.record = RunRecord(reply["config"], reply["layer_names"])
            self._note_turn(reply)
        if first:  # the full tables go to files (the downloads); the record keeps a bounded history
            scratch.stream_run(self.record)
        self._absorb(reply if not rebuilding else {**reply, "events": []})  # steps recorded already: dropped
        if not self.mid:
            self._apply_changes_due(host)

    def _apply_changes_due(self, host: Host) -> None:
        """The changes made at the trainer's step, in the order they were made: while it is rebuilt,
        or when a forked run gets to the step its change was made at."""
        while True:
            with self.lock:
                if self.applied >= len(self.changes) or self.changes[self.applied][0] != self.trainer_step:
                    return
                _, name, value = self.changes[self.applied]
                self.applied += 1
                if self.trainer_step >= self.step and getattr(self.settings, name) != value:  # new to this run
                    self.settings = replace(self.settings, **{name: value})
                    if self.record is not None:
                        self.record.config.setdefault("settings", {}).update({name: value})
            self._absorb(host.call(f"set_{name}", id=self.id, **{name: value}))

    def _control(self, host: Host, item: Any) -> None:
        if isinstance(item, _Request):
            try:
                self._absorb(host.call("call", CALL_DEADLINE_S, id=self.id, method=item.method, kwargs=item.kwargs))
            except WorkerError as exc:
                item.error = str(exc)
            finally:
                item.done.set()
            return
        if item[0] == "regions":
            with self.lock:
                maps = len(self.record.config.get("dataset", {}).get("input_shape", [])) == 1 if self.record else False
                current = self.trainer_step == self.step and not self.mid
            if maps and current:
                # Beside the record, not in it: a run stays a function of its settings (a Pause is no
                # part of it), and whoever looks at this step sees the models as they are at it.
                reply = host.call("call", CALL_DEADLINE_S, id=self.id, method="decision_regions", kwargs={})
                drawn = {e[1]: (e[2], e[3]) for e in reply.get("events", []) if e[0] == "regions"}
                with self.lock:
                    self.pause_maps = (reply["step"], drawn)
                self._absorb({**reply, "events": [e for e in reply.get("events", []) if e[0] != "regions"]})
            return
        name, value = item
        with self.lock:
            if getattr(self.settings, name) == value:
                return
            self.settings = replace(self.settings, **{name: value})  # checked by the page: trusted
            if self.record is not None:
                self.record.config.setdefault("settings", {}).update({name: value})
            if self.step == 0:  # before the first step: the run's own settings, not a change
                self.initial = replace(self.initial, **{name: value})
            else:
                self.changes.append((self.step, name, value))
            live = self.trainer_step == self.step
            if live and self.step > 0:
                self.applied += 1
            changed, self.key = self.key is not None, None  # no longer a run of its key
        if changed and self.on_change is not None:
            self.on_change(self)
        if live:
            self._absorb(host.call(f"set_{name}", id=self.id, **{name: value}))

    def _advance(self, host: Host, to: int, quantum_s: float) -> None:
        self._take_turn(host, "run", reply_deadline(self.longest_turn_s), to=to, budget_s=quantum_s)
        self.advanced()

    def advanced(self) -> None:
        """After a turn that stepped: its progress, and whether it is finished now."""
        with self.lock:
            self.progress.append((time.monotonic(), self.step))
            finished = self.done and self.key is not None and not self._reported and self.on_finish is not None
            self._reported = self._reported or finished
        if finished:
            self.on_finish(self)

    def _note_turn(self, reply: dict[str, Any]) -> None:
        self.longest_turn_s = max(self.longest_turn_s, float(reply.get("elapsed_s", 0.0)))

    def _absorb(self, reply: dict[str, Any]) -> None:
        record = self.record
        if record is not None:
            replay_events(record, reply.get("events", []))
        with self.lock:
            self.status.update(reply.get("status", {}))
            self.step = max(self.step, reply.get("step", 0))
            for name, status in self.status.items():
                if status != "ok" and name not in self.diverged_at:
                    self.diverged_at[name] = self.step
            self.moved.notify_all()

    def fail(self, host: Host | None, message: str) -> None:
        """Its trainer failed: the error is shown, the trainer leaves its process."""
        with self.lock:
            self.error = message
            built, self.built = self.built, False
            self.moved.notify_all()
        if self.record is not None:
            self.record.close_stream()  # nothing more comes; its files stay for the downloads
        if built and host is not None:
            try:
                host.call("drop", id=self.id)
            except (WorkerError, HostLost):
                pass
        self._fail_requests(self.error)

    def _fail_requests(self, message: str) -> None:
        with self.lock:
            requests = [r for r in self.control if isinstance(r, _Request)]
            self.control.clear()
        for req in requests:
            req.error = message
            req.done.set()

    def lost(self, message: str) -> None:
        with self.lock:
            self.built = False
            closing = self.closing
            if not closing:
                self.error = (f"{message[0].upper()}{message[1:]}; it was replaced, and this run's models went "
                              "with it") if "stopped answering" in message else message
            self.moved.notify_all()
        if self.record is not None:
            try:
                self.record.close_stream()
            except OSError:  # a stopping server's workers die first, and its scratch folder may be gone
                pass
        if closing and self.host is not None:
            self.host.remove(self)
        self._fail_requests(message)

    def evict(self, host: Host) -> None:
        """Idle a long while: the trainer leaves its process; the next step rebuilds it."""
        with self.lock:
            if not self.built:
                return
            self.built, self.trainer_step = False, 0
        try:
            host.call("drop", id=self.id)
        except WorkerError:
            pass
