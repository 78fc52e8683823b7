"""Tests for resnet_core.data: the point generators, digits, CIFAR-10's binary files, the points CSV
and the argument parsing. Everything is generated or written to tmp_path; nothing is downloaded."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnet_core.data import DATA_DIR, DATASETS, DataError, parse_dataset_args
from resnet_core.training.tensors import Dataset, load_dataset, load_points_csv

POINT_SETS = {"spirals": 3, "circles": 2, "moons": 2, "xor": 2, "blobs": 4}  # name -> classes at the defaults


def data_error(fn, *args, words=(), **kwargs) -> str:
    """Call fn, expect a DataError whose one-line message contains every word (case-insensitive)."""
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return message


def knn_error(d: Dataset, k: int = 5) -> float:
    nearest = torch.cdist(d.x_test, d.x_train).topk(k, largest=False).indices
    return (torch.mode(d.y_train[nearest], dim=1).values != d.y_test).float().mean().item()


# ------------------------------------------------------------------------------------ 2D points

@pytest.mark.parametrize("name", POINT_SETS)
def test_points_shapes_dtypes_labels_and_split(name):
    d = load_dataset(name, {"n": 1000, "test_fraction": 0.25})
    assert d.name == name and not d.is_image and d.input_shape == (2,)
    assert d.x_train.dtype == d.x_test.dtype == torch.float32
    assert d.y_train.dtype == d.y_test.dtype == torch.int64
    assert (len(d.x_train), len(d.x_test)) == (750, 250) and len(d.y_train) == 750 and len(d.y_test) == 250
    assert d.n_classes == POINT_SETS[name]
    assert set(d.y_train.tolist()) == set(d.y_test.tolist()) == set(range(d.n_classes))
    # Train points are scaled into [-1, 1] (touching it); test points use the train's statistics.
    assert d.x_train.abs().max().item() == pytest.approx(1.0)
    assert d.x_test.abs().max().item() < 1.5
    assert d.x_train.mean(0).abs().max().item() < 1e-5
    assert torch.isfinite(d.x_train).all() and torch.isfinite(d.x_test).all()


@pytest.mark.parametrize("name", POINT_SETS)
def test_points_classes_are_balanced_overall_and_per_split(name):
    d = load_dataset(name, {"n": 1003})
    total = torch.bincount(torch.cat([d.y_train, d.y_test]), minlength=d.n_classes)
    assert total.max() - total.min() <= 1
    test = torch.bincount(d.y_test, minlength=d.n_classes).float()
    assert (test / test.sum() - 1 / d.n_classes).abs().max() < 0.01  # stratified split


@pytest.mark.parametrize("name", POINT_SETS)
def test_points_depend_on_data_seed_only(name):
    torch.manual_seed(1)
    a = load_dataset(name, {"data_seed": 7})
    torch.manual_seed(2)  # the training seed must not move the data
    np.random.seed(3)
    b = load_dataset(name, {"data_seed": 7})
    c = load_dataset(name, {"data_seed": 8})
    for part in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, part), getattr(b, part))
    assert not torch.equal(a.x_train, c.x_train)


@pytest.mark.parametrize("name", POINT_SETS)
def test_points_default_noise_is_learnable_and_noise_matters(name):
    # The default noise must leave the classes separable (a 5-nearest-neighbour vote gets under 5%
    # error); more noise must make them harder.
    assert knn_error(load_dataset(name)) < 0.05
    assert knn_error(load_dataset(name, {"noise": 0.0})) < 0.01
    assert knn_error(load_dataset(name, {"noise": 1.0})) > 0.08


def test_point_args_change_the_picture():
    assert load_dataset("spirals", {"arms": 5, "n": 500}).n_classes == 5
    assert load_dataset("blobs", {"centers": 7, "n": 500}).n_classes == 7
    # Without noise the circles lie at two radii whose ratio is `factor` (scaling is isotropic).
    d = load_dataset("circles", {"factor": 0.3, "noise": 0.0, "n": 4000})
    radius = d.x_train.norm(dim=1)
    inner, outer = radius[d.y_train == 1].median(), radius[d.y_train == 0].median()
    assert (inner / outer).item() == pytest.approx(0.3, abs=0.02)


def test_point_sizes_follow_n_and_test_fraction():
    for n, fraction in [(20, 0.9), (2000, 0.2), (1001, 0.33), (150, 0.05)]:
        d = load_dataset("moons", {"n": n, "test_fraction": fraction})
        assert len(d.x_test) == round(n * fraction) and len(d.x_train) + len(d.x_test) == n


# ---------------------------------------------------------------------------------------- digits

def test_digits_shapes_classes_and_standardisation():
    d = load_dataset("digits")
    assert d.is_image and d.input_shape == (1, 8, 8) and d.n_classes == 10
    assert len(d.x_train) + len(d.x_test) == 1797 and len(d.x_test) == round(1797 * 0.2)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert set(d.y_test.tolist()) == set(range(10))
    assert abs(d.x_train.mean().item()) < 1e-4 and d.x_train.std().item() == pytest.approx(1.0, abs=1e-3)
    # Same file, same seed -> same split; another seed -> another split.
    assert torch.equal(d.x_test, load_dataset("digits").x_test)
    assert not torch.equal(d.y_test, load_dataset("digits", {"data_seed": 1}).y_test)


def test_digits_pixels_match_the_file():
    d = load_dataset("digits", {"test_fraction": 0.5})
    with gzip.open(DATA_DIR / "digits.csv.gz", "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    # Undo the standardisation (a monotone map), then every image must be a row of the file.
    x = torch.cat([d.x_train, d.x_test]).reshape(-1, 64)
    pixels = (x - x.min()) / (x.max() - x.min()) * 16
    rows = {tuple(r) for r in table[:, :65].tolist()}
    labels = torch.cat([d.y_train, d.y_test])
    found = sum(tuple(p) + (int(y),) in rows for p, y in zip(pixels.round().long().tolist(), labels.tolist()))
    assert found == 1797


# -------------------------------------------------------------------------------------- CIFAR-10

def write_cifar(path: Path, labels, images=None, seed=0) -> np.ndarray:
    """A CIFAR-10 binary file: per record one label byte then R, G, B planes of 32x32 bytes."""
    labels = np.asarray(labels, dtype=np.uint8)
    if images is None:
        images = np.random.default_rng(seed).integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    records = np.concatenate([labels[:, None], images.reshape(len(labels), -1)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    records.astype(np.uint8).tofile(path)
    return images


@pytest.fixture
def cifar_root(tmp_path):
    root = tmp_path / "cifar-10-batches-bin"
    images = np.random.default_rng(0).integers(0, 256, size=(30, 3, 32, 32), dtype=np.uint8)
    images[0] = 0
    images[0, 0] = 255  # record 0: pure red
    images[1] = 0
    images[1, 2] = np.arange(32, dtype=np.uint8)[:, None] * 8  # record 1: blue rising down the rows
    write_cifar(root / "data_batch_1.bin", [i % 10 for i in range(30)], images)
    write_cifar(root / "test_batch.bin", [9 - i % 10 for i in range(10)], seed=1)
    return root


def test_cifar_labels_and_pixel_layout_round_trip(cifar_root):
    d = load_dataset("cifar10", {"root": str(cifar_root), "batches": 1})
    assert d.is_image and d.input_shape == (3, 32, 32) and d.n_classes == 10
    assert d.x_train.shape == (30, 3, 32, 32) and d.x_test.shape == (10, 3, 32, 32)
    assert d.y_train.tolist() == [i % 10 for i in range(30)]
    assert d.y_test.tolist() == [9 - i % 10 for i in range(10)]
    assert d.class_names[0] == "airplane" and d.class_names[9] == "truck"
    red = d.x_train[0]
    assert (red[0] > red[1]).all() and (red[0] > red[2]).all()
    blue = d.x_train[1, 2]
    assert (blue[1:] > blue[:-1]).all() and (blue == blue[:, :1]).all()  # rows differ, columns don't
    # Per-channel standardisation with the train split's statistics, exactly.
    raw = np.fromfile(cifar_root / "data_batch_1.bin", dtype=np.uint8).reshape(30, 3073)[:, 1:]
    raw = raw.reshape(30, 3, 32, 32) / 255.0
    mean, std = raw.mean(axis=(0, 2, 3), keepdims=True), raw.std(axis=(0, 2, 3), keepdims=True)
    assert np.allclose(d.x_train.numpy(), (raw - mean) / std, atol=1e-4)
    assert torch.allclose(d.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)


def test_cifar_limits_span_batches_and_stop_early(cifar_root):
    write_cifar(cifar_root / "data_batch_2.bin", [3] * 30, seed=2)
    d = load_dataset("cifar10", {"root": str(cifar_root), "train_limit": 45, "test_limit": 4})
    assert len(d.x_train) == 45 and len(d.x_test) == 4
    assert d.y_train.tolist() == [i % 10 for i in range(30)] + [3] * 15
    assert len(load_dataset("cifar10", {"root": str(cifar_root), "batches": 1}).x_train) == 30
    # train_limit reached in batch 1: the missing batches 3..5 are never opened.
    assert len(load_dataset("cifar10", {"root": str(cifar_root), "train_limit": 20}).x_train) == 20


def test_cifar_bad_files_say_which_path(cifar_root, tmp_path):
    missing = tmp_path / "nowhere"
    data_error(load_dataset, "cifar10", {"root": str(missing)},
               words=(str(missing / "data_batch_1.bin"), "CIFAR-10 binary version"))
    data_error(load_dataset, "cifar10", {"root": str(cifar_root)},  # batches=5 needs data_batch_2.bin
               words=(str(cifar_root / "data_batch_2.bin"), "binary version"))
    truncated = cifar_root / "data_batch_1.bin"
    truncated.write_bytes(truncated.read_bytes()[:-100])
    data_error(load_dataset, "cifar10", {"root": str(cifar_root), "batches": 1},
               words=(str(truncated), str(30 * 3073 - 100), "truncated or not the binary version"))
    write_cifar(truncated, [1, 2, 10, 3])
    data_error(load_dataset, "cifar10", {"root": str(cifar_root), "batches": 1}, words=(str(truncated), "label 10"))
    write_cifar(truncated, [1, 2])
    (cifar_root / "test_batch.bin").unlink()
    data_error(load_dataset, "cifar10", {"root": str(cifar_root), "batches": 1},
               words=(str(cifar_root / "test_batch.bin"),))


def test_cifar_default_root_is_in_the_data_folder():
    assert DATASETS["cifar10"].defaults["root"] == str(DATA_DIR / "cifar-10-batches-bin")
    assert DATA_DIR == Path(__file__).resolve().parents[1] / "data"  # the repository's data/ folder


# ------------------------------------------------------------------------------------ points CSV

def csv_text(rows, header="x1,x2,label") -> str:
    return header + "\n" + "".join(",".join(str(v) for v in row) + "\n" for row in rows)


GOOD_ROWS = [(i, (i * 7) % 5, i % 2) for i in range(40)]


def test_csv_from_path_bytes_and_dataset_name(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text(csv_text(GOOD_ROWS))
    for source in (path, str(path), path.read_bytes()):
        d = load_points_csv(source, test_fraction=0.25)
        assert d.name == "csv" and d.input_shape == (2,) and d.n_classes == 2
        assert (len(d.x_train), len(d.x_test)) == (30, 10)
        assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    via_registry = load_dataset("csv", {"path": str(path), "test_fraction": "0.25"})
    assert torch.equal(via_registry.x_train, load_points_csv(path, test_fraction=0.25).x_train)
    assert not torch.equal(via_registry.x_train, load_points_csv(path, test_fraction=0.25, data_seed=1).x_train)


def test_csv_string_labels_extra_columns_and_scaling():
    # Columns in another order, an extra one, class names as text, x1 in thousands, x2 tiny.
    names = ["dog", "cat", "ant"]
    rows = [(f"id{i}", names[i % 3], (i % 3) * 1e-3, 1000.0 * (i % 3) + i) for i in range(60)]
    d = load_points_csv(csv_text(rows, header="id,Label,x2,x1").encode(), test_fraction=0.5)
    assert d.n_classes == 3 and d.class_names == ("ant", "cat", "dog")  # sorted order
    # ant (code 0) came from i % 3 == 2: the largest x1 and x2.
    x = torch.cat([d.x_train, d.x_test])
    y = torch.cat([d.y_train, d.y_test])
    assert (x[y == 0, 0].min() > x[y == 2, 0].max()) and (x[y == 0, 1].min() > x[y == 2, 1].max())
    assert d.x_train.abs().max(dim=0).values.tolist() == pytest.approx([1.0, 1.0])  # per-axis scaling


def test_csv_whole_number_labels_map_in_numeric_order():
    rows = [(i, i, [-1, 1, 10, 9][i % 4]) for i in range(40)]
    d = load_points_csv(csv_text(rows).encode())
    assert d.class_names == ("-1", "1", "9", "10")


@pytest.mark.parametrize("text, words", [
    ("a,b,c\n1,2,3\n", ("x1", "x2", "label", "header")),
    ("x1,label\n1,2\n", ("x2",)),
    (csv_text(GOOD_ROWS[:5] + [(1, "abc", 0)] + GOOD_ROWS), ("x2", "non-numeric", "line 7")),
    (csv_text(GOOD_ROWS[:3] + [("nan", 1, 0)] + GOOD_ROWS), ("x1", "line 5", "nan")),
    (csv_text(GOOD_ROWS[:3] + [(1, "-inf", 0)] + GOOD_ROWS), ("line 5", "finite")),
    (csv_text(GOOD_ROWS[:8] + [(1, "", 0)] + GOOD_ROWS), ("empty", "x2", "line 10")),
    (csv_text(GOOD_ROWS[:8] + [(1, 2, "")] + GOOD_ROWS), ("empty", "label", "line 10")),
    (csv_text(GOOD_ROWS[:2]) + "1,2\n" + csv_text(GOOD_ROWS, header=""), ("line 4", "2 value")),
    (csv_text([(i, i, "same") for i in range(20)]), ("at least two classes",)),
    (csv_text([(i, i, i) for i in range(101)]), ("101", "100 classes")),
    (csv_text(GOOD_ROWS[:9]), ("only 9", "at least 10")),
    ("x1,x2,label\n", ("only 0", "at least 10")),
    ("", ("empty",)),
    (" \n\n", ("empty",)),
    ('x1,x2,label\n"1,2,0\n', ("valid CSV",)),
])
def test_csv_bad_content_is_a_clear_data_error(text, words):
    data_error(load_points_csv, text.encode(), words=words)


def test_csv_binary_and_oversized_input(tmp_path):
    data_error(load_points_csv, b"\xff\xd8\xff\xe0 JFIF image", words=("not a text file",))
    data_error(load_points_csv, b"x1,x2,label\n1,2,\x00\n", words=("not a text file",))
    data_error(load_points_csv, b"x1,x2,label\n" + b"1,2,0\n" * 2_000_000, words=("10 MB",))
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        f.truncate(11 * 1024 * 1024)  # sparse: the size must be refused before anything is read
    data_error(load_points_csv, big, words=("10 MB", "big.csv"))
    data_error(load_points_csv, csv_text([(1, 2, i % 2) for i in range(200_001)]).encode(), words=("200,000",))


def test_csv_paths_and_arguments(tmp_path):
    data_error(load_points_csv, tmp_path / "absent.csv", words=("absent.csv", "not found"))
    data_error(load_points_csv, tmp_path, words=("folder",))
    data_error(load_points_csv, 12345, words=("path or bytes",))
    data_error(load_dataset, "csv", words=("path=FILE.csv",))
    data_error(load_points_csv, csv_text(GOOD_ROWS).encode(), test_fraction=0.0, words=("test_fraction",))
    data_error(load_points_csv, csv_text(GOOD_ROWS).encode(), data_seed=-1, words=("data_seed",))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="x12l,abel\n\r\" .-eEnaif9", max_size=300))
def test_csv_garbage_raises_only_data_error(body):
    try:
        load_points_csv(("x1,x2,label\n" + body).encode())
    except DataError as e:
        assert "\n" not in str(e)


# ------------------------------------------------------------------------------ argument parsing

def test_parse_dataset_args_types_and_values():
    assert parse_dataset_args("spirals", ["arms=4", " noise = 0.1 ", "n=2e3", "turns=2"]) == \
        {"arms": 4, "noise": 0.1, "n": 2000, "turns": 2.0}
    parsed = parse_dataset_args("spirals", ["turns=2", "data_seed=5"])
    assert type(parsed["turns"]) is float and type(parsed["data_seed"]) is int
    assert parse_dataset_args("csv", ["path=some dir/p=1.csv"]) == {"path": "some dir/p=1.csv"}
    assert parse_dataset_args("digits", []) == {}


@pytest.mark.parametrize("name, pairs, words", [
    ("spirals", ["colour=red"], ("colour", "allowed", "arms", "turns", "noise", "data_seed")),
    ("spirals", ["arm=3"], ("did you mean arms",)),
    ("spirals", ["arms=three"], ("arms", "whole number", "2 to 8", "three")),
    ("spirals", ["arms=2.5"], ("arms", "whole number")),
    ("spirals", ["noise=nan"], ("noise", "0 to 1")),
    ("spirals", ["arms=9"], ("arms", "2 to 8", "9")),
    ("moons", ["n=10"], ("n", "20 to 200000")),
    ("moons", ["test_fraction=0"], ("test_fraction", "above 0", "at most 0.9")),
    ("moons", ["test_fraction=0.95"], ("test_fraction",)),
    ("blobs", ["centers=11"], ("centers", "2 to 10")),
    ("cifar10", ["train_limit=50001"], ("train_limit", "1 to 50000")),
    ("cifar10", ["batches=0"], ("batches", "1 to 5")),
    ("moons", ["noise"], ("KEY=VALUE",)),
    ("moons", ["=3"], ("KEY=VALUE",)),
    ("moons", ["n=30", "n=40"], ("twice",)),
    ("spiral", [], ("unknown dataset", "spirals", "digits", "cifar10", "csv")),
])
def test_parse_dataset_args_rejects(name, pairs, words):
    data_error(parse_dataset_args, name, pairs, words=words)


def test_load_dataset_checks_and_converts_args():
    d = load_dataset("moons", {"n": "100", "noise": "0"})  # strings, as from a URL; the rest default
    assert len(d.x_train) + len(d.x_test) == 100
    data_error(load_dataset, "moons", {"n": True}, words=("n", "whole number"))
    data_error(load_dataset, "moons", {"n": 20.5}, words=("n",))
    data_error(load_dataset, "moons", {"bogus": 1}, words=("bogus", "allowed", "noise"))
    data_error(load_dataset, "moons", ["n=3"], words=("mapping",))
    data_error(load_dataset, "nope", words=("unknown dataset", "spirals", "moons"))
    data_error(load_dataset, "csv", {"path": 3}, words=("path",))
    assert len(load_dataset("moons", {"n": np.int64(40), "noise": np.float32(0.1)}).x_test) == 8


def test_specs_are_complete_and_their_defaults_valid():
    assert list(DATASETS) == ["spirals", "circles", "moons", "xor", "blobs", "digits", "cifar10", "csv"]
    for name, spec in DATASETS.items():
        assert spec.name == name and spec.description and "\n" not in spec.description
        for key, default in spec.defaults.items():
            parsed = parse_dataset_args(name, [f"{key}={default}"])[key]
            assert parsed == default and type(parsed) is type(default)
        assert set(spec.ranges) <= set(spec.defaults)


NAMES = st.sampled_from(list(DATASETS) + ["", "nope"])
KEYS = st.sampled_from(sorted({k for s in DATASETS.values() for k in s.defaults}) + ["", "x", "n "]) | st.text(max_size=8)
PAIRS = st.lists(st.one_of(st.text(max_size=20), st.builds(lambda k, v: f"{k}={v}", KEYS, st.text(max_size=12)),
                           st.builds(lambda k, v: f"{k}={v}", KEYS, st.floats() | st.integers())), max_size=5)


@settings(max_examples=300, deadline=None)
@given(NAMES, PAIRS)
def test_parse_dataset_args_garbage_raises_only_data_error(name, pairs):
    try:
        parsed = parse_dataset_args(name, pairs)
    except DataError as e:
        assert "\n" not in str(e)
        return
    spec = DATASETS[name]
    for key, value in parsed.items():
        assert type(value) is type(spec.defaults[key])
        if key in spec.ranges:
            assert value in spec.ranges[key]


def test_dataset_rejects_malformed_tensors():
    x, y = torch.zeros(4, 2), torch.tensor([0, 1, 0, 1])
    assert Dataset("t", x, y, x, y, 2).class_names == ("0", "1")
    with pytest.raises(DataError, match="labels outside"):
        Dataset("t", x, y, x, y + 1, 2)
    with pytest.raises(DataError, match="float32"):
        Dataset("t", x.double(), y, x, y, 2)
