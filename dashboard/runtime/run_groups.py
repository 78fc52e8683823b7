"""Runs of one shape (the distinct runs of a class on one lesson: other seeds, learning rates,
optimizer settings) take their turns together: one message to their worker process, which trains
their models of one shape as members of shared stacks, one kernel call per layer for all of them
(``resnet_core/training/member_stacks.py``), each member's numbers exactly those of its run alone.

A run's ``kin`` (``shape_of``) is its settings less what a run may change without changing its
models' shapes (``OWN_SETTINGS``). A new run goes to the process with the fewest active sessions,
and of those to one holding its kin (``Host.placing``): on one process (the default on 2 cores) the
class's runs of one shape all share stacks; on several they are spread, a stack in each. The host gives a picked run and its joinable kin one turn (``task.py``) and
charges each run's owner the part of the process's time its run used (each part of the reply says).

Nothing here calls Streamlit, and this module imports no torch.
"""
from __future__ import annotations

import json
import time
from typing import Any

from resnet_core.remote.worker_process import WorkerError
from resnet_core.settings import Settings

from resnet_core.scheduling.scheduler import Host, reply_deadline

Run = Any  # runs.Run (which imports this module)

# What a run may change without changing its models' shapes: runs that differ only in these train
# in shared stacks (``Task.kin``; resnet_core/training/member_stacks.py checks each model exactly).
OWN_SETTINGS = ("seed", "lr", "momentum", "weight_decay", "optimizer", "steps", "eval_every", "probe_every",
                "paths_every", "dataset_args")


def shape_of(settings: Settings) -> str | None:
    """The kin of a run of these settings (an MLP's: a CNN trains alone), as a string."""
    if settings.arch != "mlp":
        return None
    shape = {k: v for k, v in settings.to_dict().items() if k not in OWN_SETTINGS}
    return "shape:" + json.dumps(shape, sort_keys=True, default=str)


def turn_together(host: Host, budget_s: float, runs: list[Run]) -> dict[Run, float]:
    """One turn for joinable runs of one shape: one ``run_group`` message, each run taking its
    part of the reply as it takes its own turn's. The process's time each used."""
    targets = {}
    for run in runs:
        with run.lock:
            run.busy = True
            targets[run.id] = run.wanted()
    used: dict[Run, float] = {}
    try:
        deadline = reply_deadline(max(r.longest_turn_s for r in runs))
        try:
            reply = host.call("run_group", deadline, budget_s=budget_s,
                              members=[{"id": key, "to": to} for key, to in targets.items()])
        except WorkerError as exc:
            for run in runs:
                run.fail(host, str(exc))
            return used
        for run in runs:
            part = reply["members"].get(run.id)
            if part is None:  # not in its process any more: rebuilt at its next turn
                with run.lock:
                    run.built = False
                continue
            used[run] = float(part.get("used_s", 0.0))
            if not part["ok"]:
                run.fail(host, part["error"])
                continue
            run.largest_stack = max(run.largest_stack, *reply.get("stacks", []), 1)
            run.took_turn(host, part)
            run.advanced()
    finally:
        for run in runs:
            with run.lock:
                run.busy = False
                run.idle_since = time.monotonic()
                run.moved.notify_all()
    return used
