"""Residual nets without normalisation: SkipInit, Fixup and depth-μP's branch scale (issue 21, part 1).

Every option builds with every block layout, shortcut, MLP and CNN; its parameters are what the size
formula counts; a net with it trains through the trainer's path with the same numbers as plain
autograd (the written-out passes recognise only bare blocks and hand anything else to ``Net``); the
path analysis stays exact; and the science: each block starts as the identity under SkipInit and
Fixup, and He init without normalisation doubles the stream's variance at every block."""
from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from resnet_core.analysis.paths.compute import path_gradients
from resnet_core.nets import mlp_stack
from resnet_core.nets.mlp_stacked import stackable
from resnet_core.nets.models import build_model, parameter_count
from resnet_core.settings import Settings, SettingsError
from resnet_core.sizing import layout as size

OPTIONS = [("skipinit", "1"), ("fixup", "1"), ("he", "invsqrt"), ("skipinit", "invsqrt"), ("fixup", "invsqrt")]


def every_kind():
    for (init, scale), arch, block, shortcut in itertools.product(OPTIONS, ("mlp", "cnn"), ("post", "pre"),
                                                                  ("identity", "projection", "pad")):
        yield pytest.param(init, scale, arch, block, shortcut, id=f"{init}-{scale}-{arch}-{block}-{shortcut}")


def settings_for(init: str, scale: str, arch: str, block: str, shortcut: str, **extra) -> Settings:
    norm = "none" if init == "fixup" else "batch"
    return Settings(arch=arch, init=init, branch_scale=scale, block=block, shortcut=shortcut, norm=norm, width=6,
                    stages=2 if arch == "mlp" else 1, models=("resnet-20",), **extra).checked()


SHAPES = {"mlp": (2,), "cnn": (1, 8, 8)}


@pytest.mark.parametrize("init,scale,arch,block,shortcut", list(every_kind()))
def test_every_option_builds_trains_and_is_counted_for_every_block_kind(init, scale, arch, block, shortcut):
    s = settings_for(init, scale, arch, block, shortcut)
    shape = SHAPES[arch]
    depth = s.valid_depths()[1]
    torch.manual_seed(1)
    x, y = torch.randn(16, *shape), torch.randint(0, 3, (16,))
    for family in ("plain", "resnet"):
        name = f"{family}-{depth}"
        net = build_model(name, s, shape, 3)
        assert size.parameter_count(name, s, shape, 3) == parameter_count(net), name
        # The trainer's path (mlp_stack.forward) against Net and autograd: same loss, same gradients.
        reference, engine = net, copy.deepcopy(net)
        losses = [F.cross_entropy(fn(m, x), y) for m, fn in ((reference, lambda n, v: n(v)), (engine, mlp_stack.forward))]
        for loss in losses:
            loss.backward()
        assert torch.equal(losses[0], losses[1]) and torch.isfinite(losses[0])
        for (where, a), (_, b) in zip(reference.named_parameters(), engine.named_parameters()):
            assert torch.equal(a.grad, b.grad), where
        if family == "resnet":
            assert not mlp_stack.supported(net) and not stackable(net), "a block the fast paths do not know"


def test_the_fast_paths_still_take_the_blocks_they_know():
    for init in ("he", "zero", "default"):
        net = build_model("resnet-20", Settings(models=("resnet-20",), init=init).checked(), (2,), 3)
        assert mlp_stack.supported(net) and stackable(net)
    plain = build_model("plain-20", Settings(models=("plain-20", "resnet-20"), init="skipinit").checked(), (2,), 3)
    assert mlp_stack.supported(plain), "a plain net has no branch: SkipInit leaves it as He init makes it"


@pytest.mark.parametrize("init,scale,block,norm,shortcut", [
    ("skipinit", "1", "post", "batch", "identity"), ("skipinit", "invsqrt", "pre", "none", "pad"),
    ("fixup", "1", "post", "none", "projection"), ("fixup", "invsqrt", "pre", "none", "identity"),
    ("he", "invsqrt", "post", "batch", "identity")])
def test_the_path_decomposition_stays_exact_with_the_branch_scalars(spirals, init, scale, block, norm, shortcut):
    s = Settings(models=("resnet-20",), stages=2, init=init, branch_scale=scale, block=block, norm=norm,
                 shortcut=shortcut).checked()
    x, y = spirals.x_train[:128], spirals.y_train[:128]
    net = build_model("resnet-20", s, spirals.input_shape, spirals.n_classes)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(5):  # SkipInit's α moves away from 0, so the branches count
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    result = path_gradients(net, x, y, tol=0, keep_terms=True)
    assert result.cutoff == len(net.blocks) and result.residual < 1e-5, result.residual
    assert float(result.terms[1:].norm()) > 0, "paths through the branches carry gradient"


def stream_variances(net, x) -> np.ndarray:
    with torch.no_grad():
        h = net.features(x)
        out = [float(h.var())]
        for block in net.blocks:
            h = block(h)
            out.append(float(h.var()))
    return np.array(out)


@pytest.mark.parametrize("seed", [3, 11])
@pytest.mark.parametrize("init,block", [("skipinit", "post"), ("skipinit", "pre"), ("fixup", "post"), ("fixup", "pre")])
def test_skipinit_and_fixup_make_every_block_the_identity_at_step_0(init, block, seed):
    s = Settings(models=("resnet-56",), init=init, block=block, norm="none", seed=seed, width=64).checked()
    net = build_model("resnet-56", s, (2,), 3)
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        h = net.features(x)
        for block_ in net.blocks:
            assert torch.equal(block_(h), h)
            h = block_(h)
    variances = stream_variances(net, x)
    assert np.allclose(variances, variances[0]), "the stream's variance is flat across the blocks"


@pytest.mark.parametrize("seed", [2, 7])
def test_he_init_without_normalisation_doubles_the_streams_variance_at_every_block(seed):
    """Var(x + F(x)) = 2 Var(x) when He init keeps Var(F(x)) = Var(x) (Zhang et al. 2019; De & Smith 2020)."""
    s = Settings(models=("resnet-22",), norm="none", width=256, block="pre", seed=seed).checked()
    net = build_model("resnet-22", s, (2,), 3)
    x = torch.randn(1024, 2, generator=torch.Generator().manual_seed(seed))
    v = stream_variances(net, x)
    growth = v[1:] / v[:-1]
    assert 1.7 < float(np.exp(np.log(growth).mean())) < 2.3, growth
    assert v[-1] / v[0] > 2 ** 7, "ten blocks: three decades"
    calm = stream_variances(build_model("resnet-22", s.with_changes(branch_scale="invsqrt"), (2,), 3), x)
    assert calm[-1] / calm[0] < 4, "1/√L keeps it bounded: (1 + 1/L)^L < e"


def test_options_are_refused_with_one_line_where_they_do_not_apply():
    with pytest.raises(SettingsError, match="Fixup replaces BatchNorm"):
        Settings(models=("resnet-20",), init="fixup").checked()
    with pytest.raises(SettingsError, match="Fixup replaces BatchNorm"):
        Settings(models=("resnet-20-bn-fixup",), norm="none").checked()
    with pytest.raises(SettingsError, match="plain net has no residual branch"):
        Settings(models=("plain-20-skipinit", "resnet-20")).checked()
    with pytest.raises(SettingsError, match="no model here has one"):
        Settings(models=("plain-20",), init="skipinit").checked()
    with pytest.raises(SettingsError, match="no model here has one"):
        Settings(models=("plain-20",), branch_scale="invsqrt").checked()
    with pytest.raises(SettingsError, match="branch_scale must be one of"):
        Settings(models=("resnet-20",), branch_scale="2").checked()


def test_a_models_init_suffix_sets_its_own_initialisation():
    s = Settings(models=("resnet-20-nobn", "resnet-20-nobn-skipinit", "resnet-20-nobn-fixup")).checked()
    he, skip, fixup = (build_model(m, s, (2,), 3) for m in s.models)
    assert he.blocks[0].gain is None and skip.blocks[0].gain.item() == 0.0 and fixup.blocks[0].gain.item() == 1.0
    assert float(fixup.head.weight_layer.weight.detach().abs().sum()) == 0.0
    assert [spec.name for spec in s.model_specs] == list(s.models)
