"""The one driver of worker processes: a server's budget of them, shared fairly by the sessions
that compute, or a command's (the command line's main thread its one owner: ``parallel_trainer``,
``job_pool``; how either's processes start: ``policy``).

``Scheduler`` holds ``size`` worker processes (a server's: env ``RESIDUAL_LAB_PROCESSES``; else one
per core but one, the last core left to serve the pages). Each process is a ``Host``: one thread of
its owner's process drives it, giving turns to the tasks bound to it. A task is a session's run (``runs.Run``:
a trainer that lives in that process) or one analysis job (``analysis_run``: a sweep's run, a loss
landscape, shattered gradients). A turn is one quantum of the process's time, about
``QUANTUM_S``: a few training steps, or a slice of an analysis job.

Turns are shared per owner, not per task. A task's ``owner`` is the browser session that asked
for it (a run several sessions view is its own owner: see ``runs``; a task without one, in a test
or a benchmark, is its own owner too), and by the worker's CPU time each owner's turns used (each
reply says; ``ledger`` keeps it), not by their number: the owner that used the least gets the next
turn (ties: the one served longest ago) and gives it to its task served longest ago; one that starts
having work joins level with the least of the others. A turn is bounded in time however long a step
is (``resnet_core/training/turns.py``). So every owner with a runnable task gets the same part of the process, however
many tasks it has and whatever its steps cost: a session training a run while its 6-run sweep goes on
gets as much as a classmate with only a run, not seven times as much, and its run and its sweep
split that share. Quanta shrink when many owners are active, so that a round of them stays near
``ROUND_S``. Nobody waits in a queue behind a long run; an owner with nothing to do (a paused or
finished session) is skipped and costs nothing, its share going to the others. A new task goes
to the process where the fewest owners are active (of those, one holding runs of its shape) and, if
its owner is new there, gets the next turn. Runs of one shape in one process take a picked run's
turn together, their models trained in shared stacks, each owner charged its run's part (``task.py``).

Every reply has a deadline: a process that does not answer in time (stopped, stuck) is killed and
replaced, and each task it held is told (``Task.lost``), so its session can say so and Reset. The
same happens to a process that dies. The other processes, and their sessions, go on.

Nothing here calls Streamlit, and this module imports no torch.
"""
from __future__ import annotations

import threading

from resnet_core.sizing.budget import server_full_message, server_processes, worker_memory_budget

import resnet_core.scheduling.room as room
from resnet_core.scheduling.host import (EVICT_IDLE_S, GROUP_TURN_S, HOST_THREAD_NAME, MIN_QUANTUM_S, QUANTUM_S,
                                         REPLY_DEADLINE_S, ROUND_S, START_DEADLINE_S, Host, reply_deadline)
from resnet_core.remote.transport import JsonProcess
from resnet_core.scheduling.policy import WorkerPolicy, server_policy
from resnet_core.scheduling.task import HostLost, SchedulerClosed, Task, owner_of

__all__ = ["EVICT_IDLE_S", "GROUP_TURN_S", "HOST_THREAD_NAME", "Host", "HostLost", "MIN_QUANTUM_S", "QUANTUM_S",
           "REPLY_DEADLINE_S", "ROUND_S", "START_DEADLINE_S", "Scheduler", "SchedulerClosed", "SchedulerFull", "Task",
           "owner_of", "reply_deadline"]

SchedulerFull = room.SchedulerFull


class Scheduler:
    """``size`` hosts; tasks placed on the least busy one."""

    def __init__(self, size: int | None = None, warm: bool = True, evict_idle_s: float = EVICT_IDLE_S,
                 spare: JsonProcess | None = None, policy: WorkerPolicy | None = None):
        """``spare``: a worker process already started and told to warm up (``dashboard.prestart``);
        ``policy``: how the processes are started and driven (default: a server's, ``policy.py``)."""
        self.size = size or server_processes()
        self.policy = policy or server_policy(self.size)
        self.close_wait_s = 0.5  # how long a process may take to end when the scheduler closes
        self.worker_budget = worker_memory_budget(self.size)  # bytes each process may hold, all sessions'
        self.warm, self.evict_idle_s = warm, evict_idle_s
        self.closed = False
        self._lock = threading.Lock()
        self.hosts = [Host(self, i, spare if i == 0 else None) for i in range(self.size)]
        self._affinity: dict[str, Host] = {}

    def add(self, task: Task) -> Host:
        if self.closed:
            raise SchedulerClosed("the server is shutting down")
        with self._lock:
            host = self._affinity.get(task.affinity) if task.affinity else None
            if host is None and task.memory:
                # A run goes where its models fit beside the runs being trained (idle ones give
                # theirs back); where none has room, it is refused now, not failed in a process.
                fitting = [h for h in self.hosts if h.fits(task)]
                if not fitting:
                    held = min(h.memory()[0] - h.memory()[1] for h in self.hosts)
                    raise SchedulerFull(server_full_message(held, self.worker_budget))
                host = min(fitting, key=lambda h: h.placing(task))
            if host is None:
                # Fewest active owners first: a new session's share there is the biggest (one in
                # owners + 1), and as a new owner it gets the next turn on any host, so its first
                # step comes as soon as anywhere. Counting tasks instead would put it beside two
                # sessions rather than beside one session's four sweep jobs, with a third, not a
                # half. Then fewest active tasks (one session's jobs spread over equal hosts), then
                # fewest tasks, then one whose process already runs.
                host = min(self.hosts, key=lambda h: h.placing(task))
            if task.affinity:
                self._affinity[task.affinity] = host
        host.add(task)
        return host

    def stats(self) -> dict[str, int]:
        loads = [h.load() for h in self.hosts]
        return {"size": self.size, "active": sum(a for _, a, _ in loads), "tasks": sum(n for _, _, n in loads),
                "processes": sum(1 for h in self.hosts if h.process is not None)}

    def pids(self) -> list[int]:
        return [h.pid for h in self.hosts if h.pid is not None]

    def close(self, wait_s: float = 0.5) -> None:
        """End the hosts and their processes, each given ``wait_s`` to end before it is killed (0:
        at once, work under way abandoned, a host waiting on its process freed)."""
        self.closed, self.close_wait_s = True, wait_s
        for host in self.hosts:
            host.wake()
            if wait_s == 0 and (process := host.process) is not None:
                process.close(wait_s=0.0)
        for host in self.hosts:
            host.thread.join(timeout=5)
            if host.process is not None:
                host.process.close(wait_s=wait_s)
