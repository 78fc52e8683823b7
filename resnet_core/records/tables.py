"""The run folder's tables, as design.md fixes them, and what every part of the record shares: the
columns of each file, the error a folder that is not a run gets, a layer snapshot, the one
definition of a finished run, and the decision maps kept compactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from resnet_core.errors import UserError

if TYPE_CHECKING:  # imported where a table is built (see record.py)
    import pandas as pd

METRIC_COLUMNS = ["step", "model", "train_loss", "train_error", "test_error", "wall_s", "status"]
LAYER_COLUMNS = ["step", "model", "layer", "name", "grad_norm", "act_std", "branch_ratio"]
PATH_COLUMNS = ["step", "model", "length", "n_paths", "grad_norm", "share", "residual"]
PATH_OPTIONAL = ["path_norm"]  # Veit et al.'s sampled per-path magnitude, where it was measured
LESION_COLUMNS = ["model", "block", "train_error"]
REGION_COLUMNS = ["step", "model", "x", "y", "predicted", "confidence"]  # the latest map per model, one row per grid point
# The tables of the analyses recorded at step 0 and at the analysis cadence (``paths_every``), one
# group of rows per (step, model): the signal propagation plot (Brock, De & Smith 2021), the singular
# values of the block stack's Jacobian, and the block lens. Each: step, model, an index, then numbers.
SIGNAL_COLUMNS = ["step", "model", "block", "mean_sq", "variance", "branch_variance"]
JACOBIAN_COLUMNS = ["step", "model", "index", "singular_value"]
LENS_COLUMNS = ["step", "model", "block", "train_error", "train_loss"]
STEP_TABLES = {"signal.csv": SIGNAL_COLUMNS, "jacobian.csv": JACOBIAN_COLUMNS, "lens.csv": LENS_COLUMNS}
RUN_FILES = ("config.json", "metrics.csv", "layers.csv", "paths.csv", "lesion.csv", "regions.csv", *STEP_TABLES,
             "models")  # the folder of trained nets that `train --save-models` adds (records/exported_models.py)


class RecordError(UserError):
    """A run folder that cannot be read; the message names the file and what is wrong."""


def run_finished(step: int, steps: int, status: Mapping[str, str]) -> bool:
    """The one definition of a run that is over: it reached its step count, or every model has
    diverged (status: model -> "ok" or "diverged"; no models yet means not over)."""
    return step >= steps or (bool(status) and all(s != "ok" for s in status.values()))


@dataclass(frozen=True)
class LayerSnapshot:
    step: int
    grad_norm: np.ndarray     # one value per weighted layer, depth order
    act_std: np.ndarray
    branch_ratio: np.ndarray  # NaN where the layer does not end a residual block


@dataclass(frozen=True)
class StoredMap:
    """A decision map kept compactly for the history: classes as small integers and confidences
    (rounded to 3 decimals by the trainer) as thousandths, where that loses nothing."""
    meta: dict[str, Any]
    classes: np.ndarray
    confidence: np.ndarray  # uint16 thousandths, or float64 when the values are not whole thousandths

    @classmethod
    def of(cls, grid: dict[str, Any]) -> "StoredMap":
        meta = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in grid.items()
                if k not in ("classes", "confidence")}
        classes = np.asarray(grid["classes"])
        small = classes.astype(np.uint8)
        confidence = np.asarray(grid["confidence"], dtype=np.float64)
        milli = np.rint(np.clip(np.nan_to_num(confidence), 0, 1) * 1000).astype(np.uint16)
        return cls(meta, small if np.array_equal(small, classes) else classes.astype(np.int64),
                   milli if np.array_equal(milli / 1000, confidence) else confidence)

    def grid(self) -> dict[str, Any]:
        confidence = self.confidence / 1000 if self.confidence.dtype == np.uint16 else self.confidence
        return {**{k: (list(v) if isinstance(v, list) else v) for k, v in self.meta.items()},
                "classes": self.classes.tolist(), "confidence": confidence.tolist()}


def regions_frame(regions: dict[str, tuple[int, dict[str, Any]]]) -> pd.DataFrame:
    import pandas as pd

    frames = []
    for model, (step, grid) in regions.items():
        n = grid["n"]
        xs, ys = np.linspace(*grid["x"], n), np.linspace(*grid["y"], n)
        frames.append(pd.DataFrame({"step": step, "model": model, "x": np.tile(xs, n), "y": np.repeat(ys, n),
                                    "predicted": grid["classes"], "confidence": grid["confidence"]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=REGION_COLUMNS)


def jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
