"""The loss landscape around a trained net (Li, Xu, Taylor, Studer, Goldstein 2018, arXiv 1712.09913).

A random Gaussian direction in weight space is rescaled filter by filter to the norm of the
trained filter (for a linear layer: the weights into one neuron), with every bias and batch-norm
entry zeroed, so that a step of 1 along it changes each filter by as much as the filter itself
and the scale invariance that batch norm gives each filter cannot fake a flat or a sharp picture.
The loss is then evaluated at theta + a*d1 (+ b*d2) on a grid over [-1, 1]. Without skips the
surface turns chaotic with depth; with skips it stays nearly convex.

Evaluation is in eval mode (batch norm with its running statistics), on a fixed subset of the
training points, as in the paper's code.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from resnet_core.training.tensors import Dataset, load_dataset
from resnet_core.analysis.landscape import COARSE, LINE_POINTS, SPAN, twin_depth, twin_settings
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.nets import mlp_stack
from resnet_core.nets.models import Net
from resnet_core.settings import Settings, SettingsError

LOSS_POINTS = 1024  # training points the loss is measured on: enough for a smooth estimate
IMAGE_LOSS_POINTS = 256  # images cost far more per point; a grid must still come back in class time


# ------------------------------------------------------------------------------ directions

def weight_parameters(net: Net) -> list[torch.nn.Parameter]:
    """The parameters a direction moves: weight matrices and filters (biases and batch-norm
    entries are one-dimensional and the paper's directions leave them at zero)."""
    return [p for p in net.parameters() if p.dim() > 1]


def filter_normalized_direction(net: Net, seed: int) -> list[torch.Tensor]:
    """One random direction, one tensor per ``net.parameters()`` entry: Gaussian, then each
    filter (dim 0 of a weight: an output channel, or the weights into one neuron) rescaled to
    the norm of the same filter of the net; zeros for biases and batch-norm parameters."""
    gen = torch.Generator().manual_seed(int(seed))
    direction = []
    for p in net.parameters():
        if p.dim() <= 1:
            direction.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
        d_norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)
        p_norm = p.detach().flatten(1).norm(dim=1)
        direction.append(d * (p_norm / d_norm).view(-1, *([1] * (p.dim() - 1))))
    return direction


# ------------------------------------------------------------------------------ evaluation

class _Perturbed:
    """Moves a net's weights to theta + a*d1 + b*d2 and back, with a few foreach calls per
    point (a 56-layer net has over a hundred tensors: a Python loop per tensor would dominate)."""

    def __init__(self, net: Net, d1: list[torch.Tensor], d2: list[torch.Tensor] | None):
        moved = [i for i, p in enumerate(net.parameters()) if p.dim() > 1]
        params = list(net.parameters())
        self.params = [params[i] for i in moved]
        self.theta = [p.detach().clone() for p in self.params]
        self.d1 = [d1[i] for i in moved]
        self.d2 = [d2[i] for i in moved] if d2 is not None else None

    @torch.no_grad()
    def move(self, a: float, b: float = 0.0) -> None:
        torch._foreach_copy_(self.params, self.theta)
        if a:
            torch._foreach_add_(self.params, self.d1, alpha=a)
        if b and self.d2 is not None:
            torch._foreach_add_(self.params, self.d2, alpha=b)

    @torch.no_grad()
    def restore(self) -> None:
        torch._foreach_copy_(self.params, self.theta)


@torch.no_grad()
def mean_loss(net: Net, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(F.cross_entropy(mlp_stack.forward(net, x), y))


def grid_coordinates(n: int, span: float = SPAN) -> np.ndarray:
    """n points over [-span, span] whose middle one is exactly 0 (so the grid's centre is the
    trained net itself, not a rounding error away from it)."""
    if n < 3 or n % 2 == 0:
        raise SettingsError(f"grid size must be an odd number of at least 3 (got {n})")
    half = (n - 1) // 2
    return np.arange(-half, half + 1) / half * span


def loss_line(net: Net, x: torch.Tensor, y: torch.Tensor, direction: list[torch.Tensor],
              n: int = LINE_POINTS, span: float = SPAN) -> tuple[np.ndarray, np.ndarray]:
    """Loss at theta + a*d for a over [-span, span]."""
    alphas = grid_coordinates(n, span)
    was = net.training
    net.eval()
    moved = _Perturbed(net, direction, None)
    try:
        losses = []
        for a in alphas:
            moved.move(float(a))
            losses.append(mean_loss(net, x, y))
    finally:
        moved.restore()
        net.train(was)
    return alphas, np.array(losses)


def loss_surface(net: Net, x: torch.Tensor, y: torch.Tensor, d1: list[torch.Tensor], d2: list[torch.Tensor],
                 n: int = COARSE, span: float = SPAN,
                 on_row: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss at theta + a*d1 + b*d2 on an n x n grid: ``loss[j, i]`` is at (alpha[i], beta[j])."""
    coords = grid_coordinates(n, span)
    was = net.training
    net.eval()
    moved = _Perturbed(net, d1, d2)
    grid = np.empty((n, n))
    try:
        for j, b in enumerate(coords):
            for i, a in enumerate(coords):
                moved.move(float(a), float(b))
                grid[j, i] = mean_loss(net, x, y)
            if on_row is not None:
                on_row(j + 1, n)
    finally:
        moved.restore()
        net.train(was)
    return coords, coords.copy(), grid


# ------------------------------------------------------------------------------ roughness

def roughness(grid: np.ndarray) -> dict[str, float]:
    """How far a loss surface (or line) is from a single smooth bowl, in numbers a caption can quote.

    - ``loss_range``: max - min over the grid (in loss units).
    - ``nonconvex_fraction``: share of interior points where the surface curves down in some
      direction: the smaller eigenvalue of the finite-difference Hessian is negative and at least
      10 % of the larger one in size (Li et al. map |lambda_min / lambda_max| the same way).
    - ``local_minima``: interior points lower than all their neighbours (a bowl has one).
    """
    g = np.asarray(grid, float)
    if g.ndim == 1:
        g = g[None, :]
    finite = g[np.isfinite(g)]
    out = {"loss_range": float(finite.max() - finite.min()) if finite.size else float("nan")}
    if g.shape[0] >= 3:
        fxx = g[1:-1, 2:] - 2 * g[1:-1, 1:-1] + g[1:-1, :-2]
        fyy = g[2:, 1:-1] - 2 * g[1:-1, 1:-1] + g[:-2, 1:-1]
        fxy = (g[2:, 2:] - g[2:, :-2] - g[:-2, 2:] + g[:-2, :-2]) / 4
        mean, diff = (fxx + fyy) / 2, np.sqrt(((fxx - fyy) / 2) ** 2 + fxy**2)
        lo, hi = mean - diff, mean + diff
        bent_down = (lo < 0) & (np.abs(lo) >= 0.1 * np.maximum(np.abs(hi), 1e-12))
        centre = g[1:-1, 1:-1]
        neighbours = np.stack([g[1 + dy:g.shape[0] - 1 + dy, 1 + dx:g.shape[1] - 1 + dx]
                               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
        minima = (centre < neighbours.min(0)).sum()
    else:
        second = g[0, 2:] - 2 * g[0, 1:-1] + g[0, :-2]
        bent_down = second < -0.1 * np.abs(second).max() if second.size else np.zeros(0, bool)
        minima = ((g[0, 1:-1] < g[0, :-2]) & (g[0, 1:-1] < g[0, 2:])).sum()
    out["nonconvex_fraction"] = float(np.mean(bent_down)) if np.size(bent_down) else 0.0
    out["local_minima"] = int(minima)
    return out


# ---------------------------------------------------------------------- the twins and the job

def train_twins(settings: Settings, depth: int | None = None, steps: int | None = None,
                data: Dataset | None = None, on_step: Callable[[int, int], None] | None = None) -> dict[str, Net]:
    """plain-D and resnet-D trained together (same batches, same initial weights) for ``steps``
    (None: the settings' steps; 0: left as initialised)."""
    depth = depth or twin_depth(settings)
    steps = settings.steps if steps is None else int(steps)
    trainer = LockstepTrainer(twin_settings(settings, depth, steps), data=data)
    if steps > 0:
        trainer.run(on_step=(lambda t: on_step(t.step, steps)) if on_step else None)
    return trainer.models


def loss_batch(data: Dataset, device: torch.device, points: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed training points every grid point's loss is measured on."""
    points = points or (IMAGE_LOSS_POINTS if data.is_image else LOSS_POINTS)
    return data.x_train[:points].to(device), data.y_train[:points].to(device)


@dataclass
class Landscape:
    """One model's view: the line, the grid, the loss at the trained weights and its roughness."""
    model: str
    centre_loss: float
    line_alpha: list[float]
    line_loss: list[float]
    alpha: list[float]
    beta: list[float]
    loss: list[list[float]]
    roughness: dict[str, float]
    line_roughness: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def landscape_of(net: Net, x: torch.Tensor, y: torch.Tensor, grid: int = COARSE, line: int = LINE_POINTS,
                 seed: int = 0, on_row: Callable[[int, int], None] | None = None) -> Landscape:
    d1 = filter_normalized_direction(net, seed)
    d2 = filter_normalized_direction(net, seed + 1)
    la, ll = loss_line(net, x, y, d1, line)
    a, b, g = loss_surface(net, x, y, d1, d2, grid, on_row=on_row)
    net.eval()
    centre = mean_loss(net, x, y)
    return Landscape(net.name, centre, la.tolist(), _finite(ll), a.tolist(), b.tolist(),
                     [_finite(row) for row in g], roughness(g), roughness(ll))


def _finite(values) -> list[float | None]:
    """JSON has no NaN or infinity: a loss that overflowed is None (a gap in the chart)."""
    return [float(v) if np.isfinite(v) else None for v in values]


# Trained twins kept by the process that trained them, so "Refine" does not train again.
_TRAINED: dict[str, dict[str, Net]] = {}


def landscape_job(args: dict[str, Any], report: Callable[[dict[str, Any] | None], None]) -> dict[str, Any]:
    """A job for ``resnet_core.scheduling.job_pool.JobPool``: train the twins (or reuse them), then each one's line and grid.
    args: settings (dict), depth, steps, grid, line, seed. Reports progress and each model's
    landscape as soon as it is ready."""
    settings = Settings.from_dict(args["settings"])
    depth = int(args.get("depth") or twin_depth(settings))
    steps = settings.steps if args.get("steps") is None else int(args["steps"])
    grid, line, seed = int(args.get("grid", COARSE)), int(args.get("line", LINE_POINTS)), int(args.get("seed", 0))
    key = json.dumps([settings.to_dict(), depth, steps], sort_keys=True)
    nets = _TRAINED.get(key)
    train_share = 0.0 if nets is not None or steps == 0 else 0.5  # of the progress bar
    data = load_dataset(settings.dataset, settings.dataset_args)

    def on_step(step: int, total: int) -> None:  # a report every 25 steps, a place to pause at each
        report({"stage": "training", "progress": train_share * step / total} if step % 25 == 0 else None)

    if nets is None:
        report({"stage": "training", "progress": 0.0})
        nets = train_twins(settings, depth, steps, data=data, on_step=on_step)
        _TRAINED.clear()  # one pair at a time: a worker should not grow with every setting tried
        _TRAINED[key] = nets
    x, y = loss_batch(data, next(next(iter(nets.values())).parameters()).device)
    out: dict[str, Any] = {"depth": depth, "steps": steps, "grid": grid, "models": {}}
    for k, (name, net) in enumerate(nets.items()):
        def on_row(done: int, total: int, k: int = k) -> None:
            share = (k + done / total) / len(nets)
            report({"stage": "landscape", "progress": train_share + (1 - train_share) * share})
        view = landscape_of(net, x, y, grid=grid, line=line, seed=seed, on_row=on_row)
        out["models"][name] = view.to_dict()
        report({"stage": "landscape", "model": name, "landscape": view.to_dict()})
    return out
