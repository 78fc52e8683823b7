"""What takes turns on the server's worker processes: the ``Task`` contract the scheduler's hosts
rely on (``scheduler.Host``), whose share pays for a turn (``owner_of``), and the errors of a
conversation with a process.

Tasks of one ``kin`` (the runs of one shape, whatever their seeds and learning rates: ``runs.Run``)
may take a turn together when they are ``joinable``: the host then gives the one it picked and its
joinable kin one turn (``turn_together``), in which the worker process trains their models of one
shape as members of shared stacks (``resnet_core/training/member_stacks.py``), and charges each
one's owner the part of the process's time that task used. Tasks without a kin take turns alone.

Nothing here calls Streamlit, and this module imports no torch.
"""
from __future__ import annotations

from typing import Any

Host = Any  # the scheduler's (which imports this module): one worker process and its thread


def owner_of(task: "Task") -> Any:
    """Whose share ``task``'s turns come from: its owner, or the task itself when it has none."""
    owner = task.owner
    return task if owner is None else owner


class HostLost(RuntimeError):
    """The conversation with a worker process is over: it died, or sent no reply in time."""


class SchedulerClosed(RuntimeError):
    """The server is shutting down."""


class Task:
    """Work that takes turns on one host. Subclasses say when they have something to do, do one
    turn of it, and hear when their process is lost. ``runnable`` is called under the host's lock:
    it must be quick and must not call back into the scheduler; so must ``owner``, read there too."""

    host: Host | None = None
    owner: str | None = None      # whose share its turns come from: a session; None: the task's own
    affinity: str | None = None   # tasks with the same affinity go to the same process when they can
    idle_since: float = 0.0       # set by the task when it stops having things to do
    resident: bool = False        # holds state in its process (a trainer) that evict() may drop
    memory: int = 0               # bytes it holds in its process while ``holding``
    kin: str | None = None        # tasks of one kin on one host may take a turn together (see below)

    @property
    def holding(self) -> bool:
        """Whether its state is in its process now (counted against the process's memory)."""
        return False

    def working(self) -> bool:
        """Whether it has more than a moment's work to do (a run asked for more steps); one that
        is not gives its memory back when another needs it. Quick, as ``runnable``."""
        return self.runnable()

    def runnable(self) -> bool:
        raise NotImplementedError

    def turn(self, host: Host, quantum_s: float) -> None:
        """One turn: about ``quantum_s`` of the process's time (a few control messages beside)."""
        raise NotImplementedError

    def joinable(self) -> bool:
        """Whether it may take its next turn together with its kin (quick, as ``runnable``)."""
        return False

    @classmethod
    def turn_together(cls, host: Host, budget_s: float, tasks: list["Task"]) -> dict["Task", float]:
        """One turn for several joinable tasks of one kin (the first is the one picked), about
        ``budget_s`` in all; the process's time each used, which its owner is charged."""
        raise NotImplementedError

    def lost(self, message: str) -> None:
        """The process died or hung; whatever this task held there is gone."""

    def evict(self, host: Host) -> None:
        """Idle for EVICT_IDLE_S: drop the state held in the process (it is rebuilt on demand)."""

    def wake(self) -> None:
        """Something changed: the host looks at this task again."""
        if self.host is not None:
            self.host.wake()
