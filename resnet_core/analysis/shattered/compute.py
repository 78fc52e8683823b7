"""Shattered gradients (Balduzzi et al. 2017, arXiv 1702.08591).

Take a net with one input and one output, put 256 inputs on a line, and look at the gradient
df/dx at each of them. In a shallow net neighbouring inputs get nearly the same gradient. In a
deep plain ReLU net the gradients of neighbours become unrelated, like white noise: their
correlation decays like 2^-L with depth. In a residual net it decays like 1/sqrt(L) only, so
the gradients stay "brown noise", still informative about the neighbourhood.

The nets are the app's own (``models.build_model``) with one input and one output, so the plain
and residual twins are exactly those trained elsewhere, only untrained here (at initialisation,
as in the paper). Two choices follow the paper's analysis, not the app's defaults:
- batch norm: without it, and with zero biases, a ReLU net of one input is linear on each side of
  0, so there is nothing to shatter; with it, each unit's kink moves to its own place on the line;
- one weighted layer per residual branch (x + W relu(BN x)): each branch of two layers is itself
  a small plain net and shatters in turn (measured at depth 50: correlation ~0.67 with one-layer
  branches, ~0.1-0.2 with two-layer ones). Plain nets are the same either way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from resnet_core.nets.models import Net, build_model
from resnet_core.settings import ModelSpec, Settings, SettingsError, check_depth
from resnet_core.analysis.shattered import (DEFAULT_BRANCH_LAYERS, DEFAULT_DEPTHS, DEFAULT_SEEDS, DEFAULT_WIDTH, POINTS, X_RANGE,
                              check_depths, check_memory, scalar_settings)



def scalar_net(family: str, depth: int, settings: Settings) -> Net:
    check_depth(settings, depth)
    return build_model(ModelSpec(family, depth), settings, input_shape=(1,), n_classes=1)


def line_inputs(points: int = POINTS) -> np.ndarray:
    return np.linspace(*X_RANGE, points)


def input_gradients(net: Net, x: np.ndarray) -> np.ndarray:
    """df/dx at every input. With batch norm the statistics are those of the whole line (as in
    training mode), then frozen, so each input's gradient is its own and not mixed with the
    others' through the batch statistics."""
    xt = torch.as_tensor(x, dtype=next(net.parameters()).dtype).reshape(-1, 1)
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bns:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: after one batch, exactly its statistics
        net.train()
        with torch.no_grad():
            net(xt)
    net.eval()
    xt.requires_grad_(True)
    net(xt).sum().backward()
    return xt.grad.reshape(-1).double().numpy()


def neighbour_correlation(grad: np.ndarray) -> float:
    """Pearson correlation between the gradients at neighbouring inputs: 1 for a smooth curve,
    0 for white noise."""
    a, b = grad[:-1], grad[1:]
    if a.std() == 0 or b.std() == 0:
        return 1.0  # a constant gradient (a linear function) is perfectly correlated
    return float(np.corrcoef(a, b)[0, 1])


@dataclass(frozen=True)
class ShatteredResult:
    depths: tuple[int, ...]
    correlation: dict[str, list[list[float]]]  # family -> [depth index][seed index]
    curves: dict[str, list[float]]  # "plain-4": gradient at each input (first seed)
    x: list[float]

    def mean_correlation(self, family: str) -> np.ndarray:
        return np.array([np.mean(c) for c in self.correlation[family]])

    def to_dict(self) -> dict[str, Any]:
        return {"depths": list(self.depths), "correlation": self.correlation, "curves": self.curves, "x": self.x}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ShatteredResult":
        return cls(tuple(d["depths"]), d["correlation"], d["curves"], d["x"])


def shattered_gradients(depths=DEFAULT_DEPTHS, seeds=DEFAULT_SEEDS, width: int = DEFAULT_WIDTH, norm: str = "batch",
                        block: str = "post", branch_layers: int = DEFAULT_BRANCH_LAYERS, points: int = POINTS,
                        on_depth: Callable[["ShatteredResult", int], None] | None = None) -> ShatteredResult:
    """Neighbour correlation of df/dx for plain and residual nets of each depth, each seed;
    gradient curves of the shallowest and deepest plain net and the deepest residual net.
    ``on_depth(partial_result, depths_left)`` is called after each depth (a live chart)."""
    base = scalar_settings(width, norm, block, branch_layers)
    depths = check_depths(depths, base)
    check_memory(depths, width, norm, block, branch_layers, points)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise SettingsError("seeds: give at least one")
    x = line_inputs(points)
    correlation: dict[str, list[list[float]]] = {"plain": [], "resnet": []}
    curves: dict[str, list[float]] = {}
    shown = {("plain", depths[0]), ("plain", depths[-1]), ("resnet", depths[-1])}
    for i, depth in enumerate(depths):
        for family in ("plain", "resnet"):
            row = []
            for seed in seeds:
                grad = input_gradients(scalar_net(family, depth, base.with_changes(seed=seed)), x)
                row.append(neighbour_correlation(grad))
                if seed == seeds[0] and (family, depth) in shown:
                    curves[f"{family}-{depth}"] = [float(f"{g:.5g}") for g in grad]  # 5 digits: JSON stays small
            correlation[family].append(row)
        if on_depth is not None:
            on_depth(ShatteredResult(depths[:i + 1], correlation, curves, [float(v) for v in x]), len(depths) - i - 1)
    return ShatteredResult(depths, correlation, curves, [float(v) for v in x])


def shattered_job(args: dict[str, Any], report: Callable[[dict[str, Any] | None], None]) -> dict[str, Any]:
    """The computation as a job of ``resnet_core.scheduling.job_pool.JobPool``: JSON in, JSON out, progress as it goes."""
    def on_depth(partial: ShatteredResult, left: int) -> None:
        done = len(partial.depths)
        report({"progress": done / (done + left), "result": partial.to_dict()})

    return shattered_gradients(on_depth=on_depth, **args).to_dict()
