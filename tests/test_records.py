"""The run record: a bounded history in memory however long a run goes, every row in the run
folder as it goes, and the folder read back as the same record."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from resnet_core.records import METRIC_HISTORY, History, LayerSnapshot, RecordError, RunRecord


def snapshot(step: int, depth: int) -> LayerSnapshot:
    ratio = np.full(depth, np.nan)
    ratio[2::2] = 0.1
    return LayerSnapshot(step, np.full(depth, 1.0 + step), np.full(depth, 0.5), ratio)


def metric(step: int, model: str = "resnet-10") -> dict:
    return {"step": step, "model": model, "train_loss": 1.0 / (1 + step), "train_error": 0.5, "test_error": 0.5,
            "wall_s": step * 0.01, "status": "ok"}


def test_the_history_stays_at_its_budget_and_evenly_spread():
    history = History(1000)
    for step in range(100_000):
        history.add(step, step)
    kept = np.asarray(history.items)
    gaps = np.diff(kept)
    assert len(kept) == 1000 and kept[0] == 0 and list(kept[-2:]) == [99_998, 99_999]
    assert gaps[:-1].max() <= 2.5 * (100_000 / 1000)  # never a hole much wider than an even spacing


def test_a_long_run_keeps_a_fixed_history_and_its_folder_keeps_every_row(tmp_path):
    names = {"resnet-10": [f"l{i}" for i in range(10)]}
    record = RunRecord({"models": [{"name": "resnet-10", "depth": 10}]}, names)
    record.stream_to(tmp_path / "run")
    steps = 3 * METRIC_HISTORY
    for step in range(steps):
        record.add_metrics([metric(step)])
        record.add_layers("resnet-10", snapshot(step, 10))
    record.add_metrics([{**metric(steps), "status": "diverged", "train_loss": None}])
    memory = record.metrics_frame()
    assert len(memory) == METRIC_HISTORY + 1 and memory.step.iloc[-1] == steps  # the divergence is kept
    assert len(record.snapshots("resnet-10")) == 1000 and record.latest_step() == steps
    record.close_stream()
    on_disk = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert len(on_disk) == steps + 1 and list(on_disk.step[:5]) == [0, 1, 2, 3, 4]
    layers = pd.read_csv(tmp_path / "run" / "layers.csv")
    assert len(layers) == 10 * steps and layers.grad_norm.iloc[-1] == steps
    back = RunRecord.read(tmp_path / "run")
    assert len(back.metrics_frame()) == METRIC_HISTORY + 1 and len(back.snapshots("resnet-10")) == 1000
    steps_back, values = back.layer_matrix("resnet-10", "branch_ratio")
    assert steps_back[0] == 0 and steps_back[-1] == steps - 1 and np.isnan(values[:, 1]).all()


def test_a_streamed_folder_holds_what_write_would(tmp_path):
    """The same tables, whether streamed as the run went or written at its end."""
    from resnet_core.settings import Settings
    from resnet_core.analysis.recorders import standard
    from resnet_core.training.lockstep import LockstepTrainer

    settings = Settings(models=("plain-4", "resnet-6"), width=8, steps=12, eval_every=4, probe_every=2,
                        paths_every=6, dataset_args={"n": 200})
    trainer = LockstepTrainer(settings, recorders=standard())
    trainer.record.stream_to(tmp_path / "streamed")
    trainer.run()
    trainer.call("lesion_study")
    trainer.record.close_stream()
    trainer.record.write(tmp_path / "written")
    keys = {"metrics.csv": ["model", "step"], "layers.csv": ["model", "step", "layer"],
            "paths.csv": ["model", "step", "length"], "lesion.csv": ["model", "block"], "regions.csv": ["model", "y", "x"]}
    for name, key in keys.items():  # rows come in time order when streamed, model by model when written
        a, b = (pd.read_csv(tmp_path / kind / name).sort_values(key, ignore_index=True)
                for kind in ("streamed", "written"))
        assert list(a.columns) == list(b.columns), name
        pd.testing.assert_frame_equal(a, b, check_dtype=False, obj=name)
    for name in ("lesion.csv", "regions.csv"):  # rewritten whole by the stream without pandas: the same bytes
        assert (tmp_path / "streamed" / name).read_bytes() == (tmp_path / "written" / name).read_bytes(), name


def test_reading_a_huge_layers_file_keeps_only_the_history(tmp_path):
    """A 1002-layer net probed 2,000 times (120 MB of layers.csv): read in chunks and thinned on the
    way in, so the record holds its budget, not the file."""
    folder = tmp_path / "run"
    record = RunRecord({"models": [{"name": "resnet-1002", "depth": 1002}]},
                       {"resnet-1002": [f"l{i}" for i in range(1002)]})
    record.stream_to(folder)
    for step in range(2000):
        record.add_layers("resnet-1002", snapshot(step, 1002))
    record.close_stream()
    back = RunRecord.read(folder)
    assert len(back.snapshots("resnet-1002")) == 998  # LAYER_VALUES / depth
    assert back.snapshots("resnet-1002")[-1].step == 1999


def test_a_file_is_refused_beyond_the_size_asked(tmp_path):
    record = RunRecord({"models": []}, {"plain-4": ["a", "b", "c", "d"]})
    record.stream_to(tmp_path)
    for step in range(2000):
        record.add_layers("plain-4", snapshot(step, 4))
    record.close_stream()
    with pytest.raises(RecordError, match=r"run/layers.csv has .* more than the 1[0-9,]* bytes a replay reads"):
        RunRecord.read(tmp_path, max_bytes=100_000, name="run")
