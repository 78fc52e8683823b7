"""One computation, many viewers (issue 10): sessions on the same settings share one run, a finished
run is replayed from the run cache (in another server process too), each session with its own
cursor; a change mid-run leaves the cache and gives what a live run given that change gives."""
from __future__ import annotations

import time

import pandas as pd
import pytest

from dashboard.runtime.class_runs import ClassRuns
from dashboard.runtime.session import Session
from dashboard.runtime.run_cache import RunCache
from dashboard.runtime.run_keys import run_key
from resnet_core.scheduling.scheduler import Scheduler
from test_sessions import TINY, wait_for

RUN = TINY.with_changes(steps=60, paths_every=20)  # every table: metrics, layers, paths, maps


def tables(record) -> dict[str, pd.DataFrame]:
    """Every table a user downloads or a chart draws, wall_s aside (a clock, not a result)."""
    return {"metrics": record.metrics_frame().drop(columns="wall_s"), "layers": record.layers_frame(),
            "paths": record.paths_frame(), "regions": record.regions_frame()}


def assert_same(a, b) -> None:
    for name, frame in tables(a).items():
        pd.testing.assert_frame_equal(frame, tables(b)[name], obj=name)


@pytest.fixture(scope="module")
def pool():
    scheduler = Scheduler(size=1)
    yield scheduler
    scheduler.close()


@pytest.fixture
def made():
    jobs: list[Session] = []
    yield jobs
    for job in jobs:
        job.stop()


def session(made, pool, runs=None, settings=RUN) -> Session:
    made.append(Session(pool, settings, runs))
    return made[-1]


def test_a_class_on_one_setting_trains_it_once_and_every_session_sees_the_same_run(pool, made, tmp_path):
    runs = ClassRuns(pool, RunCache(tmp_path / "cache"))
    first, second = session(made, pool, runs), session(made, pool, runs)
    first.train()
    wait_for(lambda: first.status().step > 10)
    second.train()  # joins at step 0, catches up at the pace the run trains at, then follows it
    wait_for(lambda: first.status().state == "done" and second.status().state == "done")
    assert pool.stats()["tasks"] <= 1  # one run in the process, never two
    assert not first.status().cached and second.status().cached
    assert_same(first.status().record, second.status().record)
    alone = session(made, pool)  # the same settings, trained by a session on its own
    alone.train()
    wait_for(lambda: alone.status().state == "done")
    assert_same(alone.status().record, second.status().record)


def trained_into_a_cache(pool, made, tmp_path):
    """A session that trained RUN to the end, and the cache folder its run was written to."""
    cache = RunCache(tmp_path / "cache")
    runs = ClassRuns(pool, cache)
    trained = session(made, pool, runs)
    trained.train()
    wait_for(lambda: trained.status().state == "done")
    runs.wait_for_writes()
    return cache, runs, trained


def test_a_finished_run_is_replayed_from_the_cache_folder_by_another_server(pool, made, tmp_path):
    cache, runs, live = trained_into_a_cache(pool, made, tmp_path)
    assert cache.keys() == [run_key(RUN)]

    restarted = Scheduler(size=1, warm=False)  # a fresh server process, the same cache folder
    try:
        replay = session(made, restarted, ClassRuns(restarted, RunCache(tmp_path / "cache")))
        replay.step(7)  # Step, Pause and Train on a replay, with a cursor of its own
        status = wait_for(lambda: (s := replay.status()).step == 7 and s)
        assert status.cached and status.state == "paused" and restarted.stats()["tasks"] == 0
        at7 = session(made, pool)
        at7.step(7)
        wait_for(lambda: at7.status().step == 7 and not at7.status().pending)
        assert_same(at7.status().record, status.record)  # what a live run shows at step 7
        replay.train()
        replay.pause()  # at once: a replay goes at its run's training pace, and this tiny one trained in a blink
        held = replay.status()
        assert held.state == "paused" and held.step >= 7
        time.sleep(0.5)
        assert replay.status().step == held.step  # the cursor holds while paused
        replay.train()
        wait_for(lambda: replay.status().state == "done")
        assert_same(live.status().record, replay.status().record)
        assert restarted.stats()["processes"] == 0  # nothing trained: no process was started
    finally:
        restarted.close()


def test_a_change_mid_run_leaves_the_cache_and_goes_on_as_a_live_run_given_it(pool, made, tmp_path):
    cache, runs, leader = trained_into_a_cache(pool, made, tmp_path)
    stored = cache.get(run_key(RUN))

    changed = session(made, pool, runs)
    changed.step(25)
    wait_for(lambda: changed.status().step == 25)
    assert changed.status().cached
    assert changed.update_settings(RUN.with_changes(lr=0.01)) == "live"
    assert changed.status().step == 25  # the page stays at the step while its own run catches up
    changed.train()
    wait_for(lambda: changed.status().state == "done", timeout=120)
    assert not changed.status().cached

    reference = session(made, pool)  # a live run given the same change at the same step
    reference.step(25)
    wait_for(lambda: reference.status().step == 25 and not reference.status().pending)
    reference.update_settings(RUN.with_changes(lr=0.01))
    reference.train()
    wait_for(lambda: reference.status().state == "done")
    assert_same(reference.status().record, changed.status().record)
    assert changed.status().record.config["settings"]["lr"] == 0.01
    assert not tables(changed.status().record)["metrics"].equals(tables(stored)["metrics"])  # it did change
    runs.wait_for_writes()
    assert cache.keys() == [run_key(RUN)]  # and was not written under the plain key
    assert_same(cache.get(run_key(RUN)), stored)


def test_a_run_changed_in_place_leaves_the_class_the_moment_the_change_is_asked(pool, made, tmp_path):
    """Issue 20, item 4: A pauses the class's run and moves lr 0.05 -> 0.5; B presses Train with the
    original settings before the run's next turn: B gets a run of its own settings, never A's
    changed one labelled as the class's."""
    long = RUN.with_changes(steps=100_000)
    runs = ClassRuns(pool, RunCache(tmp_path / "cache"))
    a, b = session(made, pool, runs, long), session(made, pool, runs, long)
    a.step(5)
    wait_for(lambda: a.status().step == 5 and not a.status().pending)
    assert a.update_settings(long.with_changes(lr=0.5)) == "live"
    b.train()  # at once, before the run's next turn has carried the change out
    assert b.source is not a.source
    wait_for(lambda: b.status().step > 0 and a.source.settings.lr == 0.5)
    assert b.status().record.config["settings"]["lr"] == long.lr == 0.05
    assert not b.status().cached  # B trains its own run: nobody's run is served to it as the class's


def test_a_run_on_an_uploaded_csv_never_writes_the_servers_path_into_its_download(pool, made):
    """Item 9: the config.json a student downloads (the run's streamed folder) names the upload by
    its own file name, not by where it lies on the server."""
    import numpy as np

    import dashboard.runtime.scratch as scratch

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    path = scratch.uploads() / "points-of-a-student.csv"
    path.write_text("x1,x2,label\n" + "".join(f"{a},{b},{int(a > 0)}\n" for a, b in x))
    job = session(made, pool, settings=RUN.with_changes(dataset="csv", dataset_args={"path": str(path)}))
    job.step(2)
    record = wait_for(lambda: (s := job.status()).step == 2 and not s.pending and s.record)
    record.flush()
    config = (record.folder / "config.json").read_text()
    assert path.name in config and str(path.parent) not in config and str(scratch.root()) not in config
