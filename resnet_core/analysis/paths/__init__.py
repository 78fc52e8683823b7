"""Counting and summarising the unrolled view's tables, without torch: the number of paths of
each length, the shortest range of lengths holding 90 % of the gradient, and one analysis's
summary. The analysis (resnet_core.analysis.paths.compute) and the dashboard's server, which only draws its
tables, both use these.
"""
from __future__ import annotations

import math

import numpy as np

RANGE_MASS = 0.9  # "the shortest range of lengths holding 90 % of the gradient"


def log10_path_counts(n: int) -> np.ndarray:
    """log10 C(n, k) for k = 0..n, counted in log space: finite at any depth (a net of 1,100 blocks
    has C(1100, 550) ~ 1e330 paths of length 550, more than a float64 holds)."""
    top = math.lgamma(n + 1)
    return np.array([(top - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(10) for k in range(n + 1)])


def path_counts(n: int) -> np.ndarray:
    """C(n, k) for k = 0..n, as floats: exact where a float64 holds it (C(1000, 500) ~ 2.7e299), and
    infinite where it does not (the middle lengths past about 1,030 blocks; ``log10_path_counts``)."""
    counts = np.full(n + 1, np.inf)
    for k in np.flatnonzero(log10_path_counts(n) < 308.0):  # a float64 ends at 1.8e308
        counts[k] = float(math.comb(n, int(k)))
    return counts


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
