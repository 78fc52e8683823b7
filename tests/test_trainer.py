"""The lockstep trainer: same batches for every model, probes, divergence, worker processes, records."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from resnet_core.training.lockstep import BatchStream, LockstepTrainer
from resnet_core.analysis.recorders import standard
from resnet_core.scheduling.parallel_trainer import ParallelTrainer
from resnet_core.presets import get_preset, presets
from resnet_core.records import LAYER_COLUMNS, METRIC_COLUMNS, RecordError, RunRecord
from resnet_core.settings import Settings


SMALL = Settings(models=("plain-6", "plain-14", "resnet-14"), steps=30, eval_every=10, probe_every=1,
                 dataset_args={"n": 400})


def test_every_model_sees_the_same_batches_in_the_same_order():
    a, b = BatchStream(100, 32, seed=3), BatchStream(100, 32, seed=3)
    seq_a = [a.next() for _ in range(10)]
    assert all(torch.equal(x, y) for x, y in zip(seq_a, (b.next() for _ in range(10))))
    assert not torch.equal(seq_a[0], BatchStream(100, 32, seed=4).next())
    epoch = torch.cat(seq_a[:3])  # 3 batches of 32 from 100 points: no repeats within an epoch
    assert len(set(epoch.tolist())) == 96


def test_a_model_trains_the_same_alone_or_beside_others():
    together = LockstepTrainer(SMALL, recorders=standard())
    together.run()
    alone = LockstepTrainer(SMALL, only=("resnet-14",), recorders=standard())
    alone.run()
    a = together.record.metrics_frame().query("model == 'resnet-14'").reset_index(drop=True)
    b = alone.record.metrics_frame()
    pd.testing.assert_series_equal(a.train_loss, b.train_loss)


def test_records_hold_metrics_and_every_layer():
    trainer = LockstepTrainer(SMALL, recorders=standard())
    trainer.run()
    m = trainer.record.metrics_frame()
    assert list(m.columns) == METRIC_COLUMNS
    assert sorted(m.step.unique()) == [0, 10, 20, 30]
    assert m.train_error.between(0, 1).all() and m.test_error.between(0, 1).all()
    layers = trainer.record.layers_frame()
    assert list(layers.columns) == LAYER_COLUMNS
    assert layers.groupby("model").layer.nunique().to_dict() == {"plain-6": 6, "plain-14": 14, "resnet-14": 14}
    assert (layers.grad_norm > 0).all() and (layers.act_std > 0).all()
    ratio = layers.dropna(subset=["branch_ratio"])
    assert set(ratio.model) == {"resnet-14"} and ratio.groupby("step").size().eq(6).all()  # one per block
    steps, grid = trainer.record.layer_matrix("plain-14", "grad_norm")
    assert grid.shape == (30, 14) and steps[0] == 0


def test_probe_values_match_a_direct_computation():
    s = SMALL.with_changes(models=("resnet-8",), steps=1)
    trainer = LockstepTrainer(s, recorders=standard())
    net = trainer.models["resnet-8"]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer.train_step()
    snap = trainer.record.snapshots("resnet-8")[0]
    # Recompute the same batch's gradients from the initial weights.
    net.load_state_dict(before)
    stream = BatchStream(len(trainer.data.x_train), s.batch_size, s.seed)
    idx = stream.next()
    net.zero_grad()
    x, y = trainer.data.x_train[idx], trainer.data.y_train[idx]
    torch.nn.functional.cross_entropy(net(x), y).backward()
    direct = [u.weight_layer.weight.grad.norm().item() for u in net.units()]
    np.testing.assert_allclose(snap.grad_norm, direct, rtol=1e-5)
    h = net.features(x)
    block = net.blocks[0]
    expected_ratio = (block.branch(h).norm() / h.norm()).item()
    assert snap.branch_ratio[2] == pytest.approx(expected_ratio, rel=1e-4)


def test_a_diverging_model_is_flagged_and_the_others_go_on():
    # Without BN at lr 1 the deep nets blow up within a few steps; the shallow one does not.
    s = SMALL.with_changes(models=("plain-4", "plain-14", "resnet-14"), norm="none", lr=1.0, steps=40)
    trainer = LockstepTrainer(s, recorders=standard())
    trainer.run()
    assert trainer.status == {"plain-4": "ok", "plain-14": "diverged", "resnet-14": "diverged"}
    m = trainer.record.metrics_frame()
    for name, step in trainer.diverged_at.items():
        flagged = m[(m.model == name) & (m.status == "diverged")]
        assert flagged.step.tolist() == [step]
        assert not ((m.model == name) & (m.step > step)).any()  # it stopped there
    assert trainer.step == 40 and m[m.model == "plain-4"].step.max() == 40  # the healthy one went on


def test_set_lr_applies_at_the_next_step():
    trainer = LockstepTrainer(SMALL, recorders=standard())
    trainer.train_step()
    trainer.set_lr(0.001)
    assert all(g["lr"] == 0.001 for o in trainer.optimizers.values() for g in o.param_groups)
    assert trainer.settings.lr == 0.001


def test_worker_processes_give_the_same_run_as_one_process():
    s = SMALL.with_changes(steps=12, eval_every=4)
    local = LockstepTrainer(s, recorders=standard())
    local.run()
    with ParallelTrainer(s, workers=2) as remote:
        remote.run()
        assert remote.step == 12
        a = local.record.metrics_frame().sort_values(["model", "step"]).reset_index(drop=True)
        b = remote.record.metrics_frame().sort_values(["model", "step"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(a.drop(columns="wall_s"), b.drop(columns="wall_s"))
        la, lb = local.record.layers_frame(), remote.record.layers_frame()
        np.testing.assert_allclose(la.sort_values(["model", "step", "layer"]).grad_norm,
                                   lb.sort_values(["model", "step", "layer"]).grad_norm, rtol=1e-6)


def test_run_folder_round_trip(tmp_path):
    trainer = LockstepTrainer(SMALL, recorders=standard())
    trainer.run()
    trainer.record.write(tmp_path / "run")
    back = RunRecord.read(tmp_path / "run")
    pd.testing.assert_frame_equal(back.metrics_frame(), trainer.record.metrics_frame(), check_dtype=False)
    assert back.config["settings"]["models"] == list(SMALL.models)
    assert {m["name"]: m["parameters"] for m in back.config["models"]}["resnet-14"] > 0
    assert back.layer_matrix("resnet-14", "act_std")[1].shape == trainer.record.layer_matrix("resnet-14", "act_std")[1].shape
    assert back.regions() and back.regions() == trainer.record.regions()  # the decision maps, for a replay


def test_a_decision_map_that_is_not_a_square_grid_is_refused(tmp_path):
    trainer = LockstepTrainer(SMALL.with_changes(steps=2, eval_every=1), recorders=standard())
    trainer.run()
    run = trainer.record.write(tmp_path / "run")
    regions = pd.read_csv(run / "regions.csv")
    regions.iloc[:-1].to_csv(run / "regions.csv", index=False)  # one grid point short
    with pytest.raises(RecordError, match="regions.csv.*not one square grid"):
        RunRecord.read(run)


def test_reading_a_folder_that_is_not_a_run_says_so(tmp_path):
    with pytest.raises(RecordError, match="metrics.csv|config.json"):
        RunRecord.read(tmp_path)


def test_every_preset_is_valid_settings():
    assert {"degradation", "no-bn", "identity", "preact-deep", "thousand-layers", "digits-cnn"} <= set(presets())
    for preset in presets().values():
        assert preset.settings().models
        assert preset.description and preset.title


def test_digits_cnn_preset_trains_a_few_steps():
    s = get_preset("digits-cnn").settings(steps=3, eval_every=3, models=("plain-8", "resnet-8"))
    trainer = LockstepTrainer(s, recorders=standard())
    trainer.run()
    assert trainer.step == 3 and set(trainer.status.values()) == {"ok"}
    assert not math.isnan(trainer.record.metrics_frame().train_error.iloc[-1])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_degradation_shows_for_every_seed(seed):
    """The He et al. 2015 Fig. 1 claim, averaged over the run's evaluations (issue 2)."""
    s = get_preset("degradation").settings(seed=seed, probe_every=1000)
    trainer = LockstepTrainer(s, recorders=standard())
    trainer.run()
    mean = trainer.record.metrics_frame().groupby("model").train_error.mean()
    assert mean["plain-56"] >= mean["plain-20"] + 0.10
    assert mean["resnet-56"] <= mean["plain-56"] - 0.10


def test_no_more_worker_processes_than_models():
    """Asked for two processes for one model, the trainer starts one: an extra would sit idle,
    holding torch, and was never closed."""
    import psutil

    before = {p.pid for p in psutil.Process().children()}
    with ParallelTrainer(SMALL.with_changes(models=("resnet-14",), steps=2), workers=2) as trainer:
        trainer.run()
        started = {p.pid for p in psutil.Process().children()} - before
        assert len(trainer.pids()) == 1 and len(started) == 1 and trainer.step == 2
