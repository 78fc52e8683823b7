"""The lesion study (Veit et al. 2016, Sec. 4): delete one block at test time and measure the
training error. A residual block's output becomes its (shortcut-mapped) input; a plain block is
replaced by the identity, which is only possible where its input and output have the same shape.

Veit et al. found that deleting a single block barely hurts a residual net (except where a block
changes the shape), while deleting a layer of a plain net is catastrophic: the residual net
behaves like an ensemble of paths, most of which survive any one deletion.

BN is in eval mode with statistics taken from the intact network on the evaluation points and
then frozen, as at test time: the deleted block is missed, not compensated for.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any

import torch

from resnet_core.analysis.paths.adjoints import frozen_batch_norm
from resnet_core.nets.models import Net, lesionable

CACHE_BYTES = 256 * 2**20   # the block inputs kept for re-use, at most
TIME_POINTS = 2048 * 32     # points x blocks: 2048 points up to 32 blocks, fewer beyond (never under 256)
STACK_BYTES = 512 * 2**10   # the deletions evaluated at once: as many variants of the points as fit


def lesion_points(net: Net, x: torch.Tensor) -> int:
    """How many evaluation points the study uses: all of them for ordinary nets; fewer for very
    deep or wide ones, so that it stays a matter of seconds and its cache within CACHE_BYTES.
    Every deletion re-runs the blocks after it, so the work grows with the square of the depth."""
    n = max(len(net.blocks), 1)
    with torch.no_grad():
        per_point = sum(_numel_per_point(net, x[:1]))
    by_time = max(256, TIME_POINTS // n)
    by_memory = max(64, CACHE_BYTES // max(per_point * x.element_size(), 1))
    return int(min(len(x), by_time, by_memory))


def _numel_per_point(net: Net, x1: torch.Tensor) -> list[int]:
    was = net.training
    net.eval()
    h = net.features(x1)
    sizes = []
    for block in net.blocks:
        sizes.append(h.numel())
        h = block(h)
    net.train(was)
    return sizes


class LesionStudy:
    """The study of one trained net on points (x, y), in parts: ranges of deletions small enough to
    go through the later blocks together.

    On entering, BN is frozen at the statistics of (x, y) through the intact net and the input of
    every block is computed once, so deleting block i costs only the blocks after it. ``parts``
    are ranges of deletions that go through the later blocks together, stacked along the batch
    (``_deletions``); ``part(i)`` gives their errors. BN is restored on leaving."""

    def __init__(self, net: Net, x: torch.Tensor, y: torch.Tensor):
        self.net, self.x, self.y = net, x, y
        self.inputs: list[torch.Tensor] = []
        self.intact = math.nan  # the error with nothing removed
        self.parts: list[range] = []
        self._frozen = contextlib.ExitStack()

    def __enter__(self) -> "LesionStudy":
        self._frozen.enter_context(frozen_batch_norm(self.net, self.x))
        self._frozen.enter_context(torch.no_grad())
        h = self.net.features(self.x)
        for i in range(len(self.net.blocks)):
            self.inputs.append(h)
            h = self.net.blocks[i](h)
        self.intact = _errors(self.net.head(h), self.y)[0]
        widest = max((t.numel() * t.element_size() for t in self.inputs), default=1)
        per_stack = max(1, STACK_BYTES // widest)
        n = len(self.net.blocks)
        self.parts = [range(start, min(n, start + per_stack)) for start in range(0, n, per_stack)]
        return self

    def part(self, index: int) -> list[float]:
        return self.deletions(self.parts[index])

    def deletions(self, deleted: range) -> list[float]:
        """The errors with each block of ``deleted`` removed (a part, or any range of blocks)."""
        return _deletions(self.net, self.inputs, self.y, deleted)

    def __exit__(self, *exc: object) -> None:
        self.inputs = []
        self._frozen.close()


def lesion_errors(net: Net, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Training error with nothing removed, then with each block removed in turn (NaN where a
    plain block changes the shape and cannot be removed)."""
    with LesionStudy(net, x, y) as study:
        return [study.intact, *(e for i in range(len(study.parts)) for e in study.part(i))]


def _deletions(net: Net, inputs: list[torch.Tensor], y: torch.Tensor, deleted: range) -> list[float]:
    """The errors with each block of ``deleted`` removed (one variant of the points per deletion).
    Going up the stack, the variant without block i joins the stack at block i (its input is the
    cached one, through the removed block); from there every later block sees all the variants so
    far as one batch. BN is frozen in eval mode, so each point of each variant is computed exactly
    as it would be alone."""
    stack: torch.Tensor | None = None
    order: list[int] = []  # the deletions in the stack, in stacking order
    for i in range(deleted.start, deleted.stop):
        block = net.blocks[i]
        if stack is not None:
            stack = block(stack)
        if lesionable(block):
            block.removed = True
            try:
                h = block(inputs[i])
            finally:
                block.removed = False
            stack = h if stack is None else torch.cat([stack, h])
            order.append(i)
    if stack is not None:  # every variant on through the blocks after the last deletion, as one batch
        for later in net.blocks[deleted.stop:]:
            stack = later(stack)
    found = dict(zip(order, _errors(net.head(stack), y) if stack is not None else []))
    return [found.get(i, math.nan) for i in deleted]


def _errors(logits: torch.Tensor, y: torch.Tensor) -> list[float]:
    """The error of each variant of the points stacked in ``logits`` (variant after variant)."""
    wrong = (logits.argmax(1).view(-1, len(y)) != y).float()
    return [float(e) for e in wrong.mean(1)]


def lesion_rows(net: Net, x: torch.Tensor, y: torch.Tensor, model: str) -> list[dict[str, Any]]:
    """Rows for ``RunRecord.set_lesion`` (records.LESION_COLUMNS): block -1 is the intact net,
    blocks count from 0 (the first block after the stem)."""
    points = lesion_points(net, x)
    errors = lesion_errors(net, x[:points], y[:points])
    return [{"model": model, "block": i - 1, "train_error": e} for i, e in enumerate(errors)]


