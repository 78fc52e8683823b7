"""The block lens (see ``resnet_core.analysis.lens``): the head applied to every block's output.

The points and the BN mode are the evaluation's (``training.probes.evaluate`` with batch statistics:
chunks of EVAL_BATCH, BN normalising by each chunk's statistics, running statistics untouched), so
the lens at the last block is the model's own training error, bit for bit. Blocks whose output the
head cannot read (an earlier stage's, of another width) are left out: a CNN's or a many-stage MLP's
lens reads the blocks of the last stage.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from resnet_core.nets.models import Net
from resnet_core.training.probes import EVAL_BATCH, batch_statistics


@torch.no_grad()
def lens_rows(net: Net, x: torch.Tensor, y: torch.Tensor, step: int, model: str) -> list[dict[str, Any]]:
    """``records.LENS_COLUMNS`` rows: block = 1 .. n, the block whose output the head reads."""
    n = len(net.blocks)
    losses = torch.zeros(n, dtype=torch.float32)
    wrong = torch.zeros(n, dtype=torch.float32)
    read = [False] * n
    width = net.head.weight_layer.in_features  # the last stage's: the widths double from stage to stage
    with batch_statistics(net):
        for start in range(0, len(x), EVAL_BATCH):
            xb, yb = x[start:start + EVAL_BATCH], y[start:start + EVAL_BATCH]
            h = net.features(xb)
            for i, block in enumerate(net.blocks):
                h = block(h)
                if h.shape[1] == width:  # read at once: one block's output alive at a time, as in an evaluation
                    read[i] = True
                    logits = net.head(h)
                    losses[i] += F.cross_entropy(logits, yb, reduction="sum")
                    wrong[i] += (logits.argmax(1) != yb).sum()
    count = max(len(x), 1)
    return [{"step": step, "model": model, "block": i + 1, "train_error": float(wrong[i]) / count,
             "train_loss": float(losses[i]) / count} for i in range(n) if read[i]]
