"""The training pass of an MLP's block stack, written out: the same kernels autograd would call,
without its per-operation bookkeeping.

These nets are dispatch-bound: a 1002-layer MLP of width 32 is 500 blocks of seven tiny operations,
and every ``nn.Module`` call, BatchNorm's Python wrapper and autograd node costs more than the
arithmetic (resnet-1002, one thread: forward and backward took 85-110 ms through the modules and
autograd, 50-57 ms written out). Here the block stack is one ``autograd.Function``: its forward
walks a flat plan of the blocks calling the ATen kernels directly and keeps what the backward needs;
its backward walks the plan in reverse calling the very kernels autograd's derivative formulas call
(``native_batch_norm_backward``, ``threshold_backward``, the two ``mm``s of a linear layer in the
layouts autograd picks), and writes the weights' gradients into their ``.grad``. Stem, head and loss
stay with autograd. The result is bit for bit what ``Net.forward`` and ``loss.backward()`` give
(tests/test_mlp_stack.py checks every block kind, BatchNorm on and off), so a run is the same run
whichever way it trained.

Only the training pass of an MLP in training mode, on the CPU, goes this way; evaluation, the path
analysis and the lesion study use ``Net`` itself. ``RESIDUAL_LAB_ENGINE=autograd`` turns it off.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.nets.models import Block, Net, Probe, Unit

_bn = torch.native_batch_norm
_bn_backward = torch.ops.aten.native_batch_norm_backward.default
_threshold_backward = torch.ops.aten.threshold_backward.default
_linear = torch._C._nn.linear
_MASK = [True, True, True]


class _Layer(NamedTuple):
    """One linear layer (bias where there is no BN) and the BN after it (post) or before it (pre),
    as bare tensors: a module's attribute look-up costs more than some of these kernels."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    norm: tuple | None  # (weight, bias, running_mean, running_var, momentum, eps)


class _Block(NamedTuple):
    layers: tuple[_Layer, ...]
    pre: bool
    residual: bool
    shortcut: _Layer | None  # a projection (its BN, if any, after it); None: the identity


def _layer(linear: nn.Linear, bn: nn.BatchNorm1d | None) -> _Layer:
    norm = None if bn is None else (bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps)
    return _Layer(linear.weight, linear.bias, norm)


def _plan(net: Net) -> tuple[_Block, ...]:
    """The net's blocks as bare tensors. BN's momentum is read here: evaluation and calibration
    change it for a while, but only through the modules, never during a training pass."""
    blocks = []
    for block in net.blocks:
        shortcut = None
        if block.shortcut is not None:
            proj, *rest = block.shortcut if isinstance(block.shortcut, nn.Sequential) else [block.shortcut]
            shortcut = _layer(proj, rest[0] if rest else None)
        layers = tuple(_layer(u.weight_layer, u.norm) for u in block.units)
        blocks.append(_Block(layers, block.pre, block.residual, shortcut))
    return tuple(blocks)


ENABLED = os.environ.get("RESIDUAL_LAB_ENGINE", "") != "autograd"


def supported(net: Net) -> bool:
    """An MLP whose blocks are all linear layers with 1D BN or none (what ``build_model`` makes for
    ``arch="mlp"``), on the CPU: there a step is dispatch-bound, and autograd's BN is this kernel
    (on a GPU it is cuDNN's, and launches are asynchronous anyway)."""
    if net.head.weight_layer.weight.device.type != "cpu":
        return False
    def linear_unit(u: Unit) -> bool:
        return isinstance(u.weight_layer, nn.Linear) and (u.norm is None or isinstance(u.norm, nn.BatchNorm1d))

    def linear_shortcut(b: Block) -> bool:
        s = b.shortcut
        return s is None or isinstance(s, nn.Linear) or (
            isinstance(s, nn.Sequential) and len(s) == 2 and isinstance(s[0], nn.Linear) and isinstance(s[1], nn.BatchNorm1d))

    return all(linear_shortcut(b) and all(linear_unit(u) for u in b.units) for b in net.blocks)


# ---------------------------------------------------------------------------------- forward
def _forward(plan: tuple[_Block, ...], x: torch.Tensor, probe: Probe | None, saved: list) -> torch.Tensor:
    """The stack's output; ``saved`` gets, in order, what the backward pops: each linear layer's
    input, each BN's (input, mean, invstd), each ReLU's result."""
    keep, relu = saved.append, torch.relu

    def norm(h: torch.Tensor, n: tuple) -> torch.Tensor:
        # What BatchNorm1d.forward asks of the kernel in training mode (its num_batches_tracked is
        # counted once a step for all the net's BNs, in ``forward``).
        out, mean, invstd = _bn(h, n[0], n[1], n[2], n[3], True, n[4], n[5])
        keep((h, mean, invstd))
        return out

    for layers, pre, residual, shortcut in plan:
        h = x
        last = len(layers) - 1
        for j, (weight, bias, n) in enumerate(layers):
            if pre:
                h = relu(h if n is None else norm(h, n))
                keep(h)  # the ReLU's result is the linear layer's input
                h = _linear(h, weight, bias)
            else:
                keep(h)
                h = _linear(h, weight, bias)
                if n is not None:
                    h = norm(h, n)
            if probe is not None:
                probe.responses.append(h)
            if not pre and j < last:
                h = relu(h)
                keep(h)
        if residual:
            s = x
            if shortcut is not None:
                keep(x)
                s = _linear(x, shortcut.weight, shortcut.bias)
                if shortcut.norm is not None:
                    s = norm(s, shortcut.norm)
            if probe is not None:
                probe.branches.append(h)
                probe.skips.append(s)
            h = s + h
        if not pre:
            h = relu(h)
            keep(h)
        x = h
    return x


# --------------------------------------------------------------------------------- backward
def _backward(plan: tuple[_Block, ...], g: torch.Tensor, saved: list, grads: list) -> torch.Tensor:
    """The gradient at the stack's input; ``grads`` gets (parameter, gradient) pairs."""
    take, give = saved.pop, grads.append

    def norm(g: torch.Tensor, n: tuple) -> torch.Tensor:
        h, mean, invstd = take()
        g, g_weight, g_bias = _bn_backward(g, h, n[0], n[2], n[3], mean, invstd, True, n[5], _MASK)
        give((n[0], g_weight))
        give((n[1], g_bias))
        return g

    def linear(g: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        # autograd's mm derivatives for x @ weight.t(): the input's grad as g @ weight, the weight's
        # computed in weight.t()'s column-major layout, (g.t() @ x); the bias's summed to its shape.
        give((weight, g.t().mm(x)))
        if bias is not None:
            give((bias, g.sum_to_size(bias.shape)))
        return g.mm(weight)

    for layers, pre, residual, shortcut in reversed(plan):
        if not pre:
            g = _threshold_backward(g, take(), 0)
        g_skip = None
        if residual:
            g_skip = g
            if shortcut is not None:
                if shortcut.norm is not None:
                    g_skip = norm(g_skip, shortcut.norm)
                g_skip = linear(g_skip, shortcut.weight, shortcut.bias, take())
        last = len(layers) - 1
        for j in range(last, -1, -1):
            weight, bias, n = layers[j]
            if pre:
                r = take()  # the ReLU's result, the linear layer's input
                g = _threshold_backward(linear(g, weight, bias, r), r, 0)
                if n is not None:
                    g = norm(g, n)
            else:
                if j < last:
                    g = _threshold_backward(g, take(), 0)
                if n is not None:
                    g = norm(g, n)
                g = linear(g, weight, bias, take())
        g = g if g_skip is None else g + g_skip
    return g


class _Stack(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, plan: list[_Block], probe: Probe | None) -> torch.Tensor:  # type: ignore[override]
        saved: list = []
        out = _forward(plan, x, probe, saved)
        ctx.plan, ctx.saved = plan, saved
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        saved, ctx.saved, grads = ctx.saved, None, []
        g = _backward(ctx.plan, g, saved, grads)
        for param, grad in grads:  # the parameters are not the Function's inputs: no AccumulateGrad
            if param.grad is None:
                param.grad = grad
            else:
                param.grad += grad
        return g, None, None


def forward(net: Net, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
    """``net(x, probe)`` for a training step, with the block stack's backward written out (see the
    module's docstring); ``net`` itself where the engine does not apply: not an MLP, not in
    training mode, a block removed (a lesion), or the engine switched off."""
    engine = getattr(net, "_mlp_stack", None)
    if engine is None:
        tracked = [m.num_batches_tracked for b in net.blocks for m in b.modules() if isinstance(m, nn.BatchNorm1d)]
        engine = net._mlp_stack = (_plan(net), tracked) if ENABLED and supported(net) else ()
    if not engine or not net.training or any(b.removed for b in net.blocks):
        return net(x, probe)
    plan, tracked = engine
    h = net.stem(x)
    if probe is not None:
        probe.responses.append(h)
    if not net.pre:
        h = F.relu(h)
    if tracked:
        torch._foreach_add_(tracked, 1)
    h = _Stack.apply(h, plan, probe)
    out = net.head(h)
    if probe is not None:
        probe.responses.append(out)
    return out
