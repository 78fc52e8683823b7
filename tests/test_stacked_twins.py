"""A plain net and its residual twin stacked as one (``StackedMLP``; the walk adds a block's shortcut for
the members that have one) give each member exactly what its own written-out pass gives (which
tests/test_mlp_stack.py checks against autograd): every gradient, BN statistic and probe, bit for bit
down to the sign of a zero, on every MLP block kind whose shortcut is the identity; and a member that
overflows keeps its inf and NaN to itself."""
import copy
import itertools

import pytest
import torch
import torch.nn.functional as F

from resnet_core.nets import mlp_stack
from resnet_core.nets.mlp_stacked import StackedMLP
from resnet_core.nets.models import Probe, build_model
from resnet_core.settings import Settings, SettingsError
from resnet_core.training.probes import evaluate


def bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The same bits (so -0.0 is not 0.0), NaN where the other has NaN (whatever its payload)."""
    if a.shape != b.shape:
        return False
    nan = a.isnan()
    return bool((nan == b.isnan()).all()) and torch.equal(a[~nan].view(torch.int32), b[~nan].view(torch.int32))


def kinds():
    for block, norm, layers in itertools.product(("post", "pre"), ("batch", "none"), (1, 2, 3)):
        settings = Settings(dataset="spirals", models=("plain-14", "resnet-14"), block=block, norm=norm,
                            branch_layers=layers)
        try:
            settings.checked()
        except SettingsError:
            continue  # 14 layers is not 2 + a multiple of this branch length
        yield pytest.param(settings, id=f"{block}-{norm}-b{layers}")


def solo_pass(net, x, y) -> tuple[torch.Tensor, Probe]:
    probe = Probe()
    loss = F.cross_entropy(mlp_stack.forward(net, x, probe), y)
    loss.backward()
    return loss.detach(), probe


def check_members(nets, solo, x, y, steps: int = 3) -> list[torch.Tensor]:
    """``nets`` trained stacked and ``solo`` (their deep copies) each alone, ``steps`` plain SGD steps,
    everything compared after each; the stacked losses of every step."""
    stack = StackedMLP(nets)
    losses_seen = []
    for _ in range(steps):
        probe = Probe()
        for p in stack.parameters:
            p.grad = None
        losses = stack.losses(x.expand(len(nets), -1, -1), y.expand(len(nets), -1), probe)
        losses.sum().backward()
        stack.hand_gradients()
        losses_seen.append(losses.detach())
        for i, (net, own, mine) in enumerate(zip(nets, solo, stack.member_probes(probe))):
            loss, theirs = solo_pass(own, x, y)
            # The step's loss is only asked whether it is finite (the divergence rule): the stacked mean
            # over (S, B) may round its last bit differently from one member's; its logits (the
            # probe's last response) and its gradients are the numbers, compared bit for bit below.
            assert torch.allclose(losses[i].detach(), loss, equal_nan=True) and bool(losses[i].isfinite() == loss.isfinite())
            for (where, a), (_, b) in zip(net.named_parameters(), own.named_parameters()):
                assert bits(a.grad, b.grad), f"member {i}: {where}.grad"
            for (where, a), (_, b) in zip(net.named_buffers(), own.named_buffers()):
                assert bits(a, b), f"member {i}: {where}"
            for kind in ("responses", "branches", "skips"):
                a, b = getattr(mine, kind), getattr(theirs, kind)
                assert len(a) == len(b) and all(bits(u, v) for u, v in zip(a, b)), f"member {i}: {kind}"
        with torch.no_grad():
            for net, own in zip(nets, solo):
                for a, b in zip(net.parameters(), own.parameters()):
                    a -= 0.05 * a.grad
                    b -= 0.05 * b.grad
                    a.grad = b.grad = None
    return losses_seen


@pytest.mark.parametrize("settings", list(kinds()))
def test_twins_stacked_get_their_own_passes_bit_for_bit(settings):
    torch.manual_seed(0)
    x, y = torch.randn(64, 2), torch.randint(0, 3, (64,))
    # the members that add the shortcut last (a stack's order: see the test below)
    nets = [build_model(name, settings.with_changes(seed=seed), (2,), 3)
            for seed, name in enumerate(("plain-14", "plain-14", "resnet-14", "resnet-14"))]
    solo = [copy.deepcopy(n) for n in nets]
    check_members(nets, solo, x, y)
    stack = StackedMLP(nets)
    assert [b.adds is not None for b in stack.blocks] == [True] * len(nets[0].blocks)
    # and each member's own net, its tensors the stack's, evaluates as its solo twin does
    for batch_stats in (False, True):
        mine, theirs = [evaluate(net, x, y, batch_stats) for net in nets], [evaluate(net, x, y, batch_stats) for net in solo]
        assert all(bits(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
                   for a, b in zip(mine, theirs))  # a net without BN may overflow: NaN in both


def test_a_plain_members_values_are_its_branchs_own_bits():
    """Where a member adds no shortcut its block's output is its branch's, bit for bit: not -0.0 + 0 * s
    (that is +0.0), nor h + 0 * inf (NaN), as a masked add would give; a residual member's is s + h."""
    h = torch.tensor([[[-0.0, 1.5, float("inf"), float("nan")]], [[-0.0, 1.5, 2.0, -3.0]]])
    s = torch.tensor([[[float("inf"), 2.0, float("-inf"), 1.0]], [[0.0, 2.0, float("inf"), 1.0]]])
    for overwrite in (False, True):
        branch = h.clone()
        out = mlp_stack.add_shortcut(branch, s, 1, overwrite)  # from member 1 on
        assert bits(out[0], h[0]) and bool(torch.signbit(out[0, 0, 0]))
        assert bits(out[1], s[1] + h[1]) and not bool(torch.signbit(out[1, 0, 0]))
        assert (out is branch) == overwrite and (overwrite or bits(branch, h))  # a probe's branch stays its own
    masked = h + torch.tensor([0.0, 1.0]).view(-1, 1, 1) * s
    assert not bits(masked[0], h[0])  # what the test guards against


def test_a_stack_holds_the_members_that_add_a_shortcut_last():
    settings = Settings(dataset="spirals", models=("plain-8", "resnet-8"))
    nets = [build_model(n, settings.with_changes(seed=s), (2,), 3) for s, n in enumerate(("resnet-8", "plain-8"))]
    with pytest.raises(ValueError, match="come after"):
        StackedMLP(nets)
    assert all(b.adds == 1 for b in StackedMLP(nets[::-1]).blocks)


def test_a_diverging_plain_member_keeps_its_inf_and_nan_to_itself():
    settings = Settings(dataset="spirals", models=("plain-8", "resnet-8"), norm="none")
    nets = [build_model(n, settings.with_changes(seed=s), (2,), 3) for s, n in enumerate(("plain-8", "resnet-8"))]
    with torch.no_grad():
        for p in nets[0].parameters():
            p.mul_(1e12)  # its activations overflow to inf, its loss and gradients to NaN
    x, y = torch.randn(64, 2), torch.randint(0, 3, (64,))
    solo = [copy.deepcopy(n) for n in nets]
    losses = check_members(nets, solo, x, y, steps=2)
    assert not torch.isfinite(losses[0][0]) and all(bool(torch.isfinite(step[1])) for step in losses)
    assert all(bool(torch.isfinite(p).all()) for p in nets[1].parameters())


def test_a_projection_shortcut_stacks_only_with_projections():
    settings = Settings(dataset="spirals", models=("plain-8", "resnet-8"), shortcut="projection")
    nets = [build_model(n, settings, (2,), 3) for n in ("plain-8", "resnet-8")]
    with pytest.raises(ValueError, match="projection"):
        StackedMLP(nets)
    pair = [build_model("resnet-8", settings.with_changes(seed=s), (2,), 3) for s in (0, 1)]
    assert all(b.adds is None and b.shortcut is not None for b in StackedMLP(pair).blocks)
