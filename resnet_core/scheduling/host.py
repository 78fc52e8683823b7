"""One worker process and the thread that drives it: a ``Scheduler``'s ``Host``.

The thread gives turns to the tasks bound to the host (``_pick``: the owner whose turns have used
the least of the process's time, and of its tasks the one served longest ago; see ``scheduler``),
makes each round trip of a turn (``call``: the one place a reply is waited for, decoded and turned
into an error), starts the process (``_ensure_process``, as the scheduler's ``WorkerPolicy`` says)
and, where it dies or stays silent past a reply's deadline, kills it and tells every task it held
(``_lose``). Torch-free; nothing here calls Streamlit.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

from resnet_core.errors import describe
from resnet_core.remote.transport import JsonProcess, NoReply, ProcessGone
from resnet_core.remote import turn_cut
from resnet_core.remote.worker_process import WorkerError, WorkerProcess, checked

import resnet_core.scheduling.room as room
from resnet_core.scheduling.task import HostLost, Task, owner_of

Scheduler = Any  # the scheduler's (which imports this module): its policy, size, budget, closed flag

QUANTUM_S = 0.12        # a task's turn at most: commands stay snappy, the round trip is ~1 % of it
ROUND_S = 1.0           # with many owners active, quanta shrink so each gets a turn about once a second
MIN_QUANTUM_S = 0.03    # but no smaller: one step of a small net is 5-20 ms here
REPLY_DEADLINE_S = 30.0  # a quantum's reply (one step can overrun it; a task may allow more)
START_DEADLINE_S = 120.0  # a fresh process importing torch and warming up, on a loaded machine
EVICT_IDLE_S = 120.0    # an idle task's state in its process is dropped after this (see Task.evict), or
                        # sooner where a new run needs its memory (``Host.make_room``)
GROUP_TURN_S = 0.5      # a turn for several runs of one kind: a quantum each, up to this in all
HOST_THREAD_NAME = "rl-host"  # also the OS-level name (top -H, the bench's CPU accounting)


def reply_deadline(longest_turn_s: float) -> float:
    """How long a turn's reply may take: the floor, or ten times the task's slowest turn so far
    (one step of a deep CNN can take seconds, and a quantum never cuts a step)."""
    return max(REPLY_DEADLINE_S, 10 * longest_turn_s)


def _name_os_thread(name: str) -> None:
    """Best effort, Linux only: name the calling thread for the OS as well as for Python."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15 = PR_SET_NAME
    except (OSError, AttributeError):
        pass


class Host:
    """One worker process and the thread that drives it."""

    def __init__(self, scheduler: Scheduler, index: int, spare: JsonProcess | None = None):
        self.scheduler, self.index = scheduler, index
        self.tasks: deque[Task] = deque()
        self.process: JsonProcess | None = None
        self._spare = spare  # a process started (and told to warm up) before the scheduler existed
        self.current: Task | None = None
        self.turns = 0
        self._picks = 0
        self._served: dict[Any, int] = {}  # owner -> the pick that last gave it a turn (see _pick)
        self._used: dict[Any, float] = {}  # owner -> the process's time its turns used (see _pick)
        self._arrived: dict[Any, int] = {}  # owner -> when its first task here came (see _pick)
        self._arrivals = 0
        self._active: set[Any] = set()     # the owners with work to do at the last pick
        self._turn_used = 0.0              # the process's time used by the turn under way
        self._grouping = False             # that turn is several runs' (a new task may cut it short)
        self.ledger: deque[tuple[Any, float]] = deque(maxlen=50_000)  # (owner, time used) of each turn
        self.warm_s: float | None = None
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._main, name=f"{HOST_THREAD_NAME}-{index}", daemon=True)
        self.thread.start()

    # ---- talking to the process (from the host thread, inside a task's turn) -----------------
    def call(self, cmd: str, deadline_s: float | None = None, **msg: Any) -> dict[str, Any]:
        """One round trip. WorkerError: the process answered with an error (it lives on).
        HostLost: it is gone, or said nothing for ``deadline_s`` (default REPLY_DEADLINE_S; inf: none)."""
        deadline_s = REPLY_DEADLINE_S if deadline_s is None else deadline_s
        process = self.process
        if process is None:
            raise HostLost("the worker process is not running")
        try:
            process.send({"cmd": cmd, **msg})
        except ProcessGone as exc:
            raise HostLost("the training process ended unexpectedly") from exc
        started = time.perf_counter()
        try:
            reply = self._reply(process, deadline_s)
        except WorkerError:
            self._turn_used += time.perf_counter() - started
            raise
        # The process's own CPU time where it says (robust to a loaded machine), else the wait.
        self._turn_used += float(reply.get("used_s", reply.get("elapsed_s", 0.0)))
        return reply

    @staticmethod
    def _reply(process: JsonProcess, deadline_s: float) -> dict[str, Any]:
        try:
            reply = process.receive(timeout=None if math.isinf(deadline_s) else deadline_s)
        except NoReply as exc:
            raise HostLost(f"the worker process stopped answering (no reply within {deadline_s:.0f} s)") from exc
        except ProcessGone as exc:
            raise HostLost("the training process ended unexpectedly") from exc
        return checked(reply)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    # ---- tasks ------------------------------------------------------------------------------
    def add(self, task: Task) -> None:
        with self.cond:
            task.host = self
            self.tasks.appendleft(task)  # a new task gets its owner's next turn: its first step comes soon
            self._arrivals += 1
            self._arrived.setdefault(owner_of(task), self._arrivals)
            if self._grouping and self.process is not None:  # a click waits: the dozen runs' turn ends early
                turn_cut.ask(self.process.pid)
            self.cond.notify_all()

    def remove(self, task: Task) -> None:
        with self.cond:
            if task in self.tasks:
                self.tasks.remove(task)
            self.cond.notify_all()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    # ---- memory: every session's runs in one process (``room``) ------------------------------
    def memory(self, joining: Task | None = None) -> tuple[int, int]:
        return room.held(self, joining)

    def fits(self, task: Task) -> bool:
        return room.fits(self, task, self.scheduler.worker_budget)

    def make_room(self, task: Task) -> None:
        room.make_room(self, task, self.scheduler.worker_budget)

    def load(self) -> tuple[int, int, int]:
        """(active owners, active tasks, tasks): where a new task should go."""
        with self.cond:
            active = [t for t in self.tasks if t.runnable()]
            return len({owner_of(t) for t in active}), len(active), len(self.tasks)

    def placing(self, task: Task) -> tuple:
        """Where ``task`` should go, least first: fewest active owners, then one holding its kin
        (runs of its shape, which it trains in one stack with: ``task.py``), then ``load``'s rest."""
        owners, active, tasks = self.load()
        with self.cond:
            kin = task.kin is not None and any(t.kin == task.kin for t in self.tasks)
        return owners, not kin, active, tasks, self.process is None, self.index

    def _pick(self) -> tuple[Task | None, int]:
        """The next task, and how many owners have a runnable one: the owner whose turns have used
        the least of the process's time (ties: served longest ago, one never served here first), and
        of its runnable tasks the one served longest ago; owners never served here, in the order they
        came (ten students who click Train at once get their first steps in that order, not the
        last first). Shared by time used, not by turns: a
        session whose steps take seconds gets as much of the process as one whose steps take
        milliseconds, not a thousand times more. An owner that starts (or starts again) having work
        joins level with the least of the others: no credit is banked while idle."""
        present: set[Any] = set()
        runnable: dict[Any, list[Task]] = {}  # owner -> its runnable tasks, served longest ago first
        for task in self.tasks:               # kept in that order: a task turned goes to the back
            owner = owner_of(task)
            present.add(owner)
            if task.runnable():
                runnable.setdefault(owner, []).append(task)
        for gone in self._served.keys() - present:
            del self._served[gone]
        for gone in self._used.keys() - present:
            del self._used[gone]
        for gone in self._arrived.keys() - present:
            del self._arrived[gone]
        if not runnable:
            self._active = set()
            return None, 0
        level = min((self._used.get(o, 0.0) for o in runnable if o in self._active), default=None)
        for o in runnable:
            if o not in self._active and level is not None:
                self._used[o] = max(self._used.get(o, 0.0), level)
        self._active = set(runnable)
        owner = min(runnable, key=lambda o: (self._used.get(o, 0.0), self._served.get(o, -1), self._arrived.get(o, 0)))
        task = runnable[owner][0]
        self.tasks.remove(task)
        self.tasks.append(task)
        self._picks += 1
        self._served[owner] = self._picks
        return task, len(runnable)

    def _kin(self, task: Task) -> list[Task]:
        """``task``, and the tasks of its kin here that may take this turn with it (under the lock)."""
        if task.kin is None or not task.joinable():
            return [task]
        return [task, *(t for t in self.tasks if t is not task and t.kin == task.kin and t.runnable() and t.joinable())]

    # ---- the thread ---------------------------------------------------------------------------
    def _main(self) -> None:
        _name_os_thread(f"{HOST_THREAD_NAME}-{self.index}")
        if self._spare is not None or self.scheduler.policy.eager or (self.index == 0 and self.scheduler.warm):
            self._guard(self._ensure_process)  # the first Train of the day finds a warm process
        while True:
            with self.cond:
                task, active = self._pick()
                while task is None and not self.scheduler.closed:
                    self.cond.wait(timeout=min(30.0, self.scheduler.evict_idle_s / 2))
                    self._evict_idle()
                    task, active = self._pick()
                if self.scheduler.closed:
                    break
                self.current = task
                kin = self._kin(task)
                self._grouping = len(kin) > 1
            quantum = max(MIN_QUANTUM_S, min(QUANTUM_S, ROUND_S / max(active, 1)))  # active: owners
            self._turn_used, used = 0.0, {}
            if len(kin) > 1:  # one turn for all of them, each charged its part (see task.py)
                budget = min(quantum * len(kin), GROUP_TURN_S)
                self._guard(lambda: (self._ensure_process(), used.update(task.turn_together(self, budget, kin))), task)
            else:
                self._guard(lambda: (self._ensure_process(), task.turn(self, quantum)), task)
            with self.cond:
                self.current = None
                self._grouping = False
                self.turns += 1
                for t, t_used in (used.items() if used else [(task, self._turn_used)]):
                    owner = owner_of(t)
                    self._used[owner] = self._used.get(owner, 0.0) + t_used
                    self._served[owner] = self._picks
                    self.ledger.append((owner, t_used))
                    if t is not task and t in self.tasks:  # served: to the back, as the one picked
                        self.tasks.remove(t)
                        self.tasks.append(t)
        if self.process is not None:
            self.process.close(wait_s=self.scheduler.close_wait_s)

    def _guard(self, work, task: Task | None = None) -> None:
        try:
            work()
        except HostLost as exc:
            self._lose(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in a task: that task stops, the host goes on
            if task is not None:
                task.lost(describe(exc))
                self.remove(task)

    def _ensure_process(self) -> None:
        if self.process is not None and self.process.alive:
            return
        if self.process is not None:
            self._lose("the training process ended unexpectedly")
        if self.scheduler.closed:
            raise HostLost("the server is shutting down")
        started = time.perf_counter()
        spare, self._spare = self._spare, None
        policy = self.scheduler.policy
        try:
            self.process = spare if spare is not None and spare.alive else WorkerProcess(policy.limit_mb)
        except OSError as exc:
            raise HostLost(f"a worker process could not be started ({exc})") from exc
        try:
            if spare is self.process:  # told to warm up already: its reply is the next message
                self._reply(self.process, START_DEADLINE_S)
            elif policy.warm_up:
                self.call("warm", START_DEADLINE_S)
        except WorkerError:
            pass  # the warm-up is an optimisation; a real run reports its own error
        # Warmed at its owner's priority (the first Train of the day waits for it); from now on a
        # server's gives way to the server answering pages.
        self.process.lower_priority(policy.nice)
        self.warm_s = time.perf_counter() - started

    def _lose(self, message: str) -> None:
        """The process is dead or silent: kill it; every task it held hears why."""
        process, self.process = self.process, None
        if process is not None:
            process.close(wait_s=0.0)
        if self.scheduler.closed:
            return  # the server stops: its processes end on purpose, and nobody is left to tell
        with self.cond:
            tasks = list(self.tasks)
        for task in tasks:
            task.lost(message)

    def evict(self, task: Task) -> None:
        """On the host's thread: ``task``'s state leaves the process (it is rebuilt on demand)."""
        self._guard(lambda: task.evict(self), task)

    def _evict_idle(self) -> None:
        now = time.monotonic()
        for task in list(self.tasks):
            if task.resident and not task.runnable() and now - task.idle_since > self.scheduler.evict_idle_s:
                self.cond.release()
                try:
                    self.evict(task)
                finally:
                    self.cond.acquire()
