"""Datasets for Residual Lab: 2D point sets, 8x8 digits, CIFAR-10 and a user's points CSV.

    load_arrays("spirals", {"arms": 4})             -> numpy Arrays (train/test), without importing torch
    parse_dataset_args("spirals", ["arms=4"])       -> {"arms": 4}, typed and range-checked
    points_csv_arrays("points.csv")                 -> Arrays from columns x1, x2, label

The same as torch tensors: ``resnet_core.training.tensors`` (``load_dataset``, ``load_points_csv``,
``Dataset``), which only the training side imports; the dashboard's server never loads torch.

Every problem a user can cause (a name, an argument, a file) raises DataError with a one-line
message saying what is wrong and what is allowed. The data depend only on the arguments: the same
data_seed gives identical tensors, independent of the training seed.
"""
from __future__ import annotations

import difflib
import math
import numbers
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import resnet_core.data.files as files
import resnet_core.data.points as points
from resnet_core.data.common import Arrays, DataError, channel_stats, scale_points, show, stratified_split

__all__ = ["DATASETS", "DATA_DIR", "ArgRange", "Arrays", "DataError", "DatasetSpec",
           "load_arrays", "parse_dataset_args", "points_csv_arrays"]

DATA_DIR: Path = Path(__file__).resolve().parents[2] / "data"


@dataclass(frozen=True)
class ArgRange:
    """The allowed values of a numeric argument: lo..hi, or (lo, hi] when lo_open."""
    lo: float
    hi: float
    lo_open: bool = False

    def __contains__(self, value: float) -> bool:
        return (value > self.lo if self.lo_open else value >= self.lo) and value <= self.hi

    def describe(self, whole: bool) -> str:
        lo, hi = (str(int(v)) if whole else f"{v:g}" for v in (self.lo, self.hi))
        if self.lo_open:
            return f"a number above {lo} and at most {hi}"
        return f"{'a whole number' if whole else 'a number'} from {lo} to {hi}"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str  # one line, for the UI and the CLI's help
    defaults: dict[str, object]  # every argument and its default; the default's type is the argument's type
    ranges: dict[str, ArgRange] = field(default_factory=dict)  # numeric arguments
    help: dict[str, str] = field(default_factory=dict)  # a few words per argument, for tooltips
    build: Callable[[dict[str, object]], Arrays] | None = field(default=None, repr=False, compare=False)


# ----------------------------------------------------------------------------- argument checking

def _spec(name: object) -> DatasetSpec:
    if isinstance(name, str) and name in DATASETS:
        return DATASETS[name]
    close = difflib.get_close_matches(name, list(DATASETS), n=1) if isinstance(name, str) else []
    guess = f" (did you mean {close[0]}?)" if close else ""
    raise DataError(f"unknown dataset {show(name)}{guess}; known datasets: {', '.join(DATASETS)}")


def _unknown_key(spec: DatasetSpec, key: object) -> DataError:
    close = difflib.get_close_matches(key, list(spec.defaults), n=1) if isinstance(key, str) else []
    guess = f" (did you mean {close[0]}?)" if close else ""
    return DataError(f"dataset {spec.name!r} has no argument {show(key)}{guess}; "
                     f"allowed: {', '.join(spec.defaults)}")


def _coerce(spec: DatasetSpec, key: str, value: object) -> object:
    """`value` converted to the type of the key's default and range-checked. Strings (from a CLI
    or a URL) are parsed; other types must already fit (no bools posing as numbers)."""
    default = spec.defaults[key]
    rule = spec.ranges.get(key)
    if isinstance(default, str):
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise DataError(f"dataset {spec.name!r}: {key} must be text (a path), got {show(value)}")
        return value.strip()

    whole = isinstance(default, int)
    allowed = rule.describe(whole) if rule else ("a whole number" if whole else "a number")
    problem = DataError(f"dataset {spec.name!r}: {key} must be {allowed}, got {show(value)}")
    number: float | int
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text) if whole else float(text)
        except (ValueError, OverflowError):
            try:  # "2e3" or "500.0" for a whole number is fine; "2.5" is not
                number = float(text)
            except (ValueError, OverflowError):
                raise problem from None
    elif isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise problem
    else:
        number = value
    try:
        number = float(number)
    except (ValueError, OverflowError, TypeError):
        raise problem from None
    if not math.isfinite(number) or (whole and not number.is_integer()):
        raise problem
    if rule is not None and number not in rule:
        raise problem
    return int(number) if whole else number


def _with_defaults(spec: DatasetSpec, args: Mapping[str, object] | None) -> dict[str, object]:
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise DataError(f"dataset arguments must be a mapping of name to value, got {type(args).__name__}")
    checked = dict(spec.defaults)
    for key, value in args.items():
        if key not in spec.defaults:
            raise _unknown_key(spec, key)
        checked[key] = _coerce(spec, key, value)
    return checked


def parse_dataset_args(name: str, pairs: list[str]) -> dict:
    """["arms=4", "noise=0.1"] -> {"arms": 4, "noise": 0.1}: only the keys given, each converted to
    its default's type and range-checked. A key given twice is an error (which one was meant?)."""
    spec = _spec(name)
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, (list, tuple)):
        raise DataError(f"dataset arguments must be a list of KEY=VALUE strings, got {type(pairs).__name__}")
    parsed: dict[str, object] = {}
    for pair in pairs:
        if not isinstance(pair, str) or "=" not in pair or not pair.partition("=")[0].strip():
            raise DataError(f"dataset argument {show(pair)} is not KEY=VALUE (e.g. n=500); "
                            f"allowed keys for {spec.name!r}: {', '.join(spec.defaults)}")
        key, _, value = pair.partition("=")
        key = key.strip()
        if key not in spec.defaults:
            raise _unknown_key(spec, key)
        if key in parsed:
            raise DataError(f"dataset argument {key} is given twice; give it once")
        parsed[key] = _coerce(spec, key, value)
    return parsed


# ----------------------------------------------------------------------------------- the loaders

def load_arrays(name: str, args: Mapping[str, object] | None = None) -> Arrays:
    """The named dataset as numpy arrays: the same data as load_dataset, without torch."""
    spec = _spec(name)
    return spec.build(_with_defaults(spec, args))


def _split_points(name: str, x: np.ndarray, y: np.ndarray, n_classes: int, test_fraction: float,
                  rng: np.random.Generator, *, isotropic: bool, class_names: tuple[str, ...] = ()) -> Arrays:
    train, test = stratified_split(y, test_fraction, rng)
    x_train, x_test = scale_points(x[train], x[test], isotropic=isotropic)
    return Arrays(name, x_train, y[train], x_test, y[test], n_classes, class_names)


def points_csv_arrays(source: str | os.PathLike | bytes, *, test_fraction: float = 0.2, data_seed: int = 0) -> Arrays:
    """load_points_csv's data as numpy arrays, with every check it makes, without torch."""
    spec = DATASETS["csv"]
    test_fraction = _coerce(spec, "test_fraction", test_fraction)
    data_seed = _coerce(spec, "data_seed", data_seed)
    x, y, class_names = files.read_points_csv(source)
    # Per-axis scaling: a CSV's two columns may well have different units.
    return _split_points("csv", x, y, len(class_names), test_fraction, np.random.default_rng(data_seed),
                         isotropic=False, class_names=class_names)


def _build_points(name: str) -> Callable[[dict[str, object]], Arrays]:
    generate = getattr(points, name)
    extra = {"spirals": ("arms", "turns"), "circles": ("factor",), "blobs": ("centers",)}.get(name, ())

    def build(a: dict[str, object]) -> Arrays:
        rng = np.random.default_rng(a["data_seed"])
        x, y = generate(a["n"], *(a[k] for k in extra), a["noise"], rng)
        n_classes = int(y.max()) + 1
        return _split_points(name, x, y, n_classes, a["test_fraction"], rng, isotropic=True)
    return build


def _build_digits(a: dict[str, object]) -> Arrays:
    images, labels = files.read_digits(DATA_DIR / files.DIGITS_FILE)
    train, test = stratified_split(labels, a["test_fraction"], np.random.default_rng(a["data_seed"]))
    x = images.astype(np.float32) / 16.0
    # One mean and std (one channel), from the train split only, as for any held-out evaluation.
    mean, std = float(x[train].mean()), float(x[train].std()) or 1.0
    x = (x - mean) / std
    return Arrays("digits", x[train], labels[train], x[test], labels[test], 10, tuple("0123456789"))


def _build_cifar10(a: dict[str, object]) -> Arrays:
    root = Path(os.path.expanduser(a["root"] or str(DATA_DIR / "cifar-10-batches-bin")))
    parts, labels, have = [], [], 0
    for i in range(1, a["batches"] + 1):
        if have >= a["train_limit"]:
            break  # enough images: don't even open the remaining files
        images, y = files.read_cifar_file(root / f"data_batch_{i}.bin", a["train_limit"] - have)
        parts.append(images)
        labels.append(y)
        have += len(y)
    test_images, y_test = files.read_cifar_file(root / "test_batch.bin", a["test_limit"])
    train_images = np.concatenate(parts)
    mean, std = channel_stats(train_images)  # per channel, from the train split only

    def normalise(images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32)
        x /= 255.0  # in place from here on: all 50000 train images are 600 MB as float32
        x -= mean
        x /= std
        return x

    x_train, x_test = normalise(train_images), normalise(test_images)
    return Arrays("cifar10", x_train, np.concatenate(labels), x_test, y_test, 10, files.CIFAR_CLASSES)


def _build_csv(a: dict[str, object]) -> Arrays:
    if not a["path"]:
        raise DataError("the csv dataset needs a file: give --dataset-arg path=FILE.csv "
                        "(columns x1, x2, label)")
    return points_csv_arrays(a["path"], test_fraction=a["test_fraction"], data_seed=a["data_seed"])


# --------------------------------------------------------------------------------- the registry

_SPLIT = {"test_fraction": 0.2, "data_seed": 0}
_SPLIT_RANGES = {"test_fraction": ArgRange(0.0, 0.9, lo_open=True), "data_seed": ArgRange(0, 2**32 - 1)}
_SPLIT_HELP = {"test_fraction": "share of the rows held out for testing",
               "data_seed": "fixes the data and the split (independent of the training seed)"}
_NOISE_HELP = "jitter relative to the gap between classes: 0 clean, 0.2 ~1% unavoidable error, 1 heavy overlap"


def _points_spec(name: str, description: str, noise: float, extra: dict[str, object],
                 extra_ranges: dict[str, ArgRange], extra_help: dict[str, str]) -> DatasetSpec:
    return DatasetSpec(
        name, description,
        defaults={"n": 2000, **extra, "noise": noise, **_SPLIT},
        ranges={"n": ArgRange(20, 200_000), **extra_ranges, "noise": ArgRange(0.0, 1.0), **_SPLIT_RANGES},
        help={"n": "number of points (train + test)", **extra_help, "noise": _NOISE_HELP, **_SPLIT_HELP},
        build=_build_points(name))


DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in [
    _points_spec("spirals", "interleaved spiral arms, one class per arm: hard for a shallow net", 0.15,
                 {"arms": 3, "turns": 1.5}, {"arms": ArgRange(2, 8), "turns": ArgRange(0.25, 4.0)},
                 {"arms": "number of arms (= classes)", "turns": "how often each arm winds around the centre"}),
    _points_spec("circles", "two concentric circles, 2 classes", 0.2,
                 {"factor": 0.5}, {"factor": ArgRange(0.1, 0.9)}, {"factor": "inner radius / outer radius"}),
    _points_spec("moons", "two interleaving half circles, 2 classes", 0.2, {}, {}, {}),
    _points_spec("xor", "four quadrants, opposite quadrants share a class, 2 classes", 0.2, {}, {}, {}),
    _points_spec("blobs", "Gaussian blobs around a circle, one class per blob", 0.2,
                 {"centers": 4}, {"centers": ArgRange(2, 10)}, {"centers": "number of blobs (= classes)"}),
    DatasetSpec("digits", "8x8 handwritten digits (UCI, 1797 images), 10 classes",
                defaults=dict(_SPLIT), ranges=dict(_SPLIT_RANGES), help=dict(_SPLIT_HELP), build=_build_digits),
    DatasetSpec("cifar10", "CIFAR-10 32x32 colour photos, 10 classes (binary version in data/cifar-10-batches-bin)",
                defaults={"root": str(DATA_DIR / "cifar-10-batches-bin"), "train_limit": 5000,
                          "test_limit": 1000, "batches": 5},
                ranges={"train_limit": ArgRange(1, 50_000), "test_limit": ArgRange(1, 10_000),
                        "batches": ArgRange(1, 5)},
                help={"root": "folder holding data_batch_1.bin ... test_batch.bin",
                      "train_limit": "use the first N training images",
                      "test_limit": "use the first N test images",
                      "batches": "how many data_batch files to read at most"},
                build=_build_cifar10),
    DatasetSpec("csv", "your own 2D points: a CSV file with columns x1, x2, label",
                defaults={"path": "", **_SPLIT}, ranges=dict(_SPLIT_RANGES),
                help={"path": "the CSV file (header x1,x2,label)", **_SPLIT_HELP}, build=_build_csv),
]}
