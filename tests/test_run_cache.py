"""The run cache: a run is a pure function of its key, so one session trains it and the others are
served its record, from a folder that survives restarts, stays bounded and is safe to share."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import torch

import resnet_core
from dashboard.runtime import replay
from dashboard.runtime.run_cache import (CACHE_ENV, INCOMING, LIMIT_ENV, RunCache, auto_device, code_digest,
                                         code_versions, record_until, run_key)
from resnet_core.records import RecordError, RunRecord
from resnet_core.settings import Settings
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.analysis.recorders import REGION_EVERY
from run_cache_runs import MLP, REPO, TINY, assert_same_run, train

# A small CIFAR-style CNN on the digits (three stages: the shortcut projects where the shape changes).
CNN = Settings(dataset="digits", arch="cnn", width=4, models=("plain-8", "resnet-8"), steps=8, eval_every=4,
               probe_every=1, paths_every=4, batch_size=32)


# ------------------------------------------------------------------------------ determinism

@pytest.mark.parametrize("settings", [
    MLP, MLP.with_changes(norm="none"),
    # the default init and a projection on every block, without BN: each shortcut has its own bias
    MLP.with_changes(norm="none", init="default", shortcut="projection", block="pre", optimizer="adam", lr=0.01),
    CNN, CNN.with_changes(norm="none"),
], ids=["mlp-bn", "mlp-nobn", "mlp-projection-default-init", "cnn-bn", "cnn-nobn"])
def test_two_live_runs_of_one_setting_record_the_same_tables(settings):
    first, second = train(settings), train(settings)
    assert len(first.paths_frame()) and len(first.layers_frame())  # there is something to compare
    assert bool(first.region_history()) == (settings.arch == "mlp")  # decision maps: 2D data only
    assert_same_run(first, second)


def test_the_dashboards_worker_processes_record_the_same_run_as_one_process():
    """The page trains through worker processes, the CLI in one: a key is one run either way (rows
    arrive from the workers in their own order, so the tables are compared sorted)."""
    from resnet_core.scheduling.parallel_trainer import ParallelTrainer

    settings = MLP.with_changes(paths_every=0)  # the path analysis's first call in each worker is slow
    local = train(settings)
    with ParallelTrainer(settings, workers=2) as remote:
        remote.run()
        workers = remote.record
    for table, order in (("metrics_frame", ["model", "step"]), ("layers_frame", ["model", "step", "layer"]),
                         ("regions_frame", ["model", "y", "x"])):
        a, b = (getattr(r, table)().drop(columns=["wall_s"], errors="ignore").sort_values(order, kind="stable")
                .reset_index(drop=True) for r in (local, workers))
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=table)
    assert local.regions() == workers.regions()


# --------------------------------------------------------------------------------------- keys

def test_every_setting_changes_the_key():
    changes = {"dataset": "moons", "dataset_args": {"n": 301}, "models": ("plain-8", "plain-20"), "arch": "cnn",
               "width": 16, "block": "pre", "norm": "none", "shortcut": "pad", "init": "zero", "branch_scale": "invsqrt", "branch_layers": 3,
               "stages": 2, "optimizer": "adam", "lr": 0.01, "momentum": 0.5, "weight_decay": 1e-4,
               "batch_size": 64, "steps": 31, "seed": 1, "eval_every": 6, "probe_every": 3, "paths_every": 11,
               "device": "cuda"}
    assert set(changes) == {f.name for f in dataclasses.fields(Settings)}  # a new setting must be added here
    base = MLP.with_changes(device="cpu")
    keys = {name: run_key(base.with_changes(**{name: value})) for name, value in changes.items()}
    assert len(set(keys.values()) | {run_key(base)}) == len(changes) + 1


def test_the_key_ignores_order_defaults_and_how_the_device_is_named():
    s = MLP.with_changes(dataset_args={"n": 300, "noise": 0.15})
    reordered = Settings.from_dict(dict(reversed(list(s.to_dict().items())))).with_changes(
        dataset_args={"noise": 0.15, "n": 300})
    assert run_key(reordered) == run_key(s)
    assert run_key(s.with_changes(dataset_args={"n": 300})) == run_key(s)  # 0.15 is the default noise
    assert run_key(s.with_changes(dataset_args={"n": "300"})) == run_key(s)  # as a URL or the CLI gives it
    # "auto" is whatever it resolves to here: on a machine without a GPU, auto and cpu are one run
    assert run_key(s.with_changes(device="auto")) == run_key(s.with_changes(device=auto_device()))
    assert run_key(s.with_changes(device="auto"), device="cpu") == run_key(s.with_changes(device="cpu"))
    assert run_key(s, device="cuda:0") == run_key(s, device="cuda") != run_key(s, device="cpu")


def test_the_key_changes_with_the_versions_and_the_code():
    s = MLP
    versions = code_versions()
    assert set(versions) >= {"residual-lab", "torch", "numpy", "code"}
    assert run_key(s, versions=versions) == run_key(s)
    for name in versions:
        assert run_key(s, versions={**versions, name: versions[name] + "-other"}) != run_key(s), name


def test_the_code_digest_follows_every_source_file(tmp_path):
    copy = tmp_path / "resnet_core"
    for path in Path(resnet_core.__file__).parent.rglob("*.py"):
        target = copy / path.relative_to(Path(resnet_core.__file__).parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    assert code_digest(copy) == code_versions()["code"]
    lockstep = copy / "training" / "lockstep.py"
    lockstep.write_text(lockstep.read_text() + "\n# one comment more\n")
    assert code_digest(copy) != code_versions()["code"]


def test_the_package_version_is_the_one_pyproject_declares():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert resnet_core.__version__ == declared == code_versions()["residual-lab"]


POINTS = "x1,x2,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(40))


def test_a_csv_is_keyed_by_its_content_not_its_path(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "elsewhere" / "b.csv"
    b.parent.mkdir()
    a.write_text(POINTS)
    b.write_text(POINTS)
    s = MLP.with_changes(dataset="csv", dataset_args={"path": str(a)})
    key = run_key(s)
    assert run_key(s.with_changes(dataset_args={"path": str(b)})) == key
    b.write_text(POINTS.replace("6,", "5,", 1))  # one value edited, in place
    assert run_key(s.with_changes(dataset_args={"path": str(b)})) != key
    assert run_key(s.with_changes(dataset_args={"path": str(tmp_path / "missing.csv")})) != key


def test_cifar_is_keyed_by_the_content_of_its_files(tmp_path):
    def folder(name: str, last: bytes) -> Path:
        root = tmp_path / name
        root.mkdir()
        for i, file in enumerate(["data_batch_1.bin", "test_batch.bin"]):
            (root / file).write_bytes(bytes([i]) + bytes(3072) + last)
        return root

    s = CNN.with_changes(dataset="cifar10", dataset_args={"root": str(folder("one", b"")), "batches": 1})
    assert run_key(s.with_changes(dataset_args={"root": str(folder("two", b"")), "batches": 1})) == run_key(s)
    assert run_key(s.with_changes(dataset_args={"root": str(folder("three", b"x")), "batches": 1})) != run_key(s)


# ----------------------------------------------------------------------- storing and serving

@pytest.fixture(scope="module")
def mlp_run() -> RunRecord:
    return train(MLP, lesion=True)


def test_a_stored_run_is_served_with_the_tables_it_was_put_with(tmp_path, mlp_run):
    cache = RunCache(tmp_path / "runs" / "cache", limit_mb=50)
    key = run_key(MLP)
    assert cache.get(key) is None and not cache.contains(key)
    assert cache.put(key, mlp_run) is True
    assert cache.contains(key) and cache.keys() == [key]
    assert_same_run(cache.get(key), mlp_run, wall_s=True)
    # the entry is a plain run folder, read as one; but it is every session's run (issue 20, item 9):
    # the Records tab's replay list, which the whole class sees, never offers it
    assert replay.run_folders(tmp_path / "runs") == []
    with pytest.raises(RecordError, match="not a run folder"):
        replay.load(f"cache/{key}", tmp_path / "runs")
    replayed = RunRecord.read(cache.path(key))
    for table in ("metrics_frame", "layers_frame", "paths_frame", "lesion_frame", "regions_frame"):
        pd.testing.assert_frame_equal(getattr(replayed, table)(), getattr(mlp_run, table)(), check_exact=True)
    assert replayed.regions() == mlp_run.regions()  # regions.csv: still the latest map per model
    assert cache.put(key, mlp_run) is False  # already there: the first put is kept


def test_only_a_finished_run_of_that_very_key_is_stored(tmp_path, mlp_run):
    cache = RunCache(tmp_path, limit_mb=50)
    with pytest.raises(ValueError, match="finished"):
        cache.put(run_key(MLP), train(MLP, steps=10))
    with pytest.raises(ValueError, match="not a run of that key"):
        cache.put(run_key(MLP.with_changes(seed=1)), mlp_run)
    changed = RunRecord.read(mlp_run.write(tmp_path / "run"))
    changed.config["settings"]["lr"] = 0.2  # what the dashboard records when the lr slider moves mid-run
    with pytest.raises(ValueError, match="not a run of that key"):
        cache.put(run_key(MLP), changed)
    assert cache.keys() == []


@pytest.mark.parametrize("step", [0, 7, 15, 22, 30])
def test_a_stored_run_cut_at_a_step_is_what_a_live_run_had_recorded_by_then(tmp_path, mlp_run, step):
    cache = RunCache(tmp_path, limit_mb=50)
    cache.put(run_key(MLP), mlp_run)
    live = train(MLP, steps=step)
    cut = record_until(cache.get(run_key(MLP)), step)
    assert cut.lesion_rows() == [] and mlp_run.lesion_rows()  # a lesion is run on demand after training
    assert_same_run(cut, live, history=False)
    assert {m: at for m, (at, _) in cut.regions().items()} == dict.fromkeys(MLP.models, step - step % (REGION_EVERY * MLP.eval_every))
    assert cut.config == mlp_run.config


# Without BN at lr 1 the deeper nets blow up within a few steps (a divergence is recorded during
# the update that overflows, under the step it started from); the shallow one trains on.
DIVERGING = Settings(models=("plain-4", "plain-14", "resnet-14"), norm="none", lr=1.0, steps=12, eval_every=2,
                     probe_every=1, paths_every=0, dataset_args={"n": 300})


@pytest.fixture(scope="module")
def diverging_run() -> RunRecord:
    return train(DIVERGING)


@pytest.mark.parametrize("step", [1, 2, 3, 8, 9, 12])
def test_a_cut_run_holds_the_divergences_a_live_run_had_seen(diverging_run, step):
    diverged = diverging_run.metrics_frame().query("status == 'diverged'")
    assert len(diverged) == 2 and set(diverged.step) <= set(range(1, 12))  # the cuts below fall around them
    assert_same_run(record_until(diverging_run, step), train(DIVERGING, steps=step), history=False)


def test_a_stopped_cnn_run_matches_the_cut_full_run():
    full = train(CNN.with_changes(norm="none"))
    live = train(CNN.with_changes(norm="none"), steps=5)
    assert_same_run(record_until(full, 5), live, history=False)


def test_the_cache_survives_a_restart(tmp_path, mlp_run):
    """A new server process (a new RunCache from the environment) serves what an old one stored."""
    RunCache(tmp_path / "cache", limit_mb=50).put(run_key(MLP), mlp_run)
    script = textwrap.dedent("""
        from dashboard.runtime.run_cache import RunCache, run_key
        from resnet_core.settings import Settings
        import json, sys
        settings = Settings.from_dict(json.loads(sys.argv[1]))
        cache = RunCache()
        record = cache.get(run_key(settings))
        for value in (cache.root, cache.limit_mb, record.metrics_frame().to_json(), len(record.region_history())):
            print(value)
    """)
    env = {**os.environ, CACHE_ENV: str(tmp_path / "cache"), LIMIT_ENV: "12.5", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script, json.dumps(MLP.to_dict())], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    root, limit, metrics, maps = out.stdout.splitlines()
    assert (Path(root), float(limit)) == (tmp_path / "cache", 12.5)
    assert metrics == mlp_run.metrics_frame().to_json() and int(maps) == len(mlp_run.region_history())


def test_a_limit_that_is_not_a_number_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(LIMIT_ENV, "lots")
    with pytest.raises(ValueError, match=LIMIT_ENV):
        RunCache(tmp_path)
    monkeypatch.setenv(LIMIT_ENV, "-1")
    with pytest.raises(ValueError, match=LIMIT_ENV):
        RunCache(tmp_path)


# ---------------------------------------------------------------------------------- eviction

def test_eviction_keeps_the_most_recently_used_within_the_limit(tmp_path, tiny_runs):
    keys = list(tiny_runs)
    probe = RunCache(tmp_path / "probe", limit_mb=50)
    probe.put(keys[0], tiny_runs[keys[0]])
    entry = probe.size_bytes()
    cache = RunCache(tmp_path / "cache", limit_mb=3.5 * entry / 2**20)  # room for three entries
    for key in keys[:3]:
        assert cache.put(key, tiny_runs[key])
    assert cache.keys() == keys[:3]
    assert cache.get(keys[0]) is not None  # a use: keys[0] is now the most recent
    assert cache.put(keys[3], tiny_runs[keys[3]])
    assert cache.keys() == [keys[2], keys[0], keys[3]]  # keys[1], the least recently used, went
    assert cache.put(keys[4], tiny_runs[keys[4]])
    assert cache.keys() == [keys[0], keys[3], keys[4]]
    assert cache.size_bytes() <= cache.limit_bytes
    assert cache.get(keys[1]) is None and cache.get(keys[2]) is None
    assert sorted(p.name for p in cache.root.iterdir()) == sorted(keys[0:1] + keys[3:] + [INCOMING, ".trash"])
    assert not any((cache.root / ".trash").iterdir()) and not any((cache.root / INCOMING).iterdir())


def test_the_finished_runs_are_one_cache_memory_in_front_of_the_folder(tmp_path, tiny_runs):
    """What a server process finished it serves from memory (the last few), and what another one
    stored, from the folder they share; without a folder, memory alone."""
    from dashboard.runtime.finished_runs import FinishedRuns

    keys = list(tiny_runs)
    here = FinishedRuns(RunCache(tmp_path / "cache", limit_mb=50), keep=2)
    for key in keys[:3]:
        here.remember(key, tiny_runs[key])
        here.store(key, tiny_runs[key])
    assert here.get(keys[2]) is tiny_runs[keys[2]]  # from memory: the very record
    from_folder = here.get(keys[0])  # past the two kept in memory: read back from the folder
    assert from_folder is not None and from_folder is not tiny_runs[keys[0]]
    assert_same_run(from_folder, tiny_runs[keys[0]])
    assert here.get(keys[0]) is from_folder  # and kept in memory from then on
    other = FinishedRuns(RunCache(tmp_path / "cache", limit_mb=50))  # another server process
    assert_same_run(other.get(keys[1]), tiny_runs[keys[1]])
    alone = FinishedRuns(None, keep=1)
    alone.remember(keys[0], tiny_runs[keys[0]])
    alone.store(keys[0], tiny_runs[keys[0]])  # nowhere to write: nothing happens
    alone.remember(keys[1], tiny_runs[keys[1]])
    assert alone.get(keys[0]) is None and alone.get(keys[1]) is tiny_runs[keys[1]]


def test_a_run_larger_than_the_whole_limit_is_not_stored(tmp_path, tiny_runs):
    key, record = next(iter(tiny_runs.items()))
    small = RunCache(tmp_path / "small", limit_mb=0.001)
    assert small.put(key, record) is False and small.keys() == [] and small.get(key) is None
    off = RunCache(tmp_path / "off", limit_mb=0)
    assert off.put(key, record) is False and off.keys() == []


# ------------------------------------------------- issue 20: a class's cache serves its run, and only it

def test_a_cached_run_is_the_live_run_at_every_step_past_the_history_kept_in_memory(tmp_path):
    """Item 5: 1,500 steps evaluated at every one. The live page at step 750 showed 751 evaluations
    a model; the record in memory at the end keeps 1,000 over the whole run. The cache stores the
    run folder the live run streamed (every row), so a replay at step 750 shows the 751."""
    settings = TINY.with_changes(steps=1500, eval_every=1, probe_every=50)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = LockstepTrainer(settings)
        trainer.record.stream_to(tmp_path / "live")  # as the server streams every live run
        trainer.run(750)
        at_750 = (trainer.record.metrics_frame(), trainer.record.layers_frame())
        trainer.run()
    finally:
        torch.set_num_threads(threads)
    assert len(at_750[0]) == 751 and len(trainer.record.metrics_frame()) == 1000  # the live record thinned
    cache = RunCache(tmp_path / "cache", limit_mb=50)
    key = run_key(settings)
    assert cache.put(key, trainer.record)
    assert len(pd.read_csv(cache.path(key) / "metrics.csv")) == 1501  # the download: every evaluation
    replayed = record_until(cache.get(key), 750)
    pd.testing.assert_frame_equal(replayed.metrics_frame(), at_750[0], check_exact=True)
    pd.testing.assert_frame_equal(replayed.layers_frame(), at_750[1], check_exact=True)
    assert_same_run(cache.get(key), trainer.record, wall_s=True, history=False)  # and the end is the end


def test_two_views_share_a_metrics_table_only_when_they_hold_the_same_rows():
    """Item 6: past 1,000 evaluations a run thins its rows. The metrics table the sessions share is
    keyed on what makes it: two copies with one key hold the same rows, at whatever steps they stand."""
    from dashboard.runtime.run_cache import metrics_key

    record = RunRecord({"settings": {"steps": 2200}, "models": [{"name": "plain-4", "depth": 4}]})
    views = {}
    for step in range(0, 2201):
        record.add_metrics([{"step": step, "model": "plain-4", "train_loss": 1.0 / (step + 1), "train_error": 0.5,
                             "test_error": 0.5, "wall_s": step / 100, "status": "ok"}])
        if step == 700:
            views[700] = record_until(record, 700)  # a viewer at step 700 while the head is there: 701 rows
    # later, past the budget: a viewer further on holding as many (thinned) rows, and one at 700 again
    later = next(s for s in range(700, 2201) if len(record_until(record, s).metrics_frame()) == 701)
    views[later], views["700 again"] = record_until(record, later), record_until(record, 700)
    tables = {name: view.metrics_frame() for name, view in views.items()}
    assert len(tables[700]) == len(tables[later]) and not tables[700].equals(tables[later])  # the old key's mix-up
    for a in views:
        for b in views:
            if metrics_key(views[a]) == metrics_key(views[b]):
                pd.testing.assert_frame_equal(tables[a], tables[b])
    assert metrics_key(views[later]) == metrics_key(record_until(record, later))  # and alike views still share


def test_a_cache_entry_is_served_only_for_its_own_key_and_only_when_every_file_checks(tmp_path, tiny_runs, monkeypatch):
    """Item 7: an entry copied under another key, a damaged regions_history.json, a file over the
    replay size limit: none is served (and none raises)."""
    import shutil

    keys = list(tiny_runs)
    cache = RunCache(tmp_path / "cache", limit_mb=50)
    assert cache.put(keys[0], tiny_runs[keys[0]])
    shutil.copytree(cache.path(keys[0]), cache.path(keys[1]))
    meta = json.loads((cache.path(keys[1]) / "cache.json").read_text())
    (cache.path(keys[1]) / "cache.json").write_text(json.dumps({**meta, "key": keys[1]}))
    assert cache.get(keys[1]) is None  # seed 0's run is not seed 1's
    assert cache.get(keys[0]) is not None
    (cache.path(keys[0]) / "regions_history.json").write_text('{"maps":[7]}')
    assert cache.get(keys[0]) is None
    assert cache.put(keys[2], tiny_runs[keys[2]])
    (cache.path(keys[2]) / "regions_history.json").write_text('{"maps":[{"step":0,"model":"resnet-4","n":2,'
                                                              '"x":[0,1],"y":[0,1],"classes":[9,9,9,9],'
                                                              '"confidence":[1,1,1,1]}]}')
    assert cache.get(keys[2]) is None  # class 9 of a two-class data set
    assert cache.put(keys[3], tiny_runs[keys[3]])
    monkeypatch.setenv("RESIDUAL_LAB_REPLAY_MB", "1")
    with open(cache.path(keys[3]) / "layers.csv", "a") as f:
        f.write(("0,resnet-4,0,x,1,1,\n") * 80_000)  # over 1 MB, what a replay reads
    assert cache.get(keys[3]) is None
