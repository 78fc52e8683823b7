"""The signal propagation plot and the Jacobian's singular values of a net's block stack, on a
fixed probe batch (see ``resnet_core.analysis.signal``).

Signal: for every block, on the probe batch with BN normalising by the batch's own statistics (as
in a training step; running statistics untouched), the block's output x_{l+1} (the residual stream)
as its average squared channel mean and average channel variance, and the variance of the branch's
output F(x_l) (its last layer, scalars included: SkipInit's α, the 1/√L scale). Channels are a
dense layer's units or a feature map's channels (statistics over points and pixels).

Jacobian: ∂x_n/∂x_0, the block stack's output over its input (the stem's output), for each of a few
probe points with BN frozen at the probe batch's statistics (so each point's Jacobian is its own),
exactly: one vector-Jacobian product per output unit (``stack_jacobians``). Its singular values,
largest first, medianed over the points index by index. MLPs only: a CNN's Jacobian is
(feature map)², not width².
"""
from __future__ import annotations

import math
from typing import Any

import torch

from resnet_core.analysis.paths.adjoints import frozen_batch_norm
from resnet_core.analysis.signal import JACOBIAN_POINTS, JACOBIAN_WIDTH, SIGNAL_FLOATS, SIGNAL_POINTS
from resnet_core.nets.models import Net
from resnet_core.training.probes import batch_statistics


def signal_points(net: Net, x: torch.Tensor) -> int:
    """Probe points for the signal plot: SIGNAL_POINTS, fewer where each is big."""
    with torch.no_grad(), batch_statistics(net):
        features = net.features(x[:2]).numel() // 2
    return int(max(8, min(SIGNAL_POINTS, SIGNAL_FLOATS // max(features, 1), len(x))))


def _channel_stats(t: torch.Tensor) -> tuple[float, float]:
    """(mean over channels of the squared channel mean, mean over channels of the channel variance)."""
    flat = t.detach().double().transpose(0, 1).reshape(t.shape[1], -1)  # channels x (points and pixels)
    mean = flat.mean(1)
    var = flat.var(1, unbiased=False)
    return float(mean.square().mean()), float(var.mean())


@torch.no_grad()
def signal_rows(net: Net, x: torch.Tensor, step: int, model: str) -> list[dict[str, Any]]:
    """``records.SIGNAL_COLUMNS`` rows, one per block (block = 1 .. n, the block whose output it is)."""
    rows = []
    with batch_statistics(net):
        h = net.features(x)
        for i, block in enumerate(net.blocks):
            branch = block.branch(h)
            h = block(h)
            mean_sq, variance = _channel_stats(h)
            _, branch_variance = _channel_stats(branch)
            rows.append({"step": step, "model": model, "block": i + 1, "mean_sq": _finite(mean_sq),
                         "variance": _finite(variance), "branch_variance": _finite(branch_variance)})
    return rows


def _finite(v: float) -> float:
    return v if math.isfinite(v) else math.nan


def jacobian_applies(net: Net) -> bool:
    """An MLP's stack (dense units), no wider than JACOBIAN_WIDTH."""
    return all(isinstance(u.weight_layer, torch.nn.Linear) for b in net.blocks for u in b.units) \
        and bool(net.blocks) and net.blocks[-1].units[-1].weight_layer.out_features <= JACOBIAN_WIDTH


def stack_jacobians(net: Net, x: torch.Tensor) -> torch.Tensor:
    """∂x_n/∂x_0 at each point of x: (points, out, in), BN frozen at x's statistics.

    With BN frozen each point goes through the stack alone, so one copy of the points per output
    unit, each copy's gradient seeded with that unit, gives every row of every point's Jacobian in
    one forward and one backward pass. (``torch.func``'s ``vmap(jacrev(...))`` gives the same, but its
    first call in a process costs about a second and a half: the cold start of every run.) The seeds
    go in as the weights of a sum, not as ``autograd.grad``'s ``grad_outputs``: its check of a given
    gradient's shape imports sympy, 0.6 s of every run's cold start; the sum's backward hands the
    stack 1.0 x seeds, the seeds themselves to the bit."""
    with frozen_batch_norm(net, x):
        with torch.no_grad():
            h0 = net.features(x)
        points, width_in = h0.shape
        with torch.enable_grad():
            copies = h0.detach().repeat(net.blocks[-1].units[-1].weight_layer.out_features, 1).requires_grad_(True)
            out = copies
            for block in net.blocks:
                out = block(out)
            width_out = out.shape[1]
            seeds = torch.eye(width_out, dtype=out.dtype).repeat_interleave(points, dim=0)  # copy i: unit i
            (grad,) = torch.autograd.grad((out * seeds).sum(), copies)
    return grad.reshape(width_out, points, width_in).transpose(0, 1).detach()


def jacobian_rows(net: Net, x: torch.Tensor, step: int, model: str) -> list[dict[str, Any]]:
    """``records.JACOBIAN_COLUMNS`` rows: index 0 the largest singular value, each the median over
    the probe points (the first JACOBIAN_POINTS of x); none where the Jacobian does not apply."""
    if not jacobian_applies(net):
        return []
    jac = stack_jacobians(net, x[:JACOBIAN_POINTS]).double()
    finite = torch.isfinite(jac).flatten(1).all(1)
    if not bool(finite.any()):
        return []
    values = torch.linalg.svdvals(jac[finite])  # (points, k), descending
    median = values.median(0).values  # torch's median: the lower middle one, an actual point's value
    return [{"step": step, "model": model, "index": i, "singular_value": float(v)} for i, v in enumerate(median.tolist())]
