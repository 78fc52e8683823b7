"""Sessions training on the server's scheduler, with real worker processes: fair sharing of one process
by several sessions, the commands, and a run rebuilt after its trainer left its process."""
from __future__ import annotations

import os
import time

import pytest

from dashboard.runtime.session import Session
from dashboard.runtime.session_status import SessionError, needs_reset
from resnet_core.scheduling.scheduler import Scheduler
from resnet_core.settings import Settings

TINY = Settings(models=("plain-4", "resnet-6"), width=8, steps=30, eval_every=5, probe_every=5,
                paths_every=0, dataset_args={"n": 200})


def wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def pool():
    pool = Scheduler(size=1)  # one worker process for the module, shared by every job of every test
    yield pool
    pool.close()


@pytest.fixture
def new_session(pool):
    made: list[Session] = []

    def make(settings: Settings = TINY, scheduler: Scheduler = pool) -> Session:
        made.append(Session(scheduler, settings))
        return made[-1]

    yield make
    for job in made:
        job.stop(wait=True)


def test_step_train_pause_reset(new_session):
    job = new_session()
    job.step()
    wait_for(lambda: job.status().step == 1 and job.status().state == "paused")
    record = job.status().record
    assert record.latest_step() == 0 and set(record.models()) == {"plain-4", "resnet-6"}
    job.train()
    wait_for(lambda: job.status().state == "done")
    assert job.status().step == 30 and record.latest_step() == 30
    job.reset()
    wait_for(lambda: job.status().state == "idle" and job.status().record is None)
    assert job.status().step == 0


def test_pause_holds_the_step(new_session):
    job = new_session(TINY.with_changes(steps=100_000))
    job.train()
    wait_for(lambda: job.status().step > 3)
    job.pause()
    wait_for(lambda: job.status().state == "paused")
    held = job.status().step
    time.sleep(0.6)
    assert job.status().step == held


def test_sessions_with_different_settings_all_train_at_once_on_one_process(new_session, pool):
    long = TINY.with_changes(steps=100_000)
    sessions = [new_session(long.with_changes(seed=seed, lr=lr)) for seed, lr in ((0, 0.05), (1, 0.02), (2, 0.1))]
    for job in sessions:
        job.train()
    wait_for(lambda: all(j.status().step > 50 for j in sessions))  # nobody waits behind the first
    marks = [j.status().step for j in sessions]
    wait_for(lambda: all(j.status().step > m + 50 for j, m in zip(sessions, marks)))  # and all keep moving
    assert len({j.pid for j in sessions}) == 1 and pool.stats()["processes"] == 1
    rates = wait_for(lambda: all(r := [j.status().steps_per_s for j in sessions]) and r)
    assert all(rate > 0 for rate in rates)  # each page can show its own pace
    assert max(rates) < 3 * min(rates)  # a fair share each, round robin
    sessions[0].pause()
    wait_for(lambda: sessions[0].status().state == "paused")
    assert sessions[0].status().steps_per_s is None  # a paused session shows no pace ...
    held = sessions[0].status().step
    others = [j.status().step for j in sessions[1:]]
    wait_for(lambda: all(j.status().step > m + 50 for j, m in zip(sessions[1:], others)))
    assert sessions[0].status().step == held  # ... and takes no turns


def test_a_run_dropped_from_its_process_is_rebuilt_and_goes_on_as_if_it_never_left(new_session):
    """An idle session's trainer leaves its process after a while (it costs memory, not CPU); the
    next Step replays the run (the same steps and the same mid-run change) and carries on."""
    evicting = Scheduler(size=1, evict_idle_s=0.5)
    try:
        left, stayed = new_session(scheduler=evicting), new_session()
        for job in (left, stayed):
            job.step(12)
            wait_for(lambda j=job: j.status().step == 12 and not j.status().pending)
            job.update_settings(TINY.with_changes(lr=0.01))
            job.step(6)
            wait_for(lambda j=job: j.status().step == 18 and not j.status().pending)
        pid = left.pid
        wait_for(lambda: not left.source.built)  # idle: dropped from its process
        assert left.pid == pid and left.status().step == 18  # nothing on the page changed
        for job in (left, stayed):
            job.train()
            wait_for(lambda j=job: j.status().state == "done")
        a, b = (j.status().record.metrics_frame().drop(columns="wall_s") for j in (left, stayed))
        assert len(a) == len(b) and a.equals(b)
        a, b = (j.status().record.layers_frame() for j in (left, stayed))
        assert a.equals(b)
    finally:
        evicting.close()


def test_learning_rate_changes_mid_run_without_reset(new_session):
    job = new_session()
    job.step(3)
    wait_for(lambda: job.status().step == 3)
    record = job.status().record
    assert job.update_settings(TINY.with_changes(lr=0.01, steps=60)) == "live"
    wait_for(lambda: record.config["settings"]["steps"] == 60)  # the job's thread has taken it
    assert job.status().record is record and record.config["settings"]["lr"] == 0.01
    job.train()
    wait_for(lambda: job.status().state == "done")
    assert job.status().step == 60  # more steps than the run began with


def test_the_last_step_is_evaluated_even_off_the_evaluation_grid(new_session):
    job = new_session(TINY.with_changes(steps=32))  # evaluations every 5 steps: 30, then 32, the end
    job.train()
    wait_for(lambda: job.status().state == "done")
    steps = job.status().record.metrics_frame()["step"]
    assert steps.max() == 32 and job.status().step == 32
    job.update_settings(TINY.with_changes(steps=41))  # more steps once it is done: on to a new end
    job.train()
    wait_for(lambda: job.status().state == "done" and job.status().step == 41)
    assert job.status().record.metrics_frame()["step"].max() == 41


def test_changing_a_model_resets(new_session):
    job = new_session()
    job.step()
    wait_for(lambda: job.status().step == 1)
    assert needs_reset(TINY, TINY.with_changes(width=16)) and not needs_reset(TINY, TINY.with_changes(lr=0.2))
    assert job.update_settings(TINY.with_changes(models=("plain-4", "resnet-8"))) == "reset"
    wait_for(lambda: job.status().record is None)
    assert job.settings.models == ("plain-4", "resnet-8")


def test_a_failing_run_reports_its_error_and_recovers_on_reset(new_session, pool):
    job = new_session(TINY.with_changes(dataset="csv", dataset_args={}))  # no file: the worker cannot load the data
    job.train()
    status = wait_for(lambda: (s := job.status()).state == "error" and s)
    assert status.error.startswith("the csv dataset needs a file")  # the user's message, no class path
    assert pool.stats()["active"] == 0  # it takes no more turns
    job.reset(TINY)
    job.step()
    wait_for(lambda: job.status().step == 1)


def test_requests_need_a_model_and_a_known_method(new_session):
    job = new_session()
    with pytest.raises(SessionError, match="press Train or Step"):
        job.request("decision_regions")
    with pytest.raises(SessionError, match="unknown analysis"):
        job.request("os.system")
    job.step()
    wait_for(lambda: job.status().step == 1)
    before = job.status().record.version
    job.request("decision_regions")
    assert job.status().record.version > before


def test_a_live_run_streams_its_tables_to_a_private_folder_that_goes_with_it(new_session):
    """Downloads are the run's files: every evaluation is there, in this server's own folder (0700),
    and the folder goes when the run is reset."""
    import os
    import stat

    import pandas as pd

    import dashboard.runtime.scratch as scratch

    job = new_session(TINY.with_changes(eval_every=1))
    job.train()
    wait_for(lambda: job.status().state == "done")
    record = job.status().record
    record.flush()
    folder = record.folder
    assert folder.parent.parent == scratch.root()
    assert stat.S_IMODE(os.stat(scratch.root()).st_mode) == 0o700
    metrics = pd.read_csv(folder / "metrics.csv")
    assert len(metrics) == 2 * 31 and set(pd.read_csv(folder / "layers.csv").step) == set(range(0, 30, 5))
    job.reset()
    wait_for(lambda: job.status().record is None)
    wait_for(lambda: not folder.exists())


def test_the_scratch_folder_is_private_and_goes_at_exit(tmp_path):
    """A fresh name per server process (nobody can have made it first), mode 0700, removed at exit."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import dashboard.runtime.scratch as s, os, stat\n"
            "print(s.uploads(), oct(stat.S_IMODE(os.stat(s.root()).st_mode)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "TMPDIR": str(tmp_path)})
    uploads, mode = out.stdout.split()
    assert mode == "0o700" and Path(uploads).parent.parent == tmp_path
    assert not Path(uploads).exists() and list(tmp_path.iterdir()) == []


def test_a_live_run_and_a_replay_answer_one_interface():
    """Every member of ``Source`` that a session's cursor asks of what it views, a ``Run`` and a
    ``Replay`` both have: a session never asks which of the two it views."""
    from resnet_core.records import RunRecord

    from dashboard.runtime.runs import Run
    from dashboard.runtime.source import Replay, Source

    members = {name for name in vars(Source) if not name.startswith("_")} | set(Source.__annotations__)
    assert {"live", "want", "push", "retry", "host_pid", "record", "step", "done", "views"} <= members
    live = Run(None, TINY)  # not added to a scheduler: nothing starts
    replay = Replay(RunRecord({"settings": TINY.to_dict()}, {}), "0" * 64)
    for source in (live, replay):
        missing = {m for m in members if not hasattr(source, m)}
        assert not missing, f"{type(source).__name__} lacks {sorted(missing)}"
    assert live.live and not replay.live and replay.done and replay.host_pid is None


def test_a_step_on_a_new_run_shows_its_first_step_and_then_step_0s_analyses(new_session):
    """A new run's first step comes before step 0's analyses (``answer_first``); the session stays
    pending until they arrive a turn later, so a page that stepped once still gets to show them."""
    job = new_session(TINY.with_changes(paths_every=10))
    job.step(1)
    status = wait_for(lambda: (s := job.status()).step == 1 and not s.pending and s)
    assert set(status.record.paths_frame()["step"]) == {0}  # resnet-6's unrolled paths at step 0
    assert set(status.record.table_frame("lens.csv")["step"]) == {0}
    assert job.source.working() is False  # nothing held back any more: its memory may go
