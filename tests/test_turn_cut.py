"""A click's first step does not wait for a dozen runs' turn: while a worker process trains several
runs of one shape in one turn (up to ``GROUP_TURN_S``, longer where their analyses fall on one
step), a new session's task asks the process to end that turn at the step under way
(``remote/turn_cut.py``), and its own first turn comes next."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from dashboard.runtime.session import Session
from resnet_core.remote import turn_cut
from resnet_core.remote.turn_cut import TurnCut
from resnet_core.scheduling import host as host_module
from resnet_core.scheduling.scheduler import Scheduler
from resnet_core.settings import Settings

TINY = Settings(models=("plain-6", "resnet-6"), width=8, steps=100_000, eval_every=5, probe_every=2,
                paths_every=0, dataset_args={"n": 300})

pytestmark = pytest.mark.skipif(turn_cut.SIGNAL is None, reason="no SIGUSR1 here: turns are never cut")


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def own_handler():
    """The test process's SIGUSR1 handler, as it was before a ``TurnCut`` was made here."""
    before = signal.getsignal(turn_cut.SIGNAL)
    yield
    signal.signal(turn_cut.SIGNAL, before)


def test_a_group_turn_asked_to_end_ends_after_the_step_under_way(own_handler):
    from resnet_core.worker import _Tenants

    tenants = _Tenants(TurnCut.listening())
    for key, seed in (("a", 0), ("b", 1)):
        reply = tenants._handle({"cmd": "init", "id": key, "settings": TINY.with_changes(seed=seed).to_dict(),
                                 "turns": True, "budget_s": 5.0})
        while reply["mid"]:
            reply = tenants._handle({"cmd": "run", "id": key, "to": 0, "budget_s": 5.0})
    members = [{"id": k, "to": 100_000} for k in "ab"]
    threading.Timer(0.3, turn_cut.ask, (os.getpid(),)).start()  # the parent, a moment into the turn
    reply = tenants._handle({"cmd": "run_group", "budget_s": 120.0, "members": members})
    assert reply["cut"] and reply["elapsed_s"] < 60  # not the two minutes it was given
    assert all(part["ok"] and part["step"] >= 1 for part in reply["members"].values())
    reply = tenants._handle({"cmd": "run_group", "budget_s": 0.3, "members": members})
    assert not reply["cut"]  # the request was for the turn under way, not for every turn after it


def test_a_new_session_cuts_the_turn_its_classmates_runs_are_taking(monkeypatch):
    """Turns of a minute each: without the cut, the third session's first step would wait for one."""
    for name in ("QUANTUM_S", "ROUND_S", "GROUP_TURN_S"):
        monkeypatch.setattr(host_module, name, 60.0)
    asked = []
    monkeypatch.setattr(turn_cut, "ask", lambda pid, ask=turn_cut.ask: (asked.append(pid), ask(pid)))
    pool = Scheduler(size=1)
    sessions = [Session(pool, TINY.with_changes(seed=i), owner=f"session-{i}") for i in range(2)]
    try:
        for s in sessions:
            s.train()
        host = pool.hosts[0]
        assert wait_for(lambda: host._grouping and all(s.status().step >= 1 for s in sessions), 60)
        late = Session(pool, TINY.with_changes(seed=9), owner="late")
        sessions.append(late)
        late.train()
        assert wait_for(lambda: late.status().step >= 1, 30)
        assert asked == [host.pid]
    finally:
        for s in sessions:
            s.stop(wait=True)
        pool.close()
