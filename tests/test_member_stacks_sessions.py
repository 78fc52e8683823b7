"""Two sessions' runs of one shape, on the server's scheduler with a real worker process: they are
placed in one process and stepped in one stack (the worker reports the stacks' sizes), and each
session's run records exactly what it records alone, also when the other leaves mid-run."""
from __future__ import annotations

import time

import pytest

from dashboard.runtime.session import Session
from resnet_core.scheduling.scheduler import Scheduler
from resnet_core.analysis import recorders
from resnet_core.settings import Settings
from resnet_core.training.lockstep import LockstepTrainer

BASE = Settings(models=("plain-6", "resnet-6"), width=8, steps=80, eval_every=5, probe_every=2,
                paths_every=20, dataset_args={"n": 300})


def wait_for(predicate, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def recorded(record, until: int) -> dict:
    """Its error curves and layer probes up to step ``until``, wall-clock times aside."""
    metrics = [{k: v for k, v in row.items() if k != "wall_s"} for row in record.metric_rows() if row["step"] <= until]
    layers = record.layers_frame().fillna(-1.0)  # a layer without a branch ratio: NaN, equal to NaN here
    return {"metrics": metrics, "layers": layers[layers.step <= until].reset_index(drop=True).to_dict("list")}


def alone(settings: Settings, steps: int) -> dict:
    trainer = LockstepTrainer(settings, recorders=recorders.standard())
    trainer.run(steps=steps)
    return recorded(trainer.record, steps)


@pytest.fixture
def pool():
    pool = Scheduler(size=1)  # one process (the default on 2 cores): the class's runs share it
    yield pool
    pool.close()


def test_two_sessions_of_one_shape_share_a_stack_and_each_trains_as_alone(pool):
    settings = [BASE.with_changes(seed=3, lr=0.05), BASE.with_changes(seed=4, lr=0.02, optimizer="adam")]
    jobs = [Session(pool, s, owner=f"session-{i}") for i, s in enumerate(settings)]
    try:
        for job in jobs:
            job.train()
        wait_for(lambda: jobs[1].status().step >= 20)
        jobs[1].pause()  # this session leaves the stack mid-run; the other trains on
        wait_for(lambda: jobs[0].status().state == "done")
        wait_for(lambda: jobs[1].status().state == "paused")
        runs = [job.source for job in jobs]
        assert max(r.largest_stack for r in runs) >= 2  # both sessions' models of one shape in one stack
        host = pool.hosts[0]
        charged = {owner for owner, _ in host.ledger}
        assert {"session-0", "session-1"} <= charged and len(host.ledger) > host.turns  # a turn together: each charged
        assert recorded(jobs[0].status().record, 80) == alone(settings[0], 80)
        left = jobs[1].status().step
        assert recorded(jobs[1].status().record, left) == alone(settings[1], left)
    finally:
        for job in jobs:
            job.stop(wait=True)
