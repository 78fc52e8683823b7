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

An MLP's training pass on the CPU goes this way, and so do its passes without gradients (the
evaluations, BN's calibration, the decision maps); the path analysis, the lesion study and the
analyses that read each block use ``Net`` itself. ``RESIDUAL_LAB_ENGINE=autograd`` turns it off.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from resnet_core import config
from resnet_core.nets.models import Net, Probe, Unit

_bn = torch.native_batch_norm
_bn_backward = torch.ops.aten.native_batch_norm_backward.default
_threshold_backward = torch.ops.aten.threshold_backward.default
_linear = torch._C._nn.linear
_MASK = [True, True, True]


class NormPlan(NamedTuple):
    """A BatchNorm1d as bare tensors (a module's attribute look-up costs more than some kernels)."""

    weight: torch.Tensor
    bias: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor
    eps: float
    module: nn.BatchNorm1d

    @property
    def training(self) -> bool:
        """The module's mode, read at each use (an evaluation sets it for a while)."""
        return self.module.training

    @property
    def momentum(self) -> float:
        """The running statistics' update factor, as ``BatchNorm1d.forward`` computes it: its
        momentum, read at each use (an evaluation or a calibration sets it for a while, and the plan
        may be made during one); where that is None (a calibration's cumulative average), one over
        the batches tracked, the counter already moved for this pass (``forward``)."""
        momentum = self.module.momentum
        return 1.0 / float(self.module.num_batches_tracked) if momentum is None else momentum


class LayerPlan(NamedTuple):
    """One linear layer (bias where there is no BN) and the BN after it (post) or before it (pre)."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    norm: NormPlan | None


class BlockPlan(NamedTuple):
    layers: tuple[LayerPlan, ...]
    pre: bool
    residual: bool  # some member adds the shortcut (one net: the net)
    shortcut: LayerPlan | None  # a projection (its BN, if any, after it); None: the identity
    # Of stacked members (``mlp_stacked``) where only some add the shortcut (a plain net and its
    # residual twin): the first that does, the stack holding those that do last; None where all do
    # or none does. The others keep their branch's own values untouched (not added to a masked
    # zero, which would turn a plain member's -0.0 into +0.0 and its inf into NaN).
    adds: int | None = None


def add_shortcut(branch: torch.Tensor, shortcut: torch.Tensor, adds: int | None, overwrite: bool = False) -> torch.Tensor:
    """The branch with the shortcut added, for the members from ``adds`` on (all where ``adds`` is
    None); the branch's own values for the others. ``overwrite``: the branch's tensor is nobody
    else's (no probe holds it), so the sum may go into it: one kernel on the adding members' rows,
    where a selection (``torch.where``) of a whole sum cost four times that."""
    if adds is None:
        return shortcut + branch
    out = branch if overwrite else branch.clone()
    out[adds:].add_(shortcut[adds:])
    return out


def _layer(linear: nn.Linear, bn: nn.BatchNorm1d | None) -> LayerPlan:
    norm = None if bn is None else NormPlan(bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps, bn)
    return LayerPlan(linear.weight, linear.bias, norm)


def _plan(net: Net) -> tuple[BlockPlan, ...]:
    """The net's blocks as bare tensors."""
    blocks = []
    for block in net.blocks:
        shortcut = None
        if block.shortcut is not None:
            proj, *rest = block.shortcut if isinstance(block.shortcut, nn.Sequential) else [block.shortcut]
            shortcut = _layer(proj, rest[0] if rest else None)
        layers = tuple(_layer(u.weight_layer, u.norm) for u in block.units)
        blocks.append(BlockPlan(layers, block.pre, block.residual, shortcut))
    return tuple(blocks)


ENABLED = config.get("ENGINE") != "autograd"  # autograd: Net and autograd only, no written-out pass


def linear_unit(u: Unit) -> bool:
    """A linear layer with a 1D BN or none, and nothing else (``Unit.bare``): an MLP's unit as
    ``build_model`` makes it without Fixup's scalars."""
    return u.bare and isinstance(u.weight_layer, nn.Linear) and (u.norm is None or isinstance(u.norm, nn.BatchNorm1d))


def linear_blocks(net: Net) -> bool:
    """Every block bare (``Block.bare``: no scalar at a branch's end) and of linear units, its shortcut
    the identity or a linear projection (with its BN): what the plan (``_plan``) can hold. This is the
    one gate of the written-out passes: any other block trains through ``Net`` and autograd."""
    def linear_shortcut(s: nn.Module | None) -> bool:
        return s is None or isinstance(s, nn.Linear) or (
            isinstance(s, nn.Sequential) and len(s) == 2 and isinstance(s[0], nn.Linear) and isinstance(s[1], nn.BatchNorm1d))

    return all(b.bare and linear_shortcut(b.shortcut) and all(linear_unit(u) for u in b.units) for b in net.blocks)


def supported(net: Net) -> bool:
    """An MLP's blocks (``linear_blocks``), on the CPU: there a step is dispatch-bound, and
    autograd's BN is this kernel (on a GPU it is cuDNN's, and launches are asynchronous anyway)."""
    return net.head.weight_layer.weight.device.type == "cpu" and linear_blocks(net)


class Kernels:
    """What a linear layer and a BN are, forward and backward, for one net: activations (B, C).
    ``mlp_stacked.StackedKernels`` is the same for S nets trained as one. The backward calls what
    autograd's derivative formulas call, in the layouts they pick."""

    def linear(self, x: torch.Tensor, layer: LayerPlan) -> torch.Tensor:
        return _linear(x, layer.weight, layer.bias)

    def norm(self, h: torch.Tensor, n: NormPlan) -> tuple[torch.Tensor, tuple]:
        """The output, and what the backward needs. What BatchNorm1d.forward asks of the kernel in
        the module's mode (its num_batches_tracked is counted once a pass for all the net's BNs)."""
        out, mean, invstd = _bn(h, n.weight, n.bias, n.running_mean, n.running_var, n.training, n.momentum, n.eps)
        return out, (h, mean, invstd)

    def linear_backward(self, g: torch.Tensor, layer: LayerPlan, x: torch.Tensor, give) -> torch.Tensor:
        # autograd's mm derivatives for x @ weight.t(): the input's grad as g @ weight, the weight's
        # computed in weight.t()'s column-major layout, (g.t() @ x); the bias's summed to its shape.
        give((layer.weight, g.t().mm(x)))
        if layer.bias is not None:
            give((layer.bias, g.sum_to_size(layer.bias.shape)))
        return g.mm(layer.weight)

    def norm_backward(self, g: torch.Tensor, n: NormPlan, saved: tuple, give) -> torch.Tensor:
        h, mean, invstd = saved
        g, g_weight, g_bias = _bn_backward(g, h, n.weight, n.running_mean, n.running_var, mean, invstd, True, n.eps, _MASK)
        give((n.weight, g_weight))
        give((n.bias, g_bias))
        return g


# ---------------------------------------------------------------------------------- forward
def _forward(plan: tuple[BlockPlan, ...], x: torch.Tensor, probe: Probe | None, saved: list,
             k: Kernels) -> torch.Tensor:
    """The stack's output; ``saved`` gets, in order, what the backward pops: each linear layer's
    input, each BN's saved tensors, each ReLU's result."""
    keep, relu = saved.append, torch.relu

    def norm(h: torch.Tensor, n: NormPlan) -> torch.Tensor:
        out, for_backward = k.norm(h, n)
        keep(for_backward)
        return out

    for layers, pre, residual, shortcut, adds in plan:
        h = x
        last = len(layers) - 1
        for j, layer in enumerate(layers):
            if pre:
                h = relu(h if layer.norm is None else norm(h, layer.norm))
                keep(h)  # the ReLU's result is the linear layer's input
                h = k.linear(h, layer)
            else:
                keep(h)
                h = k.linear(h, layer)
                if layer.norm is not None:
                    h = norm(h, layer.norm)
            if probe is not None:
                probe.responses.append(h)
            if not pre and j < last:
                h = relu(h)
                keep(h)
        if residual:
            s = x
            if shortcut is not None:
                keep(x)
                s = k.linear(x, shortcut)
                if shortcut.norm is not None:
                    s = norm(s, shortcut.norm)
            if probe is not None:
                probe.branches.append(h)
                probe.skips.append(s)
            h = add_shortcut(h, s, adds, overwrite=probe is None)
        if not pre:
            h = relu(h)
            keep(h)
        x = h
    return x


# --------------------------------------------------------------------------------- backward
def _backward(plan: tuple[BlockPlan, ...], g: torch.Tensor, saved: list, grads: list, k: Kernels) -> torch.Tensor:
    """The gradient at the stack's input; ``grads`` gets (parameter, gradient) pairs."""
    take, give = saved.pop, grads.append
    for layers, pre, residual, shortcut, adds in reversed(plan):
        if not pre:
            g = _threshold_backward(g, take(), 0)
        g_skip = None
        if residual:
            g_skip = g
            if shortcut is not None:
                if shortcut.norm is not None:
                    g_skip = k.norm_backward(g_skip, shortcut.norm, take(), give)
                g_skip = k.linear_backward(g_skip, shortcut, take(), give)
        last = len(layers) - 1
        for j in range(last, -1, -1):
            layer = layers[j]
            if pre:
                r = take()  # the ReLU's result, the linear layer's input
                g = _threshold_backward(k.linear_backward(g, layer, r, give), r, 0)
                if layer.norm is not None:
                    g = k.norm_backward(g, layer.norm, take(), give)
            else:
                if j < last:
                    g = _threshold_backward(g, take(), 0)
                if layer.norm is not None:
                    g = k.norm_backward(g, layer.norm, take(), give)
                g = k.linear_backward(g, layer, take(), give)
        g = g if g_skip is None else add_shortcut(g, g_skip, adds, overwrite=True)  # the branch's g is new
    return g


class BlockStack(torch.autograd.Function):
    """The block stack as one node of autograd's graph: ``BlockStack.apply(x, plan, kernels, probe)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, plan: tuple[BlockPlan, ...], k: Kernels, probe: Probe | None) -> torch.Tensor:  # type: ignore[override]
        saved: list = []
        out = _forward(plan, x, probe, saved, k)
        ctx.plan, ctx.kernels, ctx.saved = plan, k, saved
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        saved, ctx.saved, grads = ctx.saved, None, []
        g = _backward(ctx.plan, g.contiguous(), saved, grads, ctx.kernels)
        for param, grad in grads:  # the parameters are not the Function's inputs: no AccumulateGrad
            if param.grad is None:
                param.grad = grad
            else:
                param.grad += grad
        return g, None, None, None


_ONE_NET = Kernels()


class _NotKept(list):
    """What a pass without gradients keeps for a backward: nothing."""

    def append(self, item: object) -> None:
        pass


def _engine(net: Net) -> tuple:
    """(plan, the blocks' BN counters), or () where the engine does not apply (not an MLP, or
    switched off); made once per net."""
    engine = getattr(net, "_mlp_stack", None)
    if engine is None:
        tracked = [m.num_batches_tracked for b in net.blocks for m in b.modules() if isinstance(m, nn.BatchNorm1d)]
        plan = _plan(net) if ENABLED and supported(net) else ()
        engine = net._mlp_stack = (plan, tracked) if plan else ()
    return engine


def forward(net: Net, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
    """``net(x, probe)``, the block stack walked as written out here (see the module's docstring):
    for a training step, its backward written out too; for a pass without gradients (an
    evaluation, BN's calibration, a decision map), the forward alone, BN in the modules' mode
    (half the time of the modules' walk at 256 points, 0.7 of it at 1600: the modules' calls
    cost more than these kernels). ``net`` itself where the engine does not apply: not an MLP, a
    block removed (a lesion), gradients asked of a net in eval mode (BN's backward on running
    statistics is not written out), or the engine switched off."""
    engine = _engine(net)
    grad = torch.is_grad_enabled()
    if not engine or (grad and not net.training) or any(b.removed for b in net.blocks):
        return net(x, probe)
    plan, tracked = engine
    h = net.stem(x)
    if probe is not None:
        probe.responses.append(h)
    if not net.pre:
        h = F.relu(h)
    if tracked and net.training:  # as each BatchNorm1d.forward counts its batches in training mode
        torch._foreach_add_(tracked, 1)
    h = BlockStack.apply(h, plan, _ONE_NET, probe) if grad else _forward(plan, h, probe, _NotKept(), _ONE_NET)
    out = net.head(h)
    if probe is not None:
        probe.responses.append(out)
    return out
