"""S MLPs of one architecture as one: every layer's weights stacked along a new first dimension, so
that one kernel call serves all S members (a class's runs of one lesson; a sweep's runs of one
depth: ``training.member_stacks``). A plain net and its residual twin are one architecture here where the twin's
shortcuts are the identity: the walk adds a block's shortcut for the members that have one
(``mlp_stack.BlockPlan.adds``), the others keep their branch's values exactly.

These nets are dispatch-bound: at batch 128 and width 32 a step costs its number of kernel calls,
not its arithmetic. A linear layer of the S members is one ``bmm`` over (S, B, in) @ (S, in, out);
a BatchNorm is one call over the members laid side by side on the channel dimension, (B, S*C),
so each member keeps its own statistics (BN is per channel). Measured on this machine, each of
these kernels gives every member exactly what its own call would (tests/test_member_stacks.py,
tests/test_sweep_side_by_side.py).

The members' own ``Net``s stay: after stacking, their parameters and BN buffers are views into
the stacked tensors, so each ``Net`` always holds its member's current weights and statistics,
and is what evaluates it (``training.probes.evaluate``: at 1600 points each net's own walk took
0.5-0.7x the time of one stacked forward, whose side-by-side BN copies cost more than it saved).

Activations are contiguous (S, B, C) tensors; a BN sees them as (B, S*C), one copy each way.
The block stack's training pass is written out: ``mlp_stack`` walks the blocks, as for one net,
with this module's kernels (``StackedKernels``); at these sizes autograd's per-operation
bookkeeping cost more than the kernels it saved. Stem,
head and loss stay with autograd (``_Linear`` gives a linear layer's gradients in the layouts of
autograd's own ``mm`` derivatives).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.nets.mlp_stack import (BlockPlan, BlockStack, Kernels, LayerPlan, NormPlan, linear_blocks,
                                        linear_unit)
from resnet_core.nets.models import Net, Probe, Unit

class _Linear(torch.autograd.Function):
    """x (S, B, in) @ W (S, out, in)^T + b (S, out), with the gradients computed in the layouts of
    autograd's own ``mm`` derivatives for one member (g^T @ x for the weight, g @ W for the input),
    which is what makes the stacked gradients equal the members' bit for bit."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        g_x = torch.bmm(g, weight) if ctx.needs_input_grad[0] else None
        g_weight = torch.bmm(g.transpose(1, 2), x)
        g_bias = g.sum(1) if ctx.has_bias else None
        return g_x, g_weight, g_bias


class StackedUnit(NamedTuple):
    """A stem or head of the S members: the stacked layer (weights (S, out, in), biases (S, out), BN
    tensors (S*C,): ``mlp_stack``'s plan, of stacked tensors), and its order."""

    layer: LayerPlan
    pre: bool  # BN -> ReLU -> linear; else linear -> BN


# ------------------------------------------------------------- the block stack, written out
# ``mlp_stack`` walks the blocks, forward and backward; these are its kernels for S members at once:
# a linear layer one bmm, a BN one call on the members side by side. The backward calls what
# autograd's derivative formulas call, in the same layouts, so each member's gradients are bit for
# bit those of its own autograd graph.
_bn_backward = torch.ops.aten.native_batch_norm_backward.default
_MASK = [True, True, True]


def _side_by_side(h: torch.Tensor) -> torch.Tensor:
    """(S, B, C) -> (B, S*C), a copy: one BN call, each member on its own channels."""
    s, b, c = h.shape
    return h.transpose(0, 1).reshape(b, s * c)


def _stacked_back(h: torch.Tensor, s: int) -> torch.Tensor:
    """(B, S*C) -> contiguous (S, B, C): an elementwise kernel (ReLU, its backward) on the strided
    view took 11 us against 2 us, more than the copy (3 us)."""
    b = h.shape[0]
    return h.view(b, s, -1).transpose(0, 1).contiguous()


class StackedKernels(Kernels):
    """Activations (S, B, C); weights (S, out, in), biases (S, out), BN tensors (S*C,)."""

    def __init__(self, size: int):
        self.size = size

    def linear(self, x: torch.Tensor, layer: LayerPlan) -> torch.Tensor:
        if layer.bias is None:
            return torch.bmm(x, layer.weight.transpose(1, 2))
        return torch.baddbmm(layer.bias.unsqueeze(1), x, layer.weight.transpose(1, 2))

    def norm(self, h: torch.Tensor, n: NormPlan) -> tuple[torch.Tensor, tuple]:
        h = _side_by_side(h)
        out, mean, invstd = torch.native_batch_norm(h, n.weight, n.bias, n.running_mean, n.running_var, True,
                                                    n.momentum, n.eps)
        return _stacked_back(out, self.size), (h, mean, invstd)

    def linear_backward(self, g: torch.Tensor, layer: LayerPlan, x: torch.Tensor, give) -> torch.Tensor:
        give((layer.weight, torch.bmm(g.transpose(1, 2), x)))
        if layer.bias is not None:
            give((layer.bias, g.sum(1)))
        return torch.bmm(g, layer.weight)

    def norm_backward(self, g: torch.Tensor, n: NormPlan, saved: tuple, give) -> torch.Tensor:
        h, mean, invstd = saved
        g, g_weight, g_bias = _bn_backward(_side_by_side(g), h, n.weight, n.running_mean, n.running_var, mean,
                                           invstd, True, n.eps, _MASK)
        give((n.weight, g_weight))
        give((n.bias, g_bias))
        return _stacked_back(g, self.size)


def _first_adding(adds: list[bool]) -> int | None:
    """Of members of which some add a block's shortcut: the first that does, the others before it
    (``BlockPlan.adds``); None where all do or none does."""
    if all(adds) or not any(adds):
        return None
    first = adds.index(True)
    if not all(adds[first:]):
        raise ValueError("in a stack, the members that add a block's shortcut come after those that do not")
    return first


def stackable(net: Net) -> bool:
    """An MLP of linear layers and 1D BN (what ``build_model`` makes for ``arch="mlp"``): blocks
    ``mlp_stack``'s plan holds, and a stem and head that only flatten their input, if anything."""
    def ends_ok(u: Unit) -> bool:
        return linear_unit(u) and (u.reshape is None or isinstance(u.reshape, nn.Flatten))

    return ends_ok(net.stem) and ends_ok(net.head) and linear_blocks(net)


class StackedMLP:
    """The members' nets, stacked. ``parameters`` are new leaf tensors, where a stacked pass's
    gradients land (``hand_gradients`` gives each member its own); each member's own parameters and
    BN buffers become views into the stacked tensors."""

    def __init__(self, nets: list[Net]):
        if not nets or not all(stackable(n) for n in nets):
            raise ValueError("only MLPs of linear layers and BatchNorm1d can be stacked")
        self.nets = nets
        self.size = len(nets)
        self.parameters: list[torch.Tensor] = []
        self._owners: list[tuple[torch.Tensor, list[torch.Tensor], bool]] = []  # (stacked, members' own, flat)
        self._grad_buffers: list[torch.Tensor] | None = None  # see hand_gradients
        self._grad_views: list[list[torch.Tensor]] = []
        first = nets[0]
        depths = range(len(first.blocks))
        adding = [_first_adding([n.blocks[i].residual for n in nets]) for i in depths]  # refused before any stacking
        self.pre = first.pre
        self.stem = self._unit([n.stem for n in nets])
        self.blocks = tuple(self._block([n.blocks[i] for n in nets], adding[i]) for i in depths)
        self.head = self._unit([n.head for n in nets])
        residual = [j for j, b in enumerate(self.blocks) if b.residual]  # the blocks that fill a probe's branches
        self._probed = [[k for k, j in enumerate(residual) if n.blocks[j].residual] for n in nets]  # each member's
        self.tracked = [m.num_batches_tracked for n in nets for m in n.modules() if isinstance(m, nn.BatchNorm1d)]
        self.kernels = StackedKernels(self.size)

    # ---- building: stack the members' tensors, then make theirs views of the stack ------------
    def _stack(self, tensors: list[torch.Tensor], flat: bool, parameter: bool) -> torch.Tensor:
        with torch.no_grad():
            stacked = (torch.cat if flat else torch.stack)([t.detach() for t in tensors]).clone()
            views = stacked.split(len(tensors[0])) if flat else stacked.unbind(0)
            for t, view in zip(tensors, views):
                t.data = view  # the member's own tensor now reads and writes the stack
        if parameter:
            stacked.requires_grad_(True)
            self.parameters.append(stacked)
            self._owners.append((stacked, tensors, flat))
        return stacked

    def _layer(self, linears: list[nn.Linear], norms: list[nn.BatchNorm1d | None]) -> LayerPlan:
        weight = self._stack([m.weight for m in linears], False, True)
        bias = None if linears[0].bias is None else self._stack([m.bias for m in linears], False, True)
        norm = None
        if norms[0] is not None:
            norm = NormPlan(self._stack([m.weight for m in norms], True, True), self._stack([m.bias for m in norms], True, True),
                            self._stack([m.running_mean for m in norms], True, False),
                            self._stack([m.running_var for m in norms], True, False), norms[0].eps, norms[0])
        return LayerPlan(weight, bias, norm)

    def _unit(self, units: list[Unit]) -> StackedUnit:
        return StackedUnit(self._layer([u.weight_layer for u in units], [u.norm for u in units]), units[0].pre)

    def _block(self, blocks, first_adding: int | None) -> BlockPlan:
        """The members' blocks at one depth. A plain block and a residual one with the identity as
        its shortcut (a plain net and its residual twin) stack: the walk adds the shortcut for the
        members from ``first_adding`` on (``BlockPlan.adds``). A projection is weights all members must have."""
        layers = tuple(self._layer([b.units[j].weight_layer for b in blocks], [b.units[j].norm for b in blocks])
                       for j in range(len(blocks[0].units)))
        adds = [b.residual for b in blocks]
        shortcut = None
        if any(b.shortcut is not None for b in blocks):
            if not all(adds) or any(b.shortcut is None for b in blocks):
                raise ValueError("members with a projection shortcut stack only with members that have one too")
            parts = [b.shortcut if isinstance(b.shortcut, nn.Sequential) else [b.shortcut] for b in blocks]
            shortcut = self._layer([p[0] for p in parts], [p[1] if len(p) > 1 else None for p in parts])
        return BlockPlan(layers, blocks[0].pre, any(adds), shortcut, first_adding)

    def hand_gradients(self) -> None:
        """After a backward pass: each member's own parameters get their gradients (for its own
        optimizer, or its layer probe), as views of one buffer per stacked parameter that the
        stacked gradients are copied into in one call: setting thousands of ``.grad``s each step
        cost a tenth of the step. A member's ``.grad`` is set again only where it is not that view
        (its optimizer let it go, training alone a while)."""
        pairs = [(stacked.grad, i) for i, (stacked, _, _) in enumerate(self._owners) if stacked.grad is not None]
        if not pairs:
            return
        if self._grad_buffers is None:
            self._grad_buffers = [torch.empty_like(stacked) for stacked, _, _ in self._owners]
            self._grad_views = [list(b.split(len(own[0])) if flat else b.unbind(0))
                                for b, (_, own, flat) in zip(self._grad_buffers, self._owners)]
        torch._foreach_copy_([self._grad_buffers[i] for _, i in pairs], [g for g, _ in pairs])
        for stacked, _, _ in self._owners:  # held once, as the members' own runs would hold them
            stacked.grad = None
        for _, i in pairs:
            for t, view in zip(self._owners[i][1], self._grad_views[i]):
                if t.grad is not view:
                    t.grad = view

    # ---- the passes ---------------------------------------------------------------------------
    def _unit_forward(self, x: torch.Tensor, layer: LayerPlan, pre: bool) -> torch.Tensor:
        """The unit as ``models.Unit`` computes it in training mode, without the ReLU that follows a
        post unit: the stem's and the head's, through autograd (the walk's BN, ``StackedKernels.norm``)."""
        if pre:
            if layer.norm is not None:
                x = self.kernels.norm(x, layer.norm)[0]
            x = torch.relu(x)
        x = _Linear.apply(x, layer.weight, layer.bias)
        if not pre and layer.norm is not None:
            x = self.kernels.norm(x, layer.norm)[0]
        return x

    def forward(self, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
        """Logits (S, B, classes) of inputs (S, B, features), in training mode (BN on batch
        statistics, running statistics updated), as each member's ``Net.forward`` would give them.
        ``probe`` gets what ``mlp_stack.forward`` puts in one net's, stacked (``member_probe``)."""
        if self.tracked:
            torch._foreach_add_(self.tracked, 1)
        x = self._unit_forward(x.flatten(2), *self.stem)  # BN in training mode, as a training step
        if probe is not None:
            probe.responses.append(x)
        if not self.pre:
            x = torch.relu(x)
        if self.blocks:
            x = BlockStack.apply(x.contiguous(), self.blocks, self.kernels, probe)
        out = self._unit_forward(x, *self.head)
        if probe is not None:
            probe.responses.append(out)
        return out

    def losses(self, x: torch.Tensor, y: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
        """Each member's mean cross-entropy on its own batch: (S,)."""
        logits = self.forward(x, probe)
        s, b, k = logits.shape
        return F.cross_entropy(logits.reshape(s * b, k), y.reshape(s * b), reduction="none").view(s, b).mean(1)

    def member_probes(self, probe: Probe) -> list[Probe]:
        """Each member's part of a stacked forward pass's probe: what its own pass would have filled
        (a block's branch and shortcut only for the members that add a shortcut there)."""
        responses, branches, skips = ([t.unbind(0) for t in tensors] for tensors in (probe.responses, probe.branches,
                                                                                   probe.skips))
        return [Probe([r[i] for r in responses], [branches[k][i] for k in mine], [skips[k][i] for k in mine])
                for i, mine in enumerate(self._probed)]
