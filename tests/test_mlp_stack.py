"""The MLP block stack's written-out training pass gives what ``Net.forward`` and autograd give, bit
for bit: every gradient, every BN statistic, every probe, and so every recorded number of a run."""
import copy
import itertools

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from resnet_core.nets import mlp_stack
from resnet_core.nets.models import Probe, build_model
from resnet_core.settings import Settings, SettingsError
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.training.probes import batch_statistics, calibrate_batch_norm, evaluate, evaluation_mode
from resnet_core.analysis.recorders import standard


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit, NaN where the other has NaN (a net without BN may overflow: both must)."""
    return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


def kinds():
    for block, norm, shortcut, name, layers in itertools.product(
            ("post", "pre"), ("batch", "none"), ("identity", "projection"), ("plain-14", "resnet-14"), (1, 2, 3)):
        settings = Settings(dataset="spirals", models=(name,), block=block, norm=norm, shortcut=shortcut,
                            branch_layers=layers)
        try:
            settings.checked()
        except SettingsError:
            continue  # 14 layers is not 2 + a multiple of this branch length
        yield pytest.param(settings, name, id=f"{name}-{block}-{norm}-{shortcut}-b{layers}")


@pytest.mark.parametrize(("settings", "name"), list(kinds()))
def test_every_block_kind_trains_as_autograd_does(settings, name):
    torch.manual_seed(0)
    x, y = torch.randn(64, 2), torch.randint(0, 3, (64,))
    reference = build_model(name, settings, (2,), 3)
    engine = copy.deepcopy(reference)
    for _ in range(3):  # the second and third steps start from updated weights and BN statistics
        probes = Probe(), Probe()
        losses = [F.cross_entropy(forward(net, x, probe), y)
                  for net, probe, forward in zip((reference, engine), probes, (lambda n, x, p: n(x, p), mlp_stack.forward))]
        for loss in losses:
            loss.backward()
        assert same(*losses)
        for (where, a), (_, b) in zip(reference.named_parameters(), engine.named_parameters()):
            assert same(a.grad, b.grad), f"{where}.grad"
        for (where, a), (_, b) in zip(reference.named_buffers(), engine.named_buffers()):
            assert same(a, b), where
        for kind in ("responses", "branches", "skips"):
            a, b = getattr(probes[0], kind), getattr(probes[1], kind)
            assert len(a) == len(b) and all(same(u, v) for u, v in zip(a, b)), kind
        with torch.no_grad():
            for a, b in zip(reference.parameters(), engine.parameters()):
                a -= 0.05 * a.grad
                b -= 0.05 * b.grad
                a.grad = b.grad = None
    assert engine._mlp_stack, "the engine was not used"


@pytest.mark.parametrize(("settings", "name"), list(kinds()))
def test_every_block_kind_evaluates_and_calibrates_as_its_modules_do(settings, name):
    """Without gradients the walk serves the evaluations (BN on running statistics, or on the batch's
    with momentum 0), BN's calibration (momentum None: a cumulative average) and the decision maps:
    every output, running statistic and batch counter as the modules leave them."""
    torch.manual_seed(1)
    x, y = torch.randn(300, 2), torch.randint(0, 3, (300,))
    engine = build_model(name, settings, (2,), 3)
    modules = copy.deepcopy(engine)
    modules._mlp_stack = ()  # the engine does not apply: every pass walks the modules
    with torch.no_grad():
        for mode in (batch_statistics, evaluation_mode):
            with mode(modules), mode(engine):
                assert same(modules(x), mlp_stack.forward(engine, x)), mode.__name__
    errors = []
    for net in (modules, engine):
        calibrate_batch_norm(net, x, batch_size=64)
        errors.append((evaluate(net, x, y), evaluate(net, x, y, batch_stats=True)))
    assert errors[0] == errors[1]
    assert engine._mlp_stack, "the engine was not used"
    for (where, a), (_, b) in zip(modules.named_buffers(), engine.named_buffers()):
        assert same(a.float(), b.float()), where


def test_gradients_accumulate_into_existing_ones_as_autograd_does():
    settings = Settings(dataset="spirals", models=("resnet-8",))
    x, y = torch.randn(32, 2), torch.randint(0, 3, (32,))
    reference = build_model("resnet-8", settings, (2,), 3)
    engine = copy.deepcopy(reference)
    for _ in range(2):  # no zero_grad in between
        F.cross_entropy(reference(x), y).backward()
        F.cross_entropy(mlp_stack.forward(engine, x), y).backward()
    for a, b in zip(reference.parameters(), engine.parameters()):
        assert same(a.grad, b.grad)


def test_nets_it_does_not_cover_train_through_the_modules():
    cnn = Settings(dataset="digits", arch="cnn", models=("resnet-8",), width=4)
    net = build_model("resnet-8", cnn, (1, 8, 8), 10)
    net(torch.randn(4, 1, 8, 8))
    mlp_stack.forward(net, torch.randn(4, 1, 8, 8))
    assert net._mlp_stack == ()  # not an MLP: the modules train it
    mlp = build_model("resnet-8", Settings(dataset="spirals", models=("resnet-8",)), (2,), 3)
    mlp.blocks[1].removed = True  # a lesion in progress: the modules, which know about it
    assert same(mlp_stack.forward(mlp, torch.ones(8, 2)), mlp(torch.ones(8, 2)))


@pytest.mark.parametrize("models", [("plain-8", "plain-20", "resnet-20"), ("resnet-32-pre", "resnet-32-post")])
def test_a_run_records_the_same_numbers_with_the_engine_or_with_autograd(monkeypatch, models):
    settings = Settings(dataset="spirals", models=models, steps=40, eval_every=10, probe_every=3, paths_every=20,
                        dataset_args={"n": 600}, seed=3)
    runs = []
    for engine in ("written out", "autograd"):
        monkeypatch.setattr(mlp_stack, "ENABLED", engine != "autograd")
        trainer = LockstepTrainer(settings, recorders=standard())
        trainer.run()
        trainer.call("lesion_study")
        used = next(iter(trainer.models.values()))._mlp_stack
        assert bool(used) == (engine == "written out")
        runs.append(trainer.record)
    for record in runs[:1]:
        autograd = runs[1]
        pd.testing.assert_frame_equal(record.metrics_frame().drop(columns="wall_s"),
                                      autograd.metrics_frame().drop(columns="wall_s"))
        pd.testing.assert_frame_equal(record.layers_frame(), autograd.layers_frame())
        pd.testing.assert_frame_equal(record.paths_frame(), autograd.paths_frame())
        pd.testing.assert_frame_equal(record.lesion_frame(), autograd.lesion_frame())
