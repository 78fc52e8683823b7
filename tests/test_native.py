"""The native walk of an MLP's block stack outside training (``mlp_stack.blocks``/``infer``, which
evaluations, decision maps and the lesion study use): the modules' numbers, bit for bit, in eval
mode and in the training mode of an evaluation with batch statistics; the modules where it does
not apply. (The training pass is tests/test_mlp_stack.py's.)"""
import copy

import pytest
import torch

from resnet_core.analysis.paths import lesion
from resnet_core.nets import mlp_stack, native
from resnet_core.nets.models import build_model
from resnet_core.settings import Settings
from resnet_core.training.probes import evaluate

KINDS = [("resnet-14", "pre", "batch"), ("resnet-14", "post", "batch"), ("plain-14", "post", "batch"),
         ("resnet-14", "pre", "none"), ("plain-14", "pre", "none"), ("resnet-20", "post", "none")]


def net_of(name: str, block: str, norm: str, **kw):
    settings = Settings(dataset="spirals", models=(name,), block=block, norm=norm, width=8, **kw).checked()
    torch.manual_seed(1)
    net = build_model(name, settings, (2,), 3)
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)):  # statistics other than 0 and 1
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return net


@pytest.mark.parametrize(("name", "block", "norm"), KINDS)
def test_infer_is_the_modules_forward_bit_for_bit(name, block, norm):
    assert native.load()
    net, twin = net_of(name, block, norm), None
    twin = copy.deepcopy(net)
    x = torch.randn(300, 2) * 2
    with torch.no_grad():
        for mode in (False, True):  # eval mode; training mode with momentum 0, as an evaluation
            net.train(mode)
            twin.train(mode)
            for m in (*net.modules(), *twin.modules()):
                if isinstance(m, torch.nn.BatchNorm1d):
                    m.momentum = 0.0
            got, want = mlp_stack.infer(net, x), twin(x)
            assert torch.equal(got, want), (mode, (got - want).abs().max())
            for a, b in zip(net.buffers(), twin.buffers()):  # running statistics, BN's call counters
                assert torch.equal(a, b)
    assert net._mlp_stack[2] is not None, "the native walk was not used"


def test_blocks_walks_any_range_and_leaves_a_lesion_to_the_modules():
    net = net_of("resnet-20", "pre", "batch")
    net.eval()
    x = torch.randn(64, 2)
    with torch.no_grad():
        h = net.features(x)
        by_module = [h]
        for block in net.blocks:
            by_module.append(block(by_module[-1]))
        assert torch.equal(mlp_stack.blocks(net, by_module[2], 2, 7), by_module[7])
        net.blocks[3].removed = True
        want = h
        for block in net.blocks:
            want = block(want)
        assert torch.equal(mlp_stack.blocks(net, h), want)  # through the modules, which know about it
        net.blocks[3].removed = False
    with torch.enable_grad():  # under autograd the modules run, so that gradients flow
        out = mlp_stack.blocks(net, h.requires_grad_())
        assert out.grad_fn is not None


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_evaluations_and_the_lesion_study_give_the_same_numbers_without_it(monkeypatch, norm):
    net = net_of("resnet-20", "pre", norm)
    x, y = torch.randn(400, 2), torch.randint(0, 3, (400,))
    monkeypatch.setattr(lesion, "STACK_BYTES", 400 * 8 * 4 * 3)  # three deletions a part
    results = []
    for walk in ("native", "modules"):
        monkeypatch.setattr(mlp_stack, "NATIVE", walk == "native")
        net.__dict__.pop("_mlp_stack", None)
        results.append((evaluate(net, x, y), evaluate(net, x, y, batch_stats=True), lesion.lesion_errors(net, x, y)))
        assert (net._mlp_stack[2] is not None) == (walk == "native")
    assert results[0] == results[1]


@pytest.mark.parametrize(("name", "block", "norm"), KINDS[:3])
def test_a_calibration_averages_as_the_modules_do(name, block, norm):
    """BN without a momentum (a calibration: the average over the batches so far): the native walk
    takes the same factor, 1 / the count of calls, and counts the calls."""
    from resnet_core.training.probes import calibrate_batch_norm

    net = net_of(name, block, norm)
    twin = copy.deepcopy(net)
    x = torch.randn(1000, 2)
    calibrate_batch_norm(net, x)
    with torch.no_grad():  # the modules' own calibration, by hand
        norms = [m for m in twin.modules() if isinstance(m, torch.nn.BatchNorm1d)]
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None
        twin.train()
        for start in range(0, len(x), 256):
            twin(x[start:start + 256])
        for bn in norms:
            bn.momentum = 0.1
    for (where, a), (_, b) in zip(net.named_buffers(), twin.named_buffers()):
        assert torch.equal(a, b), where
    assert int(norms[-1].num_batches_tracked) == 4 and net._mlp_stack[2] is not None
