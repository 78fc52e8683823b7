"""The unrolled view (Veit et al. 2016), computed exactly: how much gradient flows through paths
of each length.

A residual stack x_{i+1} = c(s_i(x_i) + F_i(x_i)) has the Jacobian  prod_i D_i (S_i + J_i), where
S_i is the skip (identity, projection or zero-padding), J_i the branch's Jacobian and D_i the ReLU
after the addition in original (post-activation) blocks, the identity in pre-activation ones.
Multiplied out it is a sum over 2^n paths, one per choice of skip or branch at each block.
Grouping the paths by how many branches k they pass through splits the gradient at the input
of the stack into  g = sum_k g_k,  and going backwards block by block

    g_k  <-  S_i^T D_i g_k  +  J_i^T D_i g_{k-1}

computes every g_k at once: one batched vector-Jacobian product per block, over k = 0..K.

What the gradient is of: the mean cross-entropy of the probe batch, L = CE(net(x), y), and
g = dL/dx_0 at x_0 = net.features(x), the input of the block stack. BN is in eval mode (a fixed
affine map per channel, so each point's Jacobian is its own). By default its statistics are the
probe batch's own (``bn="probe"``): the forward pass is then exactly the one training sees on
that batch, and running averages that lag a deep net's weights cannot blow the analysis up;
``bn="eval"`` uses the running averages as they are. The decomposition is exact for that
linearisation and is checked against autograd's gradient in the same call (``residual``).
"""
from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from resnet_core.analysis.paths.adjoints import Linearisation, frozen_batch_norm, linearise
from resnet_core.nets.models import Net
from resnet_core.analysis.paths import RANGE_MASS, log10_path_counts, path_counts, shortest_range

DEFAULT_TOL = 1e-4    # lengths beyond the cutoff may change the sum by at most this, relative to |g|
PROBE_POINTS = 256    # the live analysis's probe batch: the first training points ...
PROBE_FLOATS = 65536  # ... fewer where a point is big: 64 digit images, 16 CIFAR images (CNN stem width 16)
PILOT_POINTS = 16     # a first pass on this many probe points picks the cutoff for the full batch
FULL_BELOW = 48       # up to this many blocks every length is computed: one pass beats a search for K


_flushing = threading.local()  # nesting depth per thread (the CPU flag is per thread)


@contextlib.contextmanager
def flushed_denormals() -> Iterator[None]:
    """Long paths carry tiny numbers; subnormal floats are some 100x slower on x86 (measured: a
    cutoff of 62 on 500 blocks took 5x the time of 41). Flushing them to zero changes nothing a
    chart or the 1e-5 check can see. (torch has no getter: PyTorch's default, off, is restored
    when the outermost of nested blocks ends.)"""
    depth = getattr(_flushing, "depth", 0)
    if depth == 0:
        torch.set_flush_denormal(True)
    _flushing.depth = depth + 1
    try:
        yield
    finally:
        _flushing.depth = depth
        if depth == 0:
            torch.set_flush_denormal(False)


# ---- the exact decomposition ------------------------------------------------------------------
def decompose(lin: Linearisation, cutoff: int) -> torch.Tensor:
    """g_0 .. g_K (K = cutoff) as one tensor of shape (K + 1, *x0.shape). Paths through more than
    K branches are left out; they only ever feed g_{K+1} and beyond, so g_0 .. g_K are exact."""
    capacity = cutoff + 1
    terms = lin.top.new_zeros((capacity, *lin.top.shape))
    terms[0] = lin.top
    count = 1  # terms[:count] hold g_0 .. g_{count-1} at the current block's output
    for block in reversed(lin.blocks):
        gated = block.gate(terms[:count], in_place=True)  # D g_k: the ReLU after the addition
        through = count if count < capacity else count - 1  # g_K through a branch would be g_{K+1}
        if block.identity_skip:  # g_k stays where it is; J^T D g_{k-1} is added onto it
            block.branch_T(gated[:through], into=terms[1:through + 1])
        else:  # a projection or padding: the terms change shape here
            new = gated.new_zeros((capacity, *block.in_shape))
            new[:count] = block.skip_T(gated)
            block.branch_T(gated[:through], into=new[1:through + 1])
            terms = new
        count = through + 1
    return terms[:count]


@dataclass(frozen=True)
class PathGradients:
    """g = sum_k g_k at the input of the block stack, for k = 0 .. cutoff."""

    blocks: int              # n: 2^n paths
    grad_norm: np.ndarray    # |g_k|, k = 0 .. cutoff
    residual: float          # |sum_k g_k - g| / |g| against autograd (float error + what the cutoff left out)
    total_norm: float        # |g|
    loss: float
    terms: torch.Tensor | None = None     # the g_k themselves (keep_terms=True)
    gradient: torch.Tensor | None = None  # autograd's g (keep_terms=True)

    @property
    def cutoff(self) -> int:
        return len(self.grad_norm) - 1

    @property
    def exact(self) -> bool:
        """Every length is in: nothing was cut off."""
        return self.cutoff >= self.blocks

    @property
    def lengths(self) -> np.ndarray:
        return np.arange(len(self.grad_norm))

    @property
    def n_paths(self) -> np.ndarray:
        return path_counts(self.blocks)[: len(self.grad_norm)]

    @property
    def share(self) -> np.ndarray:
        total = self.grad_norm.sum()
        return self.grad_norm / total if total > 0 else np.full_like(self.grad_norm, np.nan)

    @property
    def mean_length(self) -> float:
        """Gradient-weighted mean path length, sum_k k |g_k| / sum_k |g_k|."""
        return float((self.lengths * self.share).sum())

    @property
    def binomial_mean(self) -> float:
        """Mean length of all 2^n paths, each counted once: n / 2."""
        return self.blocks / 2

    def length_range(self, mass: float = RANGE_MASS) -> tuple[int, int]:
        return shortest_range(self.share, mass)

    def rows(self, step: int, model: str) -> list[dict[str, Any]]:
        """Rows for ``RunRecord.add_paths`` (records.PATH_COLUMNS)."""
        return [{"step": int(step), "model": model, "length": int(k), "n_paths": float(c), "grad_norm": float(g),
                 "share": float(s), "residual": float(self.residual)}
                for k, c, g, s in zip(self.lengths, self.n_paths, self.grad_norm, self.share)]


def path_gradients(net: Net, x: torch.Tensor, y: torch.Tensor, *, tol: float = DEFAULT_TOL,
                   start_length: int | None = None, max_length: int | None = None, bn: str = "probe",
                   keep_terms: bool = False) -> PathGradients:
    """The exact path-length decomposition of dL/dx_0 on the probe batch (x, y).

    The cutoff K starts at ``start_length`` (e.g. the last call's, ``next_start_length``); without
    one, at every length up to FULL_BELOW blocks, and deeper where a pilot on a few probe points
    settles. It grows by half until the lengths left out change the sum by less than
    ``tol`` relative to |g| and the last length kept holds less than ``tol`` of sum_k |g_k|, or
    every length is in. ``max_length`` caps K (``residual`` then says honestly what was left out);
    ``tol=0`` asks for all n + 1 lengths. ``keep_terms`` keeps the g_k and autograd's g."""
    with _frozen(net, bn):
        return _exact(linearise(net, x, y, bn == "probe"), tol, start_length, max_length, keep_terms)


@contextlib.contextmanager
def _frozen(net: Net, bn: str) -> Iterator[None]:
    """BN frozen (the probe's statistics are set by ``linearise``), no autograd graph, no subnormals."""
    if bn not in ("probe", "eval"):
        raise ValueError(f"bn must be 'probe' or 'eval' (got {bn!r})")
    with frozen_batch_norm(net), torch.no_grad(), flushed_denormals():
        yield


def _exact(lin: Linearisation, tol: float, start_length: int | None, max_length: int | None,
           keep_terms: bool = False) -> PathGradients:
    n = len(lin.blocks)
    cap = n if max_length is None else max(0, min(n, max_length))
    if tol <= 0:
        cutoff = cap
    elif start_length is not None:
        cutoff = min(cap, max(1, start_length))
    elif n <= FULL_BELOW:
        cutoff = cap
    elif lin.top.shape[0] <= 2 * PILOT_POINTS:
        cutoff = min(cap, 16)
    else:  # a pilot on a few of the points finds the cutoff cheaply; the whole batch checks it
        cutoff = _grow(lin.restricted(PILOT_POINTS), min(cap, 8), cap, tol)[0]
    cutoff, terms, norms, residual = _grow(lin, cutoff, cap, tol)
    return PathGradients(n, norms, residual, float(lin.gradient.norm()), lin.loss,
                         terms if keep_terms else None, lin.gradient if keep_terms else None)


def next_start_length(result: PathGradients, tol: float = DEFAULT_TOL) -> int:
    """Where the next analysis of the same net should start its cutoff: a little past the last
    length that still mattered, so that it neither regrows from scratch nor keeps dead lengths."""
    share = result.share
    alive = np.nonzero(np.nan_to_num(share) > tol / 10)[0]
    return int(min(result.cutoff, (alive[-1] if len(alive) else 0) + 2)) if result.cutoff else 1


def _grow(lin: Linearisation, cutoff: int, cap: int, tol: float):
    """Decompose with ``cutoff``, raising it by half until what is left out is below tol."""
    g = lin.gradient
    g_norm = float(g.norm())
    while True:
        terms = decompose(lin, cutoff)
        norms = terms.flatten(1).norm(dim=1).double().cpu().numpy()
        residual = float((terms.sum(0) - g).norm()) / g_norm if g_norm > 0 else 0.0
        settled = residual <= tol and norms[-1] <= tol * norms.sum()
        if cutoff >= cap or settled or not math.isfinite(residual):
            return cutoff, terms, norms, residual
        cutoff = min(cap, max(cutoff + 1, math.ceil(cutoff * 1.5)))


# ---- Veit et al.'s sampled estimate ------------------------------------------------------------
@dataclass(frozen=True)
class SampledPaths:
    """Gradient through single random paths of length k (Veit et al. 2016, Fig. 6): k branches
    drawn at random, skips everywhere else, the norm of what arrives at x_0."""

    blocks: int
    lengths: np.ndarray          # the lengths sampled
    log10_path_norm: np.ndarray  # log10 of the mean per-path gradient norm at each length
    samples: int                 # paths drawn per length

    @property
    def path_norm(self) -> np.ndarray:
        return 10.0 ** self.log10_path_norm  # may underflow to 0 for very long paths: nothing flows there

    @property
    def n_paths(self) -> np.ndarray:
        return path_counts(self.blocks)[self.lengths]

    @property
    def total(self) -> np.ndarray:
        """Veit et al.'s "gradient through paths of length k": per-path magnitude x number of paths
        (no cancellation between paths counted; the exact |g_k| can only be smaller)."""
        with np.errstate(over="ignore"):
            return 10.0 ** (self.log10_path_norm + log10_path_counts(self.blocks)[self.lengths])

    @property
    def decay_per_branch(self) -> float:
        """Factor by which one more branch multiplies a path's gradient (least-squares fit in log)."""
        ok = np.isfinite(self.log10_path_norm)
        if ok.sum() < 2:
            return math.nan
        slope = np.polyfit(self.lengths[ok], self.log10_path_norm[ok], 1)[0]
        return float(10.0 ** slope)


def default_sample_lengths(n: int, count: int = 41) -> np.ndarray:
    return np.arange(n + 1) if n < count else np.unique(np.linspace(0, n, count).round().astype(int))


def sampled_path_norms(net: Net, x: torch.Tensor, y: torch.Tensor, *, lengths=None, samples: int = 8,
                       points: int = 32, seed: int = 0, bn: str = "probe") -> SampledPaths:
    """Veit et al.'s estimate on the probe batch (x, y): for each length, ``samples`` random paths,
    measured on the first ``points`` probe points (see ``sample_paths``)."""
    with _frozen(net, bn):
        return sample_paths(linearise(net, x, y, bn == "probe"), lengths=lengths, samples=samples, points=points,
                            seed=seed)


def sample_paths(lin: Linearisation, *, lengths=None, samples: int = 8, points: int = 32, seed: int = 0) -> SampledPaths:
    """Per-path gradient norms on a linearisation, for ``samples`` random paths of each length.

    They are measured on the first ``points`` probe points and scaled by sqrt(batch / points) to
    the whole batch, so that per-path x count sits on the same scale as the exact |g_k|. Norms are
    carried as logarithms: a path through hundreds of branches underflows any float."""
    n = len(lin.blocks)
    lengths = default_sample_lengths(n) if lengths is None else np.asarray(sorted({int(k) for k in lengths}))
    if len(lengths) == 0 or lengths.min() < 0 or lengths.max() > n:
        raise ValueError(f"lengths must lie in 0..{n}")
    gen = torch.Generator().manual_seed(seed)
    choice = torch.zeros(len(lengths) * samples, n, dtype=torch.bool)  # path p passes through branch i
    for row, k in enumerate(np.repeat(lengths, samples)):
        choice[row, torch.randperm(n, generator=gen)[:k]] = True
    batch = lin.top.shape[0]
    lin = lin.restricted(min(points, batch))
    m = lin.top.shape[0]
    log_norm = torch.zeros(len(choice), dtype=torch.float64)
    with torch.no_grad(), flushed_denormals():
        u = lin.top.unsqueeze(0).repeat(len(choice), *([1] * lin.top.ndim))
        for i in reversed(range(n)):
            block = lin.blocks[i]
            gated = block.gate(u)
            new = block.skip_T(gated)
            new = new.clone() if new is gated or new is u else new
            picked = choice[:, i].nonzero().squeeze(1).to(u.device)
            if len(picked):
                new[picked] = block.branch_T(gated[picked])
            if i % 8 == 0:  # renormalise now and then, keeping the scale as a logarithm
                scale = new.flatten(1).norm(dim=1)
                log_norm += torch.log(scale.double()).cpu()
                new = new / scale.clamp_min(torch.finfo(new.dtype).tiny).reshape(-1, *([1] * (new.ndim - 1)))
            u = new
        log_norm += torch.log(u.flatten(1).norm(dim=1).double()).cpu()
    per_path = log_norm.reshape(len(lengths), samples).numpy() + 0.5 * math.log(batch / m)
    with np.errstate(divide="ignore"):
        mean = np.logaddexp.reduce(per_path, axis=1) - math.log(samples)
    return SampledPaths(n, lengths, mean / math.log(10), samples)


def analyse_paths(net: Net, x: torch.Tensor, y: torch.Tensor, *, tol: float = DEFAULT_TOL,
                  start_length: int | None = None, samples: int = 4, sample_points: int | None = None, seed: int = 0,
                  bn: str = "probe") -> tuple[PathGradients, SampledPaths]:
    """Both views from one linearisation: the exact decomposition, and Veit et al.'s sampled
    per-path norms at the lengths it kept (what the live panel shows). By default the sampled
    estimate uses as many probe points as keep its cost to about half the exact one's."""
    with _frozen(net, bn):
        lin = linearise(net, x, y, bn == "probe")
        exact = _exact(lin, tol, start_length, None)
        lengths = default_sample_lengths(exact.cutoff)
        if sample_points is None:
            sample_points = max(4, len(x) * (exact.cutoff + 1) // (2 * len(lengths) * samples))
        return exact, sample_paths(lin, lengths=lengths, samples=samples, points=sample_points, seed=seed)


def probe_points(net: Net, x: torch.Tensor) -> int:
    """How many of the points x the live analysis uses: PROBE_POINTS, or fewer where each is big
    at the input of the block stack (the cost is points x features x lengths)."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        features = net.features(x[:1]).numel()
    net.train(was_training)
    return int(max(16, min(PROBE_POINTS, PROBE_FLOATS // max(features, 1), len(x))))


def rows_for_record(exact: PathGradients, sampled: SampledPaths | None, step: int, model: str) -> list[dict[str, Any]]:
    """``RunRecord.add_paths`` rows (records.PATH_COLUMNS), plus ``path_norm``: the sampled mean
    per-path norm at that length (NaN where not sampled), for a record that keeps it."""
    per_path = {} if sampled is None else dict(zip(sampled.lengths.tolist(), sampled.path_norm.tolist()))
    rows = exact.rows(step, model)
    for row in rows:
        row["path_norm"] = float(per_path.get(row["length"], math.nan))
    return rows
