"""What the + x does to the signal: the signal propagation plot (Brock, De & Smith 2021) and the
singular values of the block stack's Jacobian (dynamical isometry: Saxe et al. 2014; Pennington,
Schoenholz & Ganguli 2017), measured on a fixed probe batch (``compute.py``) at step 0 and at the
analysis cadence. Here, without torch: the probe's size and what a panel or a lesson reads of the
tables (``records.tables.SIGNAL_COLUMNS``, ``JACOBIAN_COLUMNS``).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

SIGNAL_POINTS = 256      # the probe batch of the signal plot: the first training points
SIGNAL_FLOATS = 1 << 20  # ... fewer where one point is big (a CNN's feature maps)
JACOBIAN_POINTS = 16     # probe points whose Jacobians' singular values are medianed
JACOBIAN_WIDTH = 512     # the exact Jacobian is width x width: MLPs up to this width


def growth_per_block(signal: pd.DataFrame, model: str, step: int | None = None) -> float:
    """The stream's variance from the first block's output to the last, as a geometric mean factor
    per block (at ``step``, default the first recorded): about 2 for He init without normalisation
    (Var(x + F(x)) = 2 Var(x)), 1 for a stack of identities."""
    rows = _at(signal, model, step)
    if len(rows) < 2:
        return math.nan
    v = rows["variance"].to_numpy(float)
    if not (np.isfinite(v).all() and (v > 0).all()):
        return math.inf if np.isinf(v).any() or (v[-1:] > 0).all() else math.nan
    return float(np.exp(np.log(v[-1] / v[0]) / (len(v) - 1)))


def isometry_share(jacobian: pd.DataFrame, model: str, step: int | None = None) -> float:
    """The share of the Jacobian's singular values within a decade of 1 (from 0.1 to 10; at ``step``,
    default the first recorded): 1 for an isometry (a stack of identities); a deep plain ReLU stack
    spreads them over decades, so few stay there (Pennington et al. 2017). NaN with none recorded."""
    rows = _at(jacobian, model, step)
    s = rows["singular_value"].to_numpy(float)
    if not len(s):
        return math.nan
    return float(np.mean((s >= 0.1) & (s <= 10.0)))


def _at(frame: pd.DataFrame, model: str, step: int | None) -> pd.DataFrame:
    rows = frame[frame["model"] == model]
    if not len(rows):
        return rows
    at = int(rows["step"].min()) if step is None else step
    return rows[rows["step"] == at]
