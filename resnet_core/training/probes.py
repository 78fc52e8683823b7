"""Measurements taken while training: per-layer gradient norms, response spread, branch size,
and the error of a model on a data split.

Each probe reduces many small tensors with as few calls as it can (``torch._foreach_norm``,
one ``stack``), because at these layer sizes the cost is the number of calls, not the maths.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from resnet_core.nets import mlp_stack
from resnet_core.nets.models import Net, Probe
from resnet_core.records import LayerSnapshot

EVAL_BATCH = 2048


@torch.no_grad()
def layer_snapshot(net: Net, probe: Probe, step: int) -> LayerSnapshot:
    """After ``loss.backward()`` on a probed forward pass: one value per weighted layer."""
    weights = net.weights()
    grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in weights]
    grad_norm = torch.stack(torch._foreach_norm(grads))
    act_std = per_tensor(probe.responses, _std)
    ratio = np.full(len(weights), np.nan)
    if probe.branches:
        r = torch.stack(torch._foreach_norm(probe.branches)) / torch.stack(torch._foreach_norm(probe.skips)).clamp_min(1e-30)
        # The ratio belongs to the last weighted layer of each block.
        ratio[net.block_ends()] = r.cpu().numpy()
    return LayerSnapshot(step, grad_norm.cpu().double().numpy(), act_std.cpu().double().numpy(), ratio)


def _std(t: torch.Tensor) -> torch.Tensor:
    """Per-row sample std from E[x^2] - E[x]^2, with no temporary the size of ``t`` (at these sizes
    allocating one cost more than the arithmetic): 15x faster than ``std(dim=1)`` on one thread.
    Layer responses have |mean| of the order of their std, so float32 cancellation stays far below
    what a chart shows."""
    flat = t.flatten(1)
    n = flat.shape[1]
    var = torch.linalg.vector_norm(flat, dim=1).square() / n - flat.mean(1).square()
    return (var.clamp_min(0) * (n / max(n - 1, 1))).sqrt()


def per_tensor(tensors: list[torch.Tensor], reduce) -> torch.Tensor:
    """``reduce`` applied to each tensor, one value each, in a few calls: tensors of one shape
    are stacked and reduced together (a loop of per-tensor calls cost ~10 % of a step)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    out = torch.empty(len(tensors), device=tensors[0].device)
    for idx in groups.values():
        stacked = torch.stack([tensors[i] for i in idx]).detach().float()
        out[idx] = reduce(stacked)
    return out


@torch.no_grad()
def evaluate(net: Net, x: torch.Tensor, y: torch.Tensor, batch_stats: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, error fraction), in chunks.

    ``batch_stats=False``: eval mode, BN uses its running statistics (the test error).
    ``batch_stats=True``: BN normalises with each chunk's own statistics, as during training, and
    the running statistics are left untouched: the training error of the network as it trains,
    which a deep net's lagging running averages would otherwise distort (or, at 1000 layers, blow up).
    """
    loss_sum = torch.zeros((), device=x.device)
    wrong = torch.zeros((), device=x.device)
    with batch_statistics(net) if batch_stats else evaluation_mode(net):
        for start in range(0, len(x), EVAL_BATCH):
            xb, yb = x[start:start + EVAL_BATCH], y[start:start + EVAL_BATCH]
            logits = mlp_stack.forward(net, xb)
            loss_sum += F.cross_entropy(logits, yb, reduction="sum")
            wrong += (logits.argmax(1) != yb).sum()
    n = max(len(x), 1)
    return float(loss_sum) / n, float(wrong) / n


@contextlib.contextmanager
def batch_statistics(net: Net) -> Iterator[None]:
    """Training mode with every BN's momentum 0 for the duration: BN normalises with each batch's
    own statistics, as in a training step, and the running statistics stay as they are."""
    was_training = net.training
    norms = _batch_norms(net)
    saved = [bn.momentum for bn in norms]
    net.train()
    for bn in norms:
        bn.momentum = 0.0  # running = 1 * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for bn, momentum in zip(norms, saved):
            bn.momentum = momentum
        net.train(was_training)


@contextlib.contextmanager
def evaluation_mode(net: Net) -> Iterator[None]:
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


@torch.no_grad()
def calibrate_batch_norm(net: Net, x: torch.Tensor, batch_size: int = 256) -> None:
    """Set BN running statistics to the data's (a cumulative average over ``x``), so the untrained
    network at step 0 is evaluated as itself rather than with BN's placeholder mean 0, variance 1."""
    norms = _batch_norms(net)
    if not norms:
        return
    saved = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    was_training = net.training
    net.train()
    for start in range(0, len(x), batch_size):
        mlp_stack.forward(net, x[start:start + batch_size])
    for bn, momentum in zip(norms, saved):
        bn.momentum = momentum
    net.train(was_training)


def _batch_norms(net: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
