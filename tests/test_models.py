"""Models: depth as the paper counts it, plain twins, block layouts, shortcuts, init, and the
gradient facts at initialisation that the app's lessons rest on (science.md)."""
import pytest
import torch
import torch.nn.functional as F

from resnet_core.nets.models import PadShortcut, build_model, parameter_count
from resnet_core.settings import Settings, SettingsError


def mlp(**kw) -> Settings:
    return Settings(**kw).checked()


@pytest.mark.parametrize("name", ["plain-8", "resnet-20", "resnet-56"])
def test_mlp_depth_counts_every_weighted_layer(name):
    net = build_model(name, mlp(), (2,), 3)
    depth = int(name.split("-")[1])
    weighted = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(net.units()) == depth == len(weighted) == len(net.layer_names())
    assert len(net.blocks) == (depth - 2) // 2


def test_cifar_cnn_matches_the_paper():
    s = Settings(arch="cnn", width=16, shortcut="pad", models=("resnet-20",)).checked()
    net = build_model("resnet-20", s, (3, 32, 32), 10)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19 and len(net.units()) == 20
    assert {c.out_channels for c in convs} == {16, 32, 64}
    assert sorted(c.stride[0] for c in convs if c.stride[0] == 2) == [2, 2]  # two stage changes
    assert 0.26e6 < parameter_count(net) < 0.28e6  # the paper's ResNet-20 has 0.27M parameters
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("arch,shape,shortcut", [("mlp", (2,), "identity"), ("cnn", (1, 8, 8), "pad")])
def test_plain_twin_has_the_same_parameters_and_initial_weights(arch, shape, shortcut):
    s = Settings(arch=arch, width=16, shortcut=shortcut, models=("plain-20", "resnet-20")).checked()
    plain, res = (build_model(n, s, shape, 10) for n in s.models)
    assert parameter_count(plain) == parameter_count(res)
    for a, b in zip(plain.state_dict().values(), res.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.randn(8, *shape)
    assert not torch.allclose(plain(x), res(x))  # the shortcuts are the only difference, and they matter


def test_projection_shortcuts_add_parameters_only_where_asked():
    base = dict(arch="cnn", width=16, models=("resnet-20",))
    counts = {sc: parameter_count(build_model("resnet-20", Settings(**base, shortcut=sc).checked(), (3, 8, 8), 10))
              for sc in ("pad", "identity", "projection")}
    assert counts["pad"] < counts["identity"] < counts["projection"]
    net = build_model("resnet-20", Settings(**base, shortcut="pad").checked(), (3, 8, 8), 10)
    pads = [b.shortcut for b in net.blocks if b.shortcut is not None]
    assert len(pads) == 2 and all(isinstance(p, PadShortcut) for p in pads)


def test_mlp_stages_change_width_with_pad_shortcuts():
    s = Settings(stages=2, width=8, shortcut="pad", models=("resnet-10",)).checked()
    net = build_model("resnet-10", s, (2,), 3)
    assert [b.units[-1].weight_layer.out_features for b in net.blocks] == [8, 8, 16, 16]
    assert sum(b.changes_shape for b in net.blocks) == 1
    assert net(torch.randn(4, 2)).shape == (4, 3)


def test_pre_activation_block_has_nothing_after_the_addition():
    s = Settings(block="pre", models=("resnet-8",)).checked()
    net = build_model("resnet-8", s, (2,), 3).eval()
    block = net.blocks[0]
    x = torch.randn(16, 32)
    assert torch.allclose(block(x), x + block.branch(x))  # y = x + F(x), can be negative
    post = build_model("resnet-8", Settings(models=("resnet-8",)).checked(), (2,), 3).eval().blocks[0]
    assert (post(x) >= 0).all()  # original block: ReLU after the addition


def test_zero_init_makes_each_block_the_identity():
    s = Settings(init="zero", models=("resnet-20",)).checked()
    net = build_model("resnet-20", s, (2,), 3)
    x = torch.relu(torch.randn(64, 32))
    for block in net.blocks:
        assert torch.allclose(block(x), x)


def test_a_thousand_layers_build_and_train_one_step():
    s = Settings(block="pre", models=("resnet-1002",)).checked()
    net = build_model("resnet-1002", s, (2,), 3)
    assert len(net.units()) == 1002 and len(net.blocks) == 500
    loss = F.cross_entropy(net(torch.randn(32, 2)), torch.randint(0, 3, (32,)))
    loss.backward()
    grads = [u.weight_layer.weight.grad.norm() for u in net.units()]
    assert torch.isfinite(loss) and all(torch.isfinite(g) and g > 0 for g in grads)


@pytest.mark.parametrize("depth", [7, 0, -2, 5000])
def test_invalid_depth_names_the_nearest_valid_ones(depth):
    with pytest.raises(SettingsError) as err:
        Settings(models=(f"plain-{depth}",)).checked()
    message = str(err.value)
    if depth == 7:
        assert "6 or 8" in message
    elif depth == 5000:
        assert "too deep" in message
    else:
        assert "plain-D" in message or "try" in message


def _first_and_last_hidden_grad(settings: Settings, name: str) -> tuple[float, float]:
    torch.manual_seed(0)
    net = build_model(name, settings, (2,), 3)
    x, y = torch.randn(256, 2), torch.randint(0, 3, (256,))
    F.cross_entropy(net(x), y).backward()
    norms = [u.weight_layer.weight.grad.norm().item() for u in net.units()[1:-1]]
    return norms[0], norms[-1]


def test_at_init_plain_bn_gradients_grow_toward_the_input():
    first, last = _first_and_last_hidden_grad(Settings(models=("plain-66",)).checked(), "plain-66")
    assert first > 100 * last  # Yang et al. 2019: BN makes plain gradients explode backwards


def test_at_init_plain_without_bn_default_init_gradients_vanish():
    s = Settings(norm="none", init="default", models=("plain-66",)).checked()
    first, last = _first_and_last_hidden_grad(s, "plain-66")
    assert first < 1e-6 * last


@pytest.mark.parametrize("norm,init", [("batch", "he"), ("none", "default")])
def test_at_init_residual_gradients_stay_within_a_few_orders(norm, init):
    s = Settings(norm=norm, init=init, models=("resnet-66",)).checked()
    first, last = _first_and_last_hidden_grad(s, "resnet-66")
    assert 1e-3 < first / last < 1e3


# ---- the size of a net, counted without building it (resnet_core.sizing.layout) -----------------------
def _combinations():
    for arch, shape in (("mlp", (2,)), ("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("cnn", (3, 9, 9))):
        for stages in ((1, 2, 3, 4) if arch == "mlp" else (3,)):
            for shortcut in ("identity", "projection", "pad"):
                for branch_layers in (1, 2, 3):
                    for block in ("post", "pre"):
                        for norm in ("batch", "none"):
                            yield arch, shape, stages, shortcut, branch_layers, block, norm


@pytest.mark.parametrize("arch,shape,stages,shortcut,branch_layers,block,norm", list(_combinations()))
def test_the_size_formula_counts_the_parameters_of_the_built_net(arch, shape, stages, shortcut, branch_layers,
                                                                 block, norm):
    from resnet_core.sizing import layout as size

    s = Settings(arch=arch, stages=stages if arch == "mlp" else 1, shortcut=shortcut, branch_layers=branch_layers,
                 block=block, norm=norm, width=6, models=("plain-4",))
    depth = s.valid_depths()[1]  # the second valid depth: at least one block per stage, some with two
    for family in ("plain", "resnet"):
        name = f"{family}-{depth}"
        net = build_model(name, s.with_changes(models=(name,)), shape, 5)
        assert size.parameter_count(name, s, shape, 5) == parameter_count(net), name
        layers = [layer for layer in size.layout(name, s, shape, 5) if not layer.shortcut]
        assert [layer.outputs for layer in layers] == _response_sizes(net, shape), name


def _response_sizes(net, shape) -> list[int]:
    """Values each weighted layer of the built net puts out for one example."""
    from resnet_core.nets.models import Probe

    probe = Probe()
    net.eval()
    with torch.no_grad():
        net(torch.randn(1, *shape), probe)
    return [r.numel() for r in probe.responses]


def test_the_size_formula_matches_the_issue_example():
    """resnet-74, width 32, 4 stages: 1,585,795 weights (the old estimate said 75,776)."""
    from resnet_core.sizing import layout as size

    s = Settings(width=32, stages=4, models=("resnet-74",)).checked()
    net = build_model("resnet-74", s, (2,), 3)
    assert parameter_count(net) == size.parameter_count("resnet-74", s, (2,), 3) == 1_585_795


@pytest.mark.parametrize("arch,shape", [("mlp", (2,)), ("cnn", (1, 8, 8))])
def test_train_and_eval_switch_every_module_as_torch_does(arch, shape):
    s = Settings(arch=arch, width=8, models=("resnet-20",)).checked()
    net = build_model("resnet-20", s, shape, 3)
    x = torch.randn(4, *shape)
    for mode in (False, True, False):
        net.train(mode)
        assert all(m.training is mode for m in net.modules())
        torch.nn.Module.train(net, not mode)  # torch's own walk agrees with it afterwards
        assert all(m.training is (not mode) for m in net.modules())
    net.eval()
    before = [bn.running_mean.clone() for bn in net.modules() if isinstance(bn, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d)]
    net(x)  # in eval mode BN uses and keeps its running statistics
    after = [bn.running_mean for bn in net.modules() if isinstance(bn, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d)]
    assert before and all(torch.equal(a, b) for a, b in zip(before, after))
    with pytest.raises(ValueError):
        net.train("yes")
