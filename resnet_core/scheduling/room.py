"""What the server's worker processes may take: the memory of each, shared by every session's runs
in it (how many there are: ``sizing.budget.server_processes``).

A worker process holds the models of every run it trains, paused ones too, not one run's. So each
process has a budget (``budget.worker_memory_budget``: its share of the server's), and a run is
placed where its models fit beside the runs being trained; where none has room it is refused up
front, with the message that the server is full (not that the run is too big). Idle runs (paused,
finished) give their models back when another run needs the room: they are rebuilt on demand.
Called by the scheduler's ``Host``; nothing here calls Streamlit, and this module imports no torch.
"""
from __future__ import annotations

from typing import Any

from resnet_core.sizing.budget import BASE_BYTES, server_full_message

Host = Task = Any  # the scheduler's (which imports this module): its tasks and its cond lock


class SchedulerFull(RuntimeError):
    """No worker process has the memory for a new run now: the message says so, and that the run
    itself is not too big."""


def held(host: Host, joining: Task | None = None) -> tuple[int, int]:
    """(bytes held, bytes that idle tasks hold and would give back) in ``host``'s process, with
    ``joining`` counted as held: the interpreter once, and each resident run's models."""
    with host.cond:
        total = reclaimable = 0
        for task in host.tasks:
            if task is joining or task.holding:
                total += task.memory
                if task is not joining and task.resident and not task.working():
                    reclaimable += task.memory
        if joining is not None and joining not in host.tasks:
            total += joining.memory
    return BASE_BYTES + total, reclaimable


def fits(host: Host, task: Task, budget: int) -> bool:
    total, reclaimable = held(host, task)
    return total - reclaimable <= budget


def make_room(host: Host, task: Task, budget: int) -> None:
    """On the host's thread, before ``task`` builds its state there: drop the state of idle tasks
    (paused, finished: it is rebuilt on demand), longest idle first, until it fits. Raises
    SchedulerFull where the tasks with work to do fill the process."""
    idle = [t for t in list(host.tasks) if t.resident and t.holding and t is not task and not t.working()]
    for other in sorted(idle, key=lambda t: t.idle_since):
        if held(host, task)[0] <= budget:
            break
        host.evict(other)
    total, _ = held(host, task)
    if total > budget:
        raise SchedulerFull(server_full_message(total - task.memory, budget))
