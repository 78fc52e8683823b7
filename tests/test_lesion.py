"""The lesion study: delete each block at test time and measure training error (Veit et al. 2016)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from resnet_core.cli import main
from resnet_core.analysis.paths.lesion import lesion_errors, lesion_points, lesion_rows
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.analysis.recorders import standard
from resnet_core.scheduling.parallel_trainer import ParallelTrainer
from resnet_core.nets.models import build_model
from resnet_core.presets import get_preset
from resnet_core.training.probes import evaluate
from resnet_core.records import LESION_COLUMNS, PATH_COLUMNS
from resnet_core.settings import Settings


def test_rows_hold_the_intact_net_then_each_block_and_leave_the_net_intact(spirals):
    s = Settings(models=("resnet-14",)).checked()
    net = build_model("resnet-14", s, spirals.input_shape, spirals.n_classes)
    x, y = spirals.x_train, spirals.y_train
    before = net(x[:50]).detach()
    rows = lesion_rows(net, x, y, "resnet-14")
    assert list(pd.DataFrame(rows).columns) == LESION_COLUMNS
    assert [r["block"] for r in rows] == list(range(-1, 6))
    assert all(0 <= r["train_error"] <= 1 for r in rows)
    assert not any(b.removed for b in net.blocks) and net.training
    assert torch.equal(net(x[:50]).detach(), before)
    # the intact row is the eval-mode error with BN statistics of these very points
    from resnet_core.analysis.paths.adjoints import frozen_batch_norm
    with frozen_batch_norm(net, x):
        assert rows[0]["train_error"] == pytest.approx(evaluate(net, x, y)[1])


def test_deleting_a_block_whose_branch_is_zero_changes_nothing(spirals):
    s = Settings(models=("resnet-14", "plain-14"), init="zero").checked()
    x, y = spirals.x_train, spirals.y_train
    errors = lesion_errors(build_model("resnet-14", s, spirals.input_shape, spirals.n_classes), x, y)
    assert errors[1:] == [errors[0]] * 6  # every branch starts at zero: each block is the identity
    plain = lesion_errors(build_model("plain-14", s, spirals.input_shape, spirals.n_classes), x, y)
    assert any(e != plain[0] for e in plain[1:])  # the same weights without shortcuts are not


def test_plain_blocks_that_change_shape_cannot_be_deleted_residual_ones_can(spirals):
    s = Settings(models=("plain-14", "resnet-14"), stages=3).checked()
    x, y = spirals.x_train[:200], spirals.y_train[:200]
    starts = s.stage_starts("plain-14")
    assert starts == [2, 4]
    plain = build_model("plain-14", s, spirals.input_shape, spirals.n_classes)
    assert [i for i, b in enumerate(plain.blocks) if b.changes_shape] == starts
    errors = lesion_errors(plain, x, y)[1:]
    assert [i for i, e in enumerate(errors) if math.isnan(e)] == starts
    residual = lesion_errors(build_model("resnet-14", s, spirals.input_shape, spirals.n_classes), x, y)
    assert all(math.isfinite(e) for e in residual)


@pytest.mark.parametrize("changes,model", [({"arch": "cnn", "dataset": "digits"}, "resnet-20"),
                                           ({"stages": 4}, "resnet-22"), ({"stages": 2, "branch_layers": 3}, "plain-20"),
                                           ({}, "resnet-56-b1")])
def test_stage_starts_match_the_built_model(changes, model):
    s = Settings(models=(model,), **changes).checked()
    shape = (1, 8, 8) if s.arch == "cnn" else (2,)
    net = build_model(model, s, shape, 3)
    assert s.stage_starts(model) == [i for i, b in enumerate(net.blocks) if b.changes_shape]


def test_very_deep_nets_use_fewer_points():
    x = torch.randn(2048, 2)
    shallow = build_model("resnet-14", Settings(models=("resnet-14",)).checked(), (2,), 3)
    deep = build_model("resnet-302", Settings(models=("resnet-302",)).checked(), (2,), 3)
    assert lesion_points(shallow, x) == 2048
    assert lesion_points(deep, x) == 2048 * 32 // 150


def test_trained_plain_nets_collapse_where_the_residual_net_barely_moves():
    """Veit et al., Fig. 3: one deleted block barely hurts a residual net; deleting one layer pair
    of a plain net is catastrophic - of its twin (plain-56, same weights at the start) and of the
    shallower plain net that trains well (plain-20)."""
    s = get_preset("degradation").settings(steps=150, paths_every=0, eval_every=50, probe_every=50)
    trainer = LockstepTrainer(s, recorders=standard())
    trainer.run()
    trainer.call("lesion_study")
    frame = trainer.record.lesion_frame()
    assert set(frame.model) == {"plain-20", "plain-56", "resnet-56"}
    intact, rise = {}, {}
    for model, g in frame.groupby("model"):
        intact[model] = g[g.block == -1].train_error.iloc[0]
        rise[model] = g[g.block >= 0].train_error.median() - intact[model]
    assert intact["resnet-56"] < 0.15 and intact["plain-20"] < 0.25, intact
    assert rise["resnet-56"] < 0.03, rise
    assert rise["plain-56"] > max(0.08, 5 * rise["resnet-56"]), rise
    assert rise["plain-20"] > 0.3, rise


def test_cli_run_writes_paths_and_lesion_files(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--out", str(out), "--models", "plain-8,resnet-8", "--steps", "20", "--paths-every", "10",
                 "--eval-every", "10", "--dataset-arg", "n=300", "--workers", "1"])
    assert code == 0, capsys.readouterr().err
    paths = pd.read_csv(out / "paths.csv")
    assert list(paths.columns) == PATH_COLUMNS + ["path_norm"]  # the contract's columns, then Veit's estimate
    assert set(paths.model) == {"resnet-8"} and sorted(paths.step.unique()) == [0, 10, 20]
    assert np.allclose(paths.groupby("step").share.sum(), 1.0) and (paths.residual < 1e-4).all()
    lesion = pd.read_csv(out / "lesion.csv")
    assert list(lesion.columns) == LESION_COLUMNS
    assert lesion.groupby("model").block.apply(list).to_dict() == {"plain-8": [-1, 0, 1, 2], "resnet-8": [-1, 0, 1, 2]}


def test_worker_processes_run_both_analyses_on_request():
    s = Settings(models=("plain-8", "resnet-8"), steps=10, paths_every=5, eval_every=5, dataset_args={"n": 300})
    with ParallelTrainer(s, workers=2) as trainer:
        trainer.run()
        trainer.call("lesion_study")
        paths, lesion = trainer.record.paths_frame(), trainer.record.lesion_frame()
    assert set(paths.model) == {"resnet-8"} and sorted(paths.step.unique()) == [0, 5, 10]
    assert sorted(lesion.model.unique()) == ["plain-8", "resnet-8"] and len(lesion) == 8


def _one_at_a_time(net, x, y):
    """The straightforward study: each deletion through the whole net on its own."""
    from resnet_core.analysis.paths.adjoints import frozen_batch_norm
    from resnet_core.nets.models import lesionable
    with frozen_batch_norm(net, x), torch.no_grad():
        errors = [float((net(x).argmax(1) != y).float().mean())]
        for block in net.blocks:
            if not lesionable(block):
                errors.append(math.nan)
                continue
            block.removed = True
            try:
                errors.append(float((net(x).argmax(1) != y).float().mean()))
            finally:
                block.removed = False
    return errors


@pytest.mark.parametrize("model,changes,stack_bytes", [
    ("resnet-42-pre", {}, 4 * 2**10), ("plain-14", {"stages": 3}, 2**10), ("resnet-14", {"stages": 3}, 3 * 2**10),
    ("resnet-20", {"arch": "cnn", "dataset": "digits"}, 2**20)])
def test_deletions_stacked_along_the_batch_match_one_at_a_time(spirals, monkeypatch, model, changes, stack_bytes):
    """Several deletions at once (a few per stack here, so that stacks begin, grow and end mid-net)
    give what deleting each block alone and running the whole net gives."""
    from resnet_core.analysis.paths import lesion
    s = Settings(models=(model,), **changes).checked()
    if s.arch == "cnn":
        x, y = torch.randn(40, 1, 8, 8), torch.randint(0, 10, (40,))
        net = build_model(model, s, (1, 8, 8), 10)
    else:
        x, y = spirals.x_train[:64], spirals.y_train[:64]
        net = build_model(model, s, spirals.input_shape, spirals.n_classes)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    for _ in range(5):  # a few steps, so BN's scales and the branches are no longer their initial ones
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    monkeypatch.setattr(lesion, "STACK_BYTES", stack_bytes)
    got, want = lesion_errors(net, x, y), _one_at_a_time(net, x, y)
    assert len(got) == len(want) == len(net.blocks) + 1
    # BN is frozen, so a point's result does not depend on what else is in its batch: equal to the
    # last bit here (a matmul kernel chosen by batch size could in principle round differently)
    assert np.array_equal(got, want, equal_nan=True), (got, want)
