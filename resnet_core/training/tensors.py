"""Data sets as torch tensors: the loaders' numpy ``Arrays`` (``resnet_core.data``) made ready to train.

Only the training side imports this module; the dashboard's server works with ``Arrays`` alone.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from resnet_core.data import Arrays, DataError, load_arrays, points_csv_arrays


@dataclass(frozen=True, eq=False)  # eq=False: == on tensors is element-wise, so compare datasets by identity
class Dataset:
    name: str
    x_train: torch.Tensor  # float32; (N, 2) for 2D points, (N, C, H, W) for images
    y_train: torch.Tensor  # int64 labels 0..n_classes-1
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    class_names: tuple[str, ...] = ()  # optional display names; filled with "0", "1", ... when empty

    def __post_init__(self) -> None:
        # Catch a malformed dataset here, where the cause is obvious, not deep inside a training step.
        problems = []
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.dtype != torch.float32 or x.ndim not in (2, 4):
                problems.append(f"x_{part} must be float32 with 2 or 4 dims, got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.ndim != 1 or len(y) != len(x):
                problems.append(f"y_{part} must be int64 with one label per row of x_{part}")
            elif len(y) and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
                problems.append(f"y_{part} has labels outside 0..{self.n_classes - 1}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            problems.append("x_train and x_test must have the same input shape")
        if self.n_classes < 2:
            problems.append("n_classes must be at least 2")
        if not self.class_names:
            object.__setattr__(self, "class_names", tuple(str(i) for i in range(self.n_classes)))
        elif len(self.class_names) != self.n_classes:
            problems.append("class_names must have one name per class")
        if problems:
            raise DataError(f"dataset {self.name!r} is malformed: " + "; ".join(problems))

    @property
    def is_image(self) -> bool:
        return self.x_train.ndim == 4

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])



def to_dataset(a: Arrays) -> Dataset:
    """The arrays as a Dataset of tensors (float32 inputs, int64 labels), without copying where possible."""
    def tensor(x: np.ndarray, dtype: type) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=dtype))

    return Dataset(a.name, tensor(a.x_train, np.float32), tensor(a.y_train, np.int64),
                   tensor(a.x_test, np.float32), tensor(a.y_test, np.int64), int(a.n_classes), tuple(a.class_names))


def load_dataset(name: str, args: Mapping[str, object] | None = None) -> Dataset:
    """The named dataset, built from `args` (missing keys take the spec's defaults)."""
    return to_dataset(load_arrays(name, args))


def load_points_csv(source: str | os.PathLike | bytes, *, test_fraction: float = 0.2, data_seed: int = 0) -> Dataset:
    """Points from a CSV with a header naming x1, x2 and label (other columns are ignored). Labels may
    be whole numbers or text; either way they become 0..K-1 in sorted order."""
    return to_dataset(points_csv_arrays(source, test_fraction=test_fraction, data_seed=data_seed))
