"""Each residual block linearised at a probe batch, as the backward maps the unrolled view needs.

A block computes x' = c(s(x) + F(x)); at the probe batch its Jacobian is D (S + J), with S the
skip's (identity, projection or zero-padding), J the branch's and D the ReLU after the addition
(original blocks; the identity in pre-activation ones). ``LinearBlock`` applies S^T D and J^T D to
many cotangents at once: shape (terms, *x.shape), every term one more leading index.

BN must be frozen first (``frozen_batch_norm``): in eval mode it is a fixed affine map per channel,
so each point's Jacobian is its own and a BN right after a weight folds into that weight.

The maps are written out per layer (a matmul or a transposed convolution, and a mask) instead of
through ``torch.func.vjp`` + ``vmap``: at these sizes the cost is the number of passes over the
terms, and this takes the fewest (the last one accumulates straight into the caller's buffer).
A layer it does not know falls back to ``torch.func``, which is exact but slower.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from resnet_core.nets.models import Block, Net, PadShortcut, Unit


def _batch_norms(net: nn.Module) -> list[_BatchNorm]:
    return [m for m in net.modules() if isinstance(m, _BatchNorm) and m.running_mean is not None]


@contextlib.contextmanager
def frozen_batch_norm(net: nn.Module, x: torch.Tensor | None = None) -> Iterator[None]:
    """BN in eval mode for the duration; running statistics and train/eval mode restored after.
    With ``x``, each BN's statistics are first set to the (biased) mean and variance of what
    reaches it when ``x`` goes through the net, so that the forward pass on ``x`` is exactly the
    training-mode one (and a deep net's lagging running averages cannot distort it)."""
    norms = _batch_norms(net)
    means, variances = [bn.running_mean for bn in norms], [bn.running_var for bn in norms]
    saved = (torch._foreach_mul(means, 1.0), torch._foreach_mul(variances, 1.0)) if norms else ([], [])
    was_training = net.training
    try:
        net.eval()
        if x is not None and norms:
            with batch_statistics_of_next_pass(net), torch.no_grad():
                net(x)
        yield
    finally:
        if norms:
            with torch.no_grad():
                torch._foreach_copy_(means, saved[0])
                torch._foreach_copy_(variances, saved[1])
        net.train(was_training)


@contextlib.contextmanager
def batch_statistics_of_next_pass(net: nn.Module) -> Iterator[None]:
    """Each BN takes the (biased) statistics of the first input that reaches it inside this block
    as its running statistics: with BN in eval mode, the first pass is then the training-mode one,
    and later passes over the same points reuse what it set. Constants: no gradient through them."""
    done: set[int] = set()

    def use_batch_statistics(bn: _BatchNorm, args: tuple[torch.Tensor, ...]) -> None:
        if id(bn) in done:
            return
        done.add(id(bn))
        with torch.no_grad():
            # what a training-mode BN computes for its batch (and 6x faster than Tensor.var over dim 0)
            mean, var = torch.batch_norm_update_stats(args[0].detach(), None, None, 0.0)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)

    hooks = [bn.register_forward_pre_hook(use_batch_statistics) for bn in _batch_norms(net)]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


# ---- the backward maps of single layers --------------------------------------------------------
class _Matmul:
    """u -> W^T u of a Linear (u @ W); bias drops out of a Jacobian."""

    def __init__(self, w: torch.Tensor):
        self.w = w

    def apply(self, u: torch.Tensor, fresh: bool) -> torch.Tensor:
        return u @ self.w

    def accumulate(self, into: torch.Tensor, u: torch.Tensor) -> None:
        into.view(-1, self.w.shape[1]).addmm_(u.reshape(-1, self.w.shape[0]), self.w)


class _Scale:
    """u -> factor * u (a ReLU's mask, a pre-activation BN's scale): in place when u is ours."""

    def __init__(self, factor: torch.Tensor):
        self.factor = factor

    def apply(self, u: torch.Tensor, fresh: bool) -> torch.Tensor:
        return u.mul_(self.factor) if fresh else u * self.factor

    def accumulate(self, into: torch.Tensor, u: torch.Tensor) -> None:
        into.addcmul_(u, self.factor)


class _Function:
    """Any other linear map that acts on each point alone, as a function of u."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.fn = fn

    def apply(self, u: torch.Tensor, fresh: bool) -> torch.Tensor:
        return self.fn(u)

    def accumulate(self, into: torch.Tensor, u: torch.Tensor) -> None:
        into.add_(self.fn(u))


class _Pullback(_Function):
    """torch.func's pullback at the whole probe batch: it cannot be restricted to fewer points."""


def _bn_scale(norm: nn.Module | None, like: torch.Tensor) -> torch.Tensor | None:
    """The per-channel factor of an eval-mode BN, shaped to broadcast over one point."""
    if norm is None:
        return None
    if not isinstance(norm, _BatchNorm) or norm.running_var is None:
        raise TypeError("not an eval-mode BatchNorm")
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    return scale.reshape(-1, *([1] * (like.ndim - 2))).to(like.dtype)


def _weight_adjoint(layer: nn.Module, x: torch.Tensor, out_scale: torch.Tensor | None):
    """W^T (out_scale * u) at input x; a BN right after the weight is folded into it."""
    w = layer.weight.detach()
    if out_scale is not None:
        w = w * out_scale.reshape(-1, *([1] * (w.ndim - 1)))
    if isinstance(layer, nn.Linear):
        return _Matmul(w)
    if isinstance(layer, nn.Conv2d) and isinstance(layer.padding, tuple):
        in_shape = tuple(x.shape[1:])

        def conv_adjoint(u: torch.Tensor) -> torch.Tensor:
            flat = u.reshape(-1, *u.shape[-3:])
            grad = torch.nn.grad.conv2d_input((flat.shape[0], *in_shape), w, flat, layer.stride,
                                              layer.padding, layer.dilation, layer.groups)
            return grad.reshape(*u.shape[:-3], *in_shape)
        return _Function(conv_adjoint)
    raise TypeError(f"no adjoint for {type(layer).__name__}")


def _run(ops: list, u: torch.Tensor, into: torch.Tensor | None = None) -> torch.Tensor | None:
    """Apply the backward maps of ``ops`` (listed in forward order) to u, last layer first.
    With ``into``, the result is added to it instead of returned."""
    if not ops:
        if into is None:
            return u
        into.add_(u)
        return None
    fresh = False
    for op in reversed(ops[1:]):
        u = op.apply(u, fresh)
        fresh = fresh if isinstance(op, _Function) else True  # a function may hand back a view of u
    if into is None:
        return ops[0].apply(u, fresh)
    if not fresh and not isinstance(ops[0], _Function):
        u = u.clone()  # u may overlap ``into`` (the caller's terms, shifted by one length)
    ops[0].accumulate(into, u)
    return None


class LinearBlock:
    """One residual block's backward maps at its input x (call with BN frozen, without grad)."""

    def __init__(self, block: Block, x: torch.Tensor):
        if block.removed or not block.residual:
            raise ValueError("path analysis needs a residual block that has not been removed")
        self.in_shape = tuple(x.shape)
        self.identity_skip = block.shortcut is None
        skip = block.skip(x)  # forward before reading any BN's scale: its statistics may be set by this pass
        try:
            self.branch_ops, branch = self._branch_ops(block, x)
            self.skip_ops = self._skip_ops(block.shortcut, x)
        except TypeError:
            branch = block.branch(x)
            self.branch_ops = [self._functorch(block.branch, x)]
            self.skip_ops = [] if block.shortcut is None else [self._functorch(block.skip, x)]
        out = skip + branch
        self.out_mask = None if block.pre else (out > 0).to(x.dtype)
        self.out = out if block.pre else F.relu(out)  # the block's output: the next block's input

    @staticmethod
    def _branch_ops(block: Block, x: torch.Tensor) -> tuple[list, torch.Tensor]:
        """Backward maps of the branch's layers in forward order, and the branch's output F(x).
        Mirrors ``Block.branch`` (the check against autograd would catch any drift); a variant of
        one's own (``register_block``) is not the branch mirrored here: ``torch.func``'s pullback."""
        if type(block) is not Block:
            raise TypeError("a block variant")
        ops = []
        h = x
        last = len(block.units) - 1
        for j, unit in enumerate(block.units):
            if not isinstance(unit, Unit) or unit.reshape is not None or not unit.bare:
                raise TypeError("unexpected unit")  # Fixup's scalar biases move the masks: torch.func's pullback
            if unit.pre:  # BN -> ReLU -> weight (Unit.forward's steps): one factor for the BN scale and the mask
                normed = h if unit.norm is None else unit.norm(h)  # sets the BN's statistics before its scale is read
                out = unit.weight_layer(F.relu(normed))
                scale = _bn_scale(unit.norm, h)
                gate = (normed > 0).to(h.dtype)
                ops.append(_Scale(gate if scale is None else gate * scale))
                ops.append(_weight_adjoint(unit.weight_layer, normed, None))
            else:  # weight -> BN, folded
                out = unit(h)  # first, so that a BN's statistics are set before its scale is read
                ops.append(_weight_adjoint(unit.weight_layer, h, _bn_scale(unit.norm, h)))
            h = out
            if not block.pre and j < last:
                ops.append(_Scale((h > 0).to(h.dtype)))
                h = F.relu(h)
        factor = block.branch_factor()  # SkipInit's α, depth-μP's 1/√L: the branch's Jacobian includes them
        if not (isinstance(factor, float) and factor == 1.0):
            ops.append(_Function(lambda u: u * factor))
        return ops, block.branch_end(h)

    @staticmethod
    def _skip_ops(shortcut: nn.Module | None, x: torch.Tensor) -> list:
        if shortcut is None:
            return []
        if isinstance(shortcut, PadShortcut):
            c_in, stride = x.shape[1], shortcut.stride
            if x.ndim == 2:
                return [_Function(lambda u: u[..., :c_in])]

            def unpad(u: torch.Tensor) -> torch.Tensor:
                grad = u.new_zeros(*u.shape[:-3], *x.shape[1:])
                grad[..., ::stride, ::stride] = u[..., :c_in, :, :]
                return grad
            return [_Function(unpad)]
        if isinstance(shortcut, (nn.Linear, nn.Conv2d)):
            return [_weight_adjoint(shortcut, x, None)]
        if isinstance(shortcut, nn.Sequential) and len(shortcut) == 2 and isinstance(shortcut[1], _BatchNorm):
            return [_weight_adjoint(shortcut[0], x, _bn_scale(shortcut[1], shortcut[0](x)))]
        raise TypeError("unexpected shortcut")

    @staticmethod
    def _functorch(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> _Pullback:
        _, pullback = torch.func.vjp(fn, x)
        batched = torch.func.vmap(pullback)
        return _Pullback(lambda u: batched(u)[0])

    def restricted(self, points: int) -> "LinearBlock | None":
        """The same maps for the first ``points`` probe points only (None if a map cannot be)."""
        ops = self.branch_ops + self.skip_ops
        if any(isinstance(op, _Pullback) for op in ops):
            return None
        part = object.__new__(LinearBlock)
        part.__dict__.update(self.__dict__)
        cut = lambda op: _Scale(op.factor[:points]) if isinstance(op, _Scale) else op  # noqa: E731
        part.branch_ops = [cut(op) for op in self.branch_ops]
        part.skip_ops = [cut(op) for op in self.skip_ops]
        part.out_mask = None if self.out_mask is None else self.out_mask[:points]
        part.out = self.out[:points]
        part.in_shape = (min(points, self.in_shape[0]), *self.in_shape[1:])
        return part

    def gate(self, u: torch.Tensor, in_place: bool = False) -> torch.Tensor:
        """D u: the ReLU after the addition (original blocks)."""
        if self.out_mask is None:
            return u
        return u.mul_(self.out_mask) if in_place else u * self.out_mask

    def skip_T(self, gated: torch.Tensor) -> torch.Tensor:
        """S^T of an already gated u (may return u itself: the identity)."""
        return _run(self.skip_ops, gated)

    def branch_T(self, gated: torch.Tensor, into: torch.Tensor | None = None) -> torch.Tensor | None:
        """J^T of an already gated u; with ``into``, added to it in place."""
        if gated.shape[0] == 0:
            return None if into is not None else gated.new_zeros((0, *self.in_shape))
        return _run(self.branch_ops, gated, into)


@dataclass
class Linearisation:
    """What the backward passes need: each block's maps, the cotangent arriving at the top of the
    stack from the head, and autograd's gradient at its bottom (the reference)."""

    blocks: list[LinearBlock]
    top: torch.Tensor        # dL/dx_n
    gradient: torch.Tensor   # dL/dx_0 by autograd through the modules themselves
    loss: float
    net: Net | None = None
    x: torch.Tensor | None = None
    y: torch.Tensor | None = None

    def restricted(self, points: int) -> "Linearisation":
        """The first ``points`` probe points, each still weighted 1 / (whole batch) as in L."""
        if points >= self.top.shape[0]:
            return self
        blocks = [b.restricted(points) for b in self.blocks]
        if any(b is None for b in blocks):  # a layer only torch.func knows: linearise the part anew
            part = linearise(self.net, self.x[:points], self.y[:points])
            scale = points / self.top.shape[0]  # its loss averages over fewer points
            return Linearisation(part.blocks, part.top * scale, part.gradient * scale, part.loss)
        return Linearisation(blocks, self.top[:points], self.gradient[:points], self.loss)


def linearise(net: Net, x: torch.Tensor, y: torch.Tensor, probe_statistics: bool = False) -> Linearisation:
    """Linearise every block at the probe batch; L = mean cross-entropy over (x, y).
    Call with BN frozen (``frozen_batch_norm``); ``probe_statistics`` first sets BN's statistics
    to the probe batch's own, in the same pass (``frozen_batch_norm(net, x)`` costs one more)."""
    if not net.residual:
        raise ValueError(f"{net.name} has no shortcuts: the unrolled view is for residual nets")
    with batch_statistics_of_next_pass(net) if probe_statistics else contextlib.nullcontext():
        return _linearise(net, x, y)


def _linearise(net: Net, x: torch.Tensor, y: torch.Tensor) -> Linearisation:
    with torch.no_grad():
        h = net.features(x)
        blocks = []
        for block in net.blocks:
            blocks.append(LinearBlock(block, h))
            h = blocks[-1].out
    with torch.enable_grad():
        x0 = net.features(x).detach().requires_grad_(True)
        h = x0
        for block in net.blocks:
            h = block(h)
        loss = F.cross_entropy(net.head(h), y)
        gradient, top = torch.autograd.grad(loss, [x0, h])
    return Linearisation(blocks, top.detach(), gradient.detach(), float(loss.detach()), net, x, y)
