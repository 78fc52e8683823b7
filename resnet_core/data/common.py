"""Types and helpers shared by the dataset loaders.

The public API is resnet_core.data, which re-exports DataError and Arrays; they live here only so
that the loader modules can use them without importing resnet_core.data (which imports them).

The loaders build numpy ``Arrays``; ``resnet_core.training.tensors`` makes torch tensors of them.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from resnet_core.errors import UserError

class DataError(UserError):
    """A bad dataset name, argument or file. The message is one line: what is wrong and what to do."""


def show(value: object, limit: int = 40) -> str:
    """A short, one-line rendering of a user's value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def stratified_split(y: np.ndarray, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): the test split holds exactly round(N * test_fraction) rows (at least one
    row on each side) and every class in proportion, so a small or unbalanced set is scored fairly."""
    n = len(y)
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * (n_test / n)
    take = np.floor(quota).astype(np.int64)
    # Give the rows lost to rounding down to the classes with the largest remainders: the total is exact.
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n_test - int(take.sum())]] += 1
    train_parts, test_parts = [], []
    for cls, k in zip(classes, take):
        members = rng.permutation(np.flatnonzero(y == cls))
        test_parts.append(members[:k])
        train_parts.append(members[k:])
    # Shuffle again so neither split is sorted by class (the training loop shuffles, but plots and
    # "the first N rows" should not depend on that).
    return rng.permutation(np.concatenate(train_parts)), rng.permutation(np.concatenate(test_parts))


def scale_points(x_train: np.ndarray, x_test: np.ndarray, *, isotropic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Centre on the train mean and divide by the train's largest deviation, so the train points lie in
    [-1, 1] and the test points (scaled with the *train* statistics, as a deployed model would see them)
    roughly so. isotropic=True uses one scale for both axes, which keeps circles round and spirals
    true to shape; per-axis scales suit a CSV whose two columns have different units."""
    centre = x_train.mean(axis=0)
    spread = np.abs(x_train - centre).max(axis=None if isotropic else 0)
    spread = np.where(spread > 0, spread, 1.0)  # a constant column stays constant rather than NaN
    return ((x_train - centre) / spread).astype(np.float32), ((x_test - centre) / spread).astype(np.float32)


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images (N, C, H, W) on the 0..1 scale, shaped (1, C, 1, 1)
    float32 for broadcasting. Counted from a 256-bin histogram per channel: exact, and no float64
    copy of a 600 MB image array is ever made."""
    levels = np.arange(256) / 255.0
    mean, std = [], []
    for c in range(images.shape[1]):
        counts = np.bincount(images[:, c].reshape(-1), minlength=256)
        mu = counts @ levels / counts.sum()
        mean.append(mu)
        std.append(np.sqrt(counts @ (levels - mu) ** 2 / counts.sum()))
    shape = (1, -1, 1, 1)
    std_arr = np.asarray(std)
    std_arr = np.where(std_arr > 0, std_arr, 1.0)  # a constant channel stays constant rather than NaN
    return np.asarray(mean, np.float32).reshape(shape), std_arr.astype(np.float32).reshape(shape)


class Arrays(NamedTuple):
    """A data set as the loaders build it, in numpy: inputs (float) and labels 0..n_classes-1."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    class_names: tuple[str, ...] = ()
