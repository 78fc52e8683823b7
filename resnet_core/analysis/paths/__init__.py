"""Counting and summarising the unrolled view's tables, without torch: the number of paths of
each length, the shortest range of lengths holding 90 % of the gradient, and one analysis's
summary. The analysis (resnet_core.analysis.paths.compute) and the dashboard's server, which only draws its
tables, both use these.
"""
from __future__ import annotations

import math

import numpy as np

RANGE_MASS = 0.9  # "the shortest range of lengths holding 90 % of the gradient"


def path_counts(n: int) -> np.ndarray:
    """C(n, k) for k = 0..n, as floats (C(1000, 500) ~ 2.7e299 still fits a float64)."""
    return np.array([float(math.comb(n, k)) for k in range(n + 1)])


def shortest_range(share: np.ndarray, mass: float = RANGE_MASS) -> tuple[int, int]:
    """The shortest run of consecutive lengths (lo, hi), inclusive, whose shares add up to at least
    ``mass``; among equally short runs the one holding the most."""
    share = np.nan_to_num(np.asarray(share, dtype=float))
    total = share.sum()
    if total <= 0:
        return 0, len(share) - 1
    cum = np.concatenate([[0.0], np.cumsum(share / total)])
    best = (0, len(share) - 1)
    best_key = (len(share), -1.0)
    lo = 0
    for hi in range(len(share)):
        while lo < hi and cum[hi + 1] - cum[lo + 1] >= mass - 1e-12:
            lo += 1
        held = cum[hi + 1] - cum[lo]
        if held >= mass - 1e-12:
            key = (hi - lo + 1, -held)
            if key < best_key:
                best, best_key = (lo, hi), key
    return best


def summary_from_rows(rows) -> dict[str, float]:
    """Weighted mean length, 90 % range and n from one analysis's rows (a DataFrame for one
    step and model), so a replayed run is summarised exactly as a live one."""
    lengths = np.asarray(rows["length"], dtype=int)
    order = np.argsort(lengths)
    share = np.asarray(rows["share"], dtype=float)[order]
    lengths = lengths[order]
    counts = np.asarray(rows["n_paths"], dtype=float)[order]
    n = _blocks_from_counts(counts)
    lo, hi = shortest_range(share)
    total = np.nansum(share)
    return {"blocks": n, "mean_length": float(np.nansum(lengths * share) / total) if total > 0 else math.nan,
            "binomial_mean": n / 2, "range_lo": int(lengths[lo]), "range_hi": int(lengths[hi]),
            "residual": float(np.nanmax(np.asarray(rows["residual"], dtype=float))) if len(lengths) else math.nan,
            "cutoff": int(lengths[-1]) if len(lengths) else 0}


def _blocks_from_counts(counts: np.ndarray) -> int:
    """n from C(n, 0), C(n, 1), ...: C(n, 1) = n (a net of one block has counts 1, 1)."""
    return int(round(counts[1])) if len(counts) > 1 else 0
