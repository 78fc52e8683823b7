"""Types and helpers shared by the dataset loaders.

The public API is resnet_core.data, which re-exports DataError, Arrays and Dataset; they live here
only so that the loader modules can use them without importing resnet_core.data (which imports them).

The loaders build numpy ``Arrays``; only ``to_dataset`` makes torch tensors of them. So the
dashboard's server, which draws points and checks uploads but never trains, starts without torch
(importing it costs about a second of every start-up here).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import torch

# Characters that str.splitlines() treats as line breaks: a DataError message must stay one line
# even when it quotes a user's path or value, so the UI and the CLI can print it as is.
_LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")


class DataError(ValueError):
    """A bad dataset name, argument or file. The message is one line: what is wrong and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(_LINE_BREAKS.sub(" ", str(message)))


def show(value: object, limit: int = 40) -> str:
    """A short, one-line rendering of a user's value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        import torch  # already loaded: the fields are tensors

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


def to_dataset(a: Arrays) -> Dataset:
    """The arrays as a Dataset of tensors (float32 inputs, int64 labels), without copying where possible."""
    import torch

    def tensor(x: np.ndarray, dtype: type) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=dtype))

    return Dataset(a.name, tensor(a.x_train, np.float32), tensor(a.y_train, np.int64),
                   tensor(a.x_test, np.float32), tensor(a.y_test, np.int64), int(a.n_classes), tuple(a.class_names))
