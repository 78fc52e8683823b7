"""Blocks that refine: the block lens (Jastrzębski et al. 2018, "Residual connections encourage
iterative inference"; the "logit lens" of transformer interpretability). The trained head, with its
normalisation, applied to the output of every block whose output the head can read (the blocks of
the last stage), on the training points the evaluation uses (``compute.py``). Here, without torch:
what a panel or a lesson reads of ``records.tables.LENS_COLUMNS``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def lens_at(lens: pd.DataFrame, model: str, step: int | None = None) -> pd.DataFrame:
    """One model's lens at ``step`` (default: the latest recorded), by block."""
    rows = lens[lens["model"] == model]
    if not len(rows):
        return rows
    at = int(rows["step"].max()) if step is None else step
    return rows[rows["step"] == at].sort_values("block")


def middle_error(lens: pd.DataFrame, model: str, step: int | None = None) -> float:
    """The lens's training error at the middle block of those read (NaN with none)."""
    rows = lens_at(lens, model, step)
    if not len(rows):
        return math.nan
    return float(rows["train_error"].iloc[len(rows) // 2])
