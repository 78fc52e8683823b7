"""The limits a class's server keeps (issue 20, items 2 and 3): every session's models share a
worker process's memory, which is budgeted across them (a run that would not fit is refused up
front, saying the server is full, not that the run is too big; idle runs give theirs back), and one
client cannot fill the server with sessions."""
from __future__ import annotations

import pytest

from dashboard.runtime.session import Session
from resnet_core.scheduling.scheduler import Scheduler
from resnet_core.sizing.budget import BASE_BYTES, MB, resident_bytes
from test_sessions import TINY, wait_for

# Each run holds about 93 MB of models in the worker (width 512): two fit beside the interpreter
# in the 640 MB the test gives the whole server, a third does not.
BIG = TINY.with_changes(models=("plain-20",), width=512, steps=100_000, probe_every=5, paths_every=0)


@pytest.fixture
def small_server(monkeypatch):
    monkeypatch.setenv("RESIDUAL_LAB_RUN_MEMORY_MB", "500")
    monkeypatch.setenv("RESIDUAL_LAB_SERVER_MEMORY_MB", str((BASE_BYTES + 5 * resident_bytes(BIG) // 2) // MB))
    pool = Scheduler(size=1)
    made: list[Session] = []

    def session(seed: int) -> Session:
        made.append(Session(pool, BIG.with_changes(seed=seed), owner=f"session-{seed}"))
        return made[-1]

    yield pool, session
    for job in made:
        job.stop()
    pool.close()


def test_a_run_that_would_not_fit_beside_the_others_is_refused_up_front_and_paused_runs_give_way(small_server):
    pool, session = small_server
    a, b, c = session(0), session(1), session(2)
    for job in (a, b):
        job.train()
    wait_for(lambda: a.status().step > 0 and b.status().step > 0)
    c.train()  # the third of a full process: refused at once, each run within its own budget
    status = c.status()
    assert status.state == "error" and status.error.startswith("the server is full")
    assert "not too big" in status.error and "lower the batch size" not in status.error
    a.pause()
    wait_for(lambda: a.status().state == "paused")
    c.train()  # a paused run gives its memory back to a session that trains
    wait_for(lambda: c.status().step > 0 and c.status().error is None)
    assert not a.source.built  # a's models left the process; its charts stay
    assert a.status().record is not None and a.status().error is None
    a.train()  # and a's rebuild now meets a full process: told so, not blamed
    status = wait_for(lambda: (s := a.status()).error and s)
    assert status.error.startswith("the server is full")
    b.pause()
    wait_for(lambda: b.status().state == "paused")
    a.train()  # Train again once a classmate paused: a's run is rebuilt and goes on
    held = a.status().step
    wait_for(lambda: a.status().step > held and a.status().error is None, timeout=120)


def test_one_computer_trains_at_most_three_runs_at_once_and_its_other_tabs_are_told_why():
    """Item 3: one client opened 40 sessions, each training. Each computer's tabs may train three
    runs at once (RESIDUAL_LAB_RUNS_PER_CLIENT); a fourth tab is told why, and trains once one of
    the others pauses. Another computer is not affected."""
    pool = Scheduler(size=1)
    tabs = [Session(pool, TINY.with_changes(steps=100_000, seed=i), owner=f"tab-{i}", client="10.0.0.7")
            for i in range(4)]
    classmate = Session(pool, TINY.with_changes(steps=100_000, seed=9), owner="classmate", client="10.0.0.8")
    try:
        for tab in tabs:
            tab.train()
        classmate.train()
        wait_for(lambda: all(t.status().step > 0 for t in tabs[:3]) and classmate.status().step > 0)
        status = tabs[3].status()
        assert status.state == "error" and status.record is None
        assert status.error.startswith("this computer already trains 3 runs in other tabs")
        tabs[0].pause()
        tabs[3].train()
        wait_for(lambda: tabs[3].status().step > 0 and tabs[3].status().error is None)
        tabs[0].train()  # the fourth trains now: the first, paused, waits its turn
        assert tabs[0].status().error.startswith("this computer already trains 3 runs")
    finally:
        for job in (*tabs, classmate):
            job.stop()
        pool.close()
