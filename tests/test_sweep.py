"""The depth sweep: independent runs over depths and seeds, in worker processes, rows streamed as
each run finishes; sweep.csv's columns; the CLI; and the degradation trend itself."""
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from resnet_core.cli import main
from resnet_core.scheduling.analysis_run import start_analysis
from dashboard.runtime.session import Session
from resnet_core.scheduling.scheduler import Scheduler
from test_sessions import wait_for
from resnet_core.remote.job_kinds import JobFailed
from resnet_core.scheduling.job_pool import JobPool
from resnet_core.settings import Settings, SettingsError
from resnet_core.analysis.sweep import SWEEP_COLUMNS, job_runs, plan_sweep, run_count, run_sweep, sweep_frame, sweep_summary, write_sweep_csv


TINY = Settings(steps=20, eval_every=10, dataset_args={"n": 400})


@pytest.fixture(scope="module")
def two_workers():
    """Two worker processes shared by the tests that need real ones (each start costs seconds)."""
    pool = JobPool(2)
    yield pool
    pool.close()


def test_a_plan_has_one_run_per_family_depth_and_seed_deepest_first():
    jobs = plan_sweep(TINY, depths=(8, 4), seeds=(0, 1, 2), stack=False)
    assert len(jobs) == 2 * 3 * 2
    assert [j["depth"] for j in jobs] == [8] * 6 + [4] * 6
    assert {(j["family"], j["depth"], j["seed"]) for j in jobs} == {
        (f, d, s) for f in ("plain", "resnet") for d in (4, 8) for s in (0, 1, 2)}
    for job in jobs:
        s = Settings.from_dict(job["settings"])
        assert s.models == (f"{job['family']}-{job['depth']}",) and s.seed == job["seed"] and s.steps == 20
    assert json.loads(json.dumps(jobs)) == jobs  # crosses to a worker as JSON


@pytest.mark.parametrize("depths,seeds,words", [
    ((8, 15), (0,), "depth 15 is not valid for the MLP (2n+2): try 14 or 16"),
    ((9999,), (0,), "too deep"),
    ((), (0,), "at least one depth"),
    ((8,), (-1,), "seeds must be from 0"),
    (tuple(range(4, 84, 2)), tuple(range(4)), "too big"),
])
def test_a_bad_sweep_is_refused_before_anything_runs(depths, seeds, words):
    with pytest.raises(SettingsError) as error:
        plan_sweep(TINY, depths, seeds)
    assert words in str(error.value)


def test_rows_stream_as_runs_finish_and_make_sweep_csv(tmp_path):
    jobs = plan_sweep(TINY, depths=(4, 8), seeds=(0, 1))
    seen_progress = []
    stream = run_sweep(jobs, workers=0, on_progress=seen_progress.append)
    first = next(stream)  # one run done, the others not yet started
    assert seen_progress[-1] == pytest.approx(1 / len(jobs))
    rows = [first, *stream]
    assert len(rows) == run_count(jobs) == 8 and seen_progress[-1] == 1.0
    assert all(set(r) == set(SWEEP_COLUMNS) for r in rows)
    path = write_sweep_csv(rows, tmp_path)
    frame = pd.read_csv(path)
    assert list(frame.columns) == SWEEP_COLUMNS
    for column in ("train_error", "test_error", "mean_train_error"):
        assert frame[column].between(0, 1).all()
    assert (frame.wall_s > 0).all()
    summary = sweep_summary(sweep_frame(rows))
    assert len(summary) == 4 and (summary.seeds == 2).all()


def test_worker_processes_give_the_same_rows_and_stream_them(two_workers):
    jobs = plan_sweep(TINY, depths=(4, 8), seeds=(0,))
    here = sweep_frame(run_sweep(jobs, workers=0)).drop(columns="wall_s")
    progress_when_row_arrived = []
    latest = [0.0]
    rows = []
    for row in run_sweep(jobs, pool=two_workers, on_progress=lambda f: latest.__setitem__(0, f)):
        progress_when_row_arrived.append(latest[0])
        rows.append(row)
    assert progress_when_row_arrived[0] < 1.0  # the first row came while others still ran
    pd.testing.assert_frame_equal(sweep_frame(rows).drop(columns="wall_s"), here)


def test_a_failed_run_is_a_one_line_error_and_leaves_the_worker_ready(two_workers):
    with pytest.raises(ValueError, match="unknown job kind"):
        list(JobPool(0).run("rm -rf", [{}]))
    with pytest.raises(JobFailed, match="^width must be from 2 to 512"):
        list(two_workers.run("train", [{"settings": {"width": 0}, "family": "plain", "depth": 8, "seed": 0}]))
    assert two_workers.usable
    # A batch given up half way: the other worker's late answer must not mix into the next batch.
    half = plan_sweep(TINY.with_changes(steps=200), depths=(8,), seeds=(0,))
    bad = {"settings": {"width": 0}, "family": "plain", "depth": 8, "seed": 0}
    with pytest.raises(JobFailed):
        list(two_workers.run("train", [half[0], bad]))
    rows = list(run_sweep(plan_sweep(TINY, depths=(4,), seeds=(0,)), pool=two_workers))
    assert sorted((r["family"], r["depth"]) for r in rows) == [("plain", 4), ("resnet", 4)]


def collect_rows(run, event) -> None:
    """The sweep panel's handling, reduced to the rows."""
    if event.result is not None:
        run.add(event.result)


@pytest.fixture
def one_process():
    scheduler = Scheduler(size=1)
    yield scheduler
    scheduler.close()


def training_workers() -> list[int]:
    """The training worker processes this test process has started (the scheduler's kind)."""
    return [p.pid for p in psutil.Process().children()
            if "resnet_core.worker" in " ".join(p.cmdline())]


def test_a_stopped_sweep_stops_taking_turns(one_process):
    long = plan_sweep(Settings(steps=5000), depths=(56,), seeds=(0,), families=("plain",))
    progress = []
    run = start_analysis(one_process, "train", long, lambda r, e: progress.append(e.partial), parallel=1)
    deadline = time.monotonic() + 60
    while not progress and time.monotonic() < deadline:  # wait until it trains
        time.sleep(0.1)
    assert progress and progress[-1]["step"] < 5000
    run.cancel()
    assert run.wait(10) and run.error is None and run.snapshot() == []
    assert one_process.stats() == {"size": 1, "active": 0, "tasks": 0, "processes": 1}  # nothing left to run


def test_one_budget_of_processes_holds_training_and_a_sweep_together(one_process):
    """A sweep asking for two runs at once, beside a session training, on a budget of one process:
    all of it moves, and no second process is started (the old separate queues made three)."""
    job = Session(one_process, TINY.with_changes(models=("plain-4", "resnet-6"), width=8, steps=100_000))
    try:
        job.train()
        wait_for(lambda: job.status().step > 0)
        jobs = plan_sweep(TINY.with_changes(steps=300), depths=(4, 8), seeds=(0,))
        before = job.status().step
        existing = set(training_workers())  # the scheduler's one, and any other test's pool
        run = start_analysis(one_process, "train", jobs, collect_rows, parallel=2)
        seen = set()
        while not run.done:
            seen.update(training_workers())
            time.sleep(0.2)
        assert run.error is None and len(run.snapshot()) == len(jobs)
        assert job.status().step - before >= 20  # training went on meanwhile, not starved by the sweep
        assert seen <= existing and len(one_process.pids()) == 1 and set(one_process.pids()) <= seen
    finally:
        job.stop()


def test_a_failed_sweep_keeps_the_rows_it_had_and_says_why_in_one_line(one_process):
    good = plan_sweep(TINY, depths=(4,), seeds=(0,), families=("plain",))
    bad = {"settings": {"width": 0}, "family": "plain", "depth": 8, "seed": 0}
    run = start_analysis(one_process, "train", [*good, bad], collect_rows, parallel=1)
    assert run.wait(60)
    assert len(run.snapshot()) == 1 and run.error.startswith("width must be from 2 to 512")
    assert one_process.stats()["tasks"] == 0


def test_cli_sweep_writes_sweep_csv(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--depths", "4,8", "--seeds", "0", "--steps", "10", "--dataset-arg", "n=400",
                 "--workers", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    frame = pd.read_csv(out / "sweep.csv")
    assert list(frame.columns) == SWEEP_COLUMNS and len(frame) == 4
    assert "4 runs" in capsys.readouterr().out


def test_a_learning_rate_sweep_trains_every_depth_at_every_rate(tmp_path, capsys):
    """``sweep --lrs``: one run per (family, depth, seed, lr), the rate in sweep.csv's lr column, each
    run's numbers those of a run at that rate alone (stacked or not)."""
    jobs = plan_sweep(TINY, depths=(4, 8), seeds=(0, 1), lrs=(0.3, 0.01), families=("resnet",))
    assert run_count(jobs) == 2 * 2 * 2
    assert sorted({Settings.from_dict(r["settings"]).lr for j in jobs for r in job_runs(j)}) == [0.01, 0.3]
    out = tmp_path / "sweep"
    code = main(["sweep", "--depths", "4,8", "--seeds", "0,1", "--lrs", "0.01,0.3", "--families", "resnet",
                 "--steps", "10", "--dataset-arg", "n=400", "--workers", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    frame = pd.read_csv(out / "sweep.csv")
    assert list(frame.columns) == SWEEP_COLUMNS and len(frame) == 8
    assert sorted(frame["lr"].unique()) == [0.01, 0.3]
    alone = sweep_frame(run_sweep(plan_sweep(TINY.with_changes(lr=0.3), depths=(8,), seeds=(1,),
                                             families=("resnet",), steps=10), workers=0))
    mine = frame[(frame["depth"] == 8) & (frame["seed"] == 1) & (frame["lr"] == 0.3)]
    assert mine["train_error"].iloc[0] == alone["train_error"].iloc[0]
    assert "lr" in capsys.readouterr().out


def test_the_learning_rate_heatmap_marks_the_best_rate_of_each_depth():
    import plotly.graph_objects as go

    from dashboard.charts.sweep_lr import best_lr_per_depth, lr_depth_figure

    rows = [{"family": "resnet", "depth": d, "seed": s, "lr": lr, "train_error": err, "test_error": err,
             "mean_train_error": err, "wall_s": 1.0}
            for d, best in ((8, 0.1), (20, 0.01)) for s in (0, 1) for lr in (0.01, 0.1, 0.3)
            for err in [0.1 if lr == best else (None if lr == 0.3 else 0.5)]]
    frame = sweep_frame(rows)
    assert best_lr_per_depth(frame, "resnet") == {8: 0.1, 20: 0.01}
    fig = lr_depth_figure(frame)
    go.Figure(fig.to_dict())
    heat, stars = fig.data
    assert list(stars.x) == ["0.1", "0.01"] and np.asarray(heat.z)[0, 2] == 100  # diverged: 100 %


@pytest.mark.parametrize("args,words", [
    (["--lrs", "0.1,fast"], ["--lrs", "numbers"]),
    (["--lrs", "0.1,20"], ["lr must be"]),
    (["--depths", "8,15"], ["depth 15", "14 or 16"]),
    (["--depths", "8,x"], ["--depths", "whole numbers"]),
    (["--seeds", ""], ["--seeds", "at least one"]),
    (["--families", "plain,vgg"], ["families"]),
    (["--width", "0"], ["width"]),
    (["--dataset", "spiralz"], ["unknown dataset"]),
    (["--batch-size", "4000"], ["batch_size 4000", "at most"]),
    (["--workers", "-1"], ["--workers"]),
])
def test_cli_sweep_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, words):
    out = tmp_path / "sweep"
    code = main(["sweep", "--depths", "4", "--seeds", "0", "--steps", "5", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err
    assert not (out / "sweep.csv").exists()


def test_cli_sweep_does_not_overwrite_without_asking(tmp_path, capsys):
    (tmp_path / "sweep.csv").write_text("x\n")
    assert main(["sweep", "--depths", "4", "--seeds", "0", "--steps", "5", "--out", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "sweep.csv").read_text() == "x\n"


@pytest.mark.slow
def test_deeper_plain_nets_train_worse_while_residual_nets_do_not(two_workers):
    """He et al. 2015, Table 6 / Fig. 6 on spirals. Measured over seeds 0-4 at 150 steps: the error
    averaged over the run was plain-8 0.10-0.12, plain-32 0.44-0.58, resnet-8 0.11-0.13,
    resnet-32 0.12-0.15."""
    jobs = plan_sweep(Settings(steps=150), depths=(8, 32), seeds=(0, 1))
    frame = sweep_frame(run_sweep(jobs, pool=two_workers))
    mean = frame.groupby(["family", "depth"]).mean_train_error.mean()
    assert mean["plain", 32] > mean["plain", 8] + 0.2  # the degradation
    assert mean["plain", 32] > mean["resnet", 32] + 0.2
    assert mean["resnet", 32] < mean["resnet", 8] + 0.1  # the residual family does not degrade
    worst_resnet = frame.query("family == 'resnet' and depth == 32").train_error.max()
    assert frame.query("family == 'plain' and depth == 32").train_error.min() > worst_resnet


# ------------------------------------------------------------------------------ chart and panel
def test_the_sweep_chart_has_a_line_and_a_band_per_family_in_both_panels():
    from dashboard.charts.studies import sweep_figure

    rows = [{"family": f, "depth": d, "seed": s, "train_error": e + s / 100, "test_error": e + 0.05,
             "mean_train_error": e + 0.1, "wall_s": 1.0}
            for f, errors in (("plain", {8: 0.1, 32: 0.5}), ("resnet", {8: 0.1, 32: 0.05}))
            for d, e in errors.items() for s in (0, 2)]
    fig = sweep_figure(sweep_frame(rows))
    lines = {(t.name, t.xaxis): t for t in fig.data if t.name}
    assert set(lines) == {("plain (final)", "x"), ("plain (run average)", "x"), ("residual (final)", "x"),
                          ("residual (run average)", "x"), ("plain (final)", "x2"), ("residual (final)", "x2")}
    plain = lines["plain (final)", "x"]
    assert list(plain.x) == [8, 32] and list(plain.y) == pytest.approx([11, 51])  # mean over seeds, in %
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 4 and list(bands[0].y) == pytest.approx([12, 52, 50, 10])  # best to worst seed
    partial = sweep_figure(sweep_frame(rows[:2]))  # the first results of a running sweep
    assert {t.name for t in partial.data if t.name} == {"plain (final)", "plain (run average)"}


@pytest.fixture
def release_sessions():
    yield
    import streamlit as st

    st.cache_resource.clear()  # on_release cancels the panel's sweep and ends its processes


PANEL = """
from resnet_core.settings import Settings
from dashboard.panels.sweep import render_sweep_panel
render_sweep_panel(Settings(steps=20, eval_every=10, dataset={dataset!r}, dataset_args={args!r}))
"""


def points_csv(folder: Path) -> str:
    """A user's points, where the sidebar leaves an uploaded CSV: a file the workers read."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    label = (x[:, 0] * x[:, 1] > 0).astype(int)
    path = folder / "points.csv"
    path.write_text("x1,x2,label\n" + "\n".join(f"{a:.4f},{b:.4f},{c}" for (a, b), c in zip(x, label)))
    return str(path)


@pytest.mark.parametrize("dataset", ["spirals", "csv"])
def test_the_panel_fills_the_chart_as_runs_finish(release_sessions, tmp_path, dataset):
    from streamlit.testing.v1 import AppTest

    args = {"n": 400} if dataset == "spirals" else {"path": points_csv(tmp_path)}
    at = AppTest.from_string(PANEL.format(dataset=dataset, args=args), default_timeout=30).run()
    assert not at.exception and not at.get("plotly_chart")  # nothing heavy on page load
    assert at.multiselect(key="sweep_depths").value == [8, 14, 20, 32, 44, 56]
    at.multiselect(key="sweep_depths").set_value([4, 8])
    at.number_input(key="sweep_seeds").set_value(1)
    at.number_input(key="sweep_workers").set_value(1)
    at.button(key="sweep_run").click().run()
    assert at.button(key="sweep_run").disabled and not at.button(key="sweep_stop").disabled
    deadline = time.monotonic() + 60
    while at.get("progress") and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 1
    assert "4 runs in" in " ".join(c.value for c in at.caption)
    assert not at.button(key="sweep_run").disabled


def test_the_panel_says_what_to_change_for_a_bad_choice(release_sessions):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(PANEL.format(dataset="spirals", args={"n": 400}), default_timeout=30).run()
    at.multiselect(key="sweep_depths").set_value([])
    at.button(key="sweep_run").click().run()
    assert [e.value for e in at.error] == ["a sweep needs at least one depth and one seed"]
