"""Readers for the datasets that come from files: the digits CSV, CIFAR-10's binary batches and a
user's points CSV. They return numpy arrays; resnet_core.data splits, scales and wraps them.

Nothing here unpickles: CIFAR-10 is read from its *binary* version with numpy, never the Python
(pickle) version, and every failure is turned into a one-line DataError saying what to do.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import os
import zlib
from pathlib import Path

import numpy as np

from resnet_core.data.common import DataError, show

DIGITS_FILE = "digits.csv.gz"

CIFAR_RECORD_BYTES = 1 + 3 * 32 * 32  # one label byte, then the R, G and B planes, 32x32 row-major
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_HOW_TO = ('download the "CIFAR-10 binary version" (cifar-10-binary.tar.gz) from '
                "https://www.cs.toronto.edu/~kriz/cifar.html and extract it")

MAX_CSV_BYTES = 10 * 1024 * 1024
MAX_CSV_ROWS = 200_000
MIN_CSV_ROWS = 10
MAX_CSV_CLASSES = 100
MAX_CSV_VALUE = 1e15
CSV_COLUMNS = ("x1", "x2", "label")


# ---------------------------------------------------------------------------------------- digits

def read_digits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 1, 8, 8) with values 0..16, labels int64) from the UCI digits CSV."""
    restore = f"restore it with: git checkout -- data/{DIGITS_FILE}"
    if not path.is_file():
        raise DataError(f"digits file missing: expected {path}; {restore}")
    try:
        with gzip.open(path, "rt", encoding="ascii") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError, UnicodeDecodeError, zlib.error) as e:
        raise DataError(f"digits file {path} is damaged ({type(e).__name__}); {restore}") from e
    if table.shape[1] != 65 or len(table) < 20 or table[:, :64].min() < 0 or table[:, :64].max() > 16 \
            or table[:, 64].min() < 0 or table[:, 64].max() > 9:
        raise DataError(f"digits file {path} is not 64 pixel columns 0..16 and a label 0..9; {restore}")
    return table[:, :64].reshape(-1, 1, 8, 8).astype(np.uint8), table[:, 64]


# -------------------------------------------------------------------------------------- CIFAR-10

def read_cifar_file(path: Path, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `limit` records of one CIFAR-10 binary file: (images uint8 (k, 3, 32, 32), labels int64).
    Only the records needed are read, so a small train_limit stays fast on the 30 MB official files."""
    if not path.exists():
        hint = ""
        if (path.parent.parent / "cifar-10-batches-py").exists():
            hint = " (cifar-10-batches-py next to it is the Python/pickle version, which is not read)"
        raise DataError(f"CIFAR-10 file missing: expected {path}{hint}; {CIFAR_HOW_TO} so that this file exists (the archive unpacks to a cifar-10-batches-bin folder)")
    if not path.is_file():
        raise DataError(f"CIFAR-10 path {path} is not a file; {CIFAR_HOW_TO} there")
    size = path.stat().st_size
    if size == 0 or size % CIFAR_RECORD_BYTES:
        raise DataError(f"CIFAR-10 file {path} has {size} bytes, not a positive multiple of {CIFAR_RECORD_BYTES}: "
                        f"truncated or not the binary version; {CIFAR_HOW_TO} again")
    count = min(limit, size // CIFAR_RECORD_BYTES)
    try:
        raw = np.fromfile(path, dtype=np.uint8, count=count * CIFAR_RECORD_BYTES)
    except OSError as e:
        raise DataError(f"cannot read CIFAR-10 file {path} ({e.strerror or e}); check its permissions") from e
    if raw.size != count * CIFAR_RECORD_BYTES:  # the file shrank while we read it
        raise DataError(f"CIFAR-10 file {path} ended early: truncated or not the binary version; {CIFAR_HOW_TO} again")
    records = raw.reshape(count, CIFAR_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError(f"CIFAR-10 file {path}: record {int(bad[0])} has label {int(labels[bad[0]])}, but labels "
                        f"are 0..9; this is not the CIFAR-10 binary version (CIFAR-100 differs); {CIFAR_HOW_TO}")
    return records[:, 1:].reshape(count, 3, 32, 32), labels


# ------------------------------------------------------------------------------------ points CSV

def _csv_bytes(source: str | os.PathLike | bytes) -> tuple[bytes, str]:
    """The raw bytes of a CSV and how to name it in messages; the size is checked before reading."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        where, size = "the CSV data", memoryview(source).nbytes
        if size > MAX_CSV_BYTES:  # checked before copying or parsing anything
            raise DataError(f"{where} has {size:,} bytes, over the 10 MB limit ({MAX_CSV_BYTES:,} bytes); use fewer rows")
        return bytes(source), where
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"a points CSV must be a file path or bytes, got {type(source).__name__}")
    path = os.fspath(source)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    where = f"CSV file {show(path, 200)}"
    if not path:
        raise DataError("no CSV file given: give --dataset-arg path=FILE.csv")
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        hint = "; pass CSV text as bytes, not as str" if "\n" in path else ""
        raise DataError(f"{where} not found; check the path (relative paths start from "
                        f"{show(os.getcwd(), 200)}){hint}") from None
    except (OSError, ValueError) as e:  # permissions, a NUL byte in the path, a name too long, ...
        raise DataError(f"cannot read {where} ({getattr(e, 'strerror', None) or e}); check the path") from None
    if os.path.isdir(path):
        raise DataError(f"{where} is a folder; give the path of a .csv file")
    if size > MAX_CSV_BYTES:
        raise DataError(f"{where} has {size:,} bytes, over the 10 MB limit ({MAX_CSV_BYTES:,} bytes); use fewer rows")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CSV_BYTES + 1)  # read at most one byte past the limit: the file may have grown
    except OSError as e:
        raise DataError(f"cannot read {where} ({e.strerror or e}); check its permissions") from None
    if len(data) > MAX_CSV_BYTES:
        raise DataError(f"{where} is over the 10 MB limit ({MAX_CSV_BYTES:,} bytes); use fewer rows")
    return data, where


def _number(text: str, column: str, line: int, where: str) -> float:
    value = text.strip()
    if not value:
        raise DataError(f"{where}: empty value in column {column} on line {line}; every row needs x1, x2 and label")
    try:
        number = float(value)
    except ValueError:
        raise DataError(f"{where}: column {column} has non-numeric text {show(value)} on line {line} "
                        "(the first bad row); x1 and x2 must be numbers") from None
    if not math.isfinite(number):
        raise DataError(f"{where}: column {column} is {show(value)} on line {line}; "
                        "NaN and infinity are not allowed, x1 and x2 must be finite numbers")
    if abs(number) > MAX_CSV_VALUE:
        # Near 1e308 the mean and the spread that scale the points overflow to infinity, and every
        # model would "diverge at step 0"; no coordinate needs more than 15 digits before the point.
        raise DataError(f"{where}: column {column} is {show(value)} on line {line}, beyond ±{MAX_CSV_VALUE:g}; "
                        "rescale the column (the points are scaled to [-1, 1] for training anyway)")
    return number


def _label_codes(labels: list[str], where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map labels to 0..K-1 in sorted order: numerically when every label is a whole number
    (so -1/1 or 1/2 work and 10 sorts after 9), otherwise as text."""
    try:
        numbers = [float(s) for s in labels]
        numeric = all(math.isfinite(v) and v.is_integer() for v in numbers)
    except ValueError:
        numeric = False
    if numeric:
        keys: list = [int(v) for v in numbers]
        names = sorted(set(keys))
        display = tuple(str(v) for v in names)
    else:
        keys = labels
        names = sorted(set(keys))
        display = tuple(names)
    if len(names) < 2:
        raise DataError(f"{where}: the label column has {len(names)} distinct value(s); "
                        "a classifier needs at least two classes")
    if len(names) > MAX_CSV_CLASSES:
        raise DataError(f"{where}: the label column has {len(names)} distinct values, more than the "
                        f"{MAX_CSV_CLASSES} classes allowed; is 'label' really a class column?")
    code = {name: i for i, name in enumerate(names)}
    return np.fromiter((code[k] for k in keys), dtype=np.int64, count=len(keys)), display


def read_points_csv(source: str | os.PathLike | bytes) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(points float64 (N, 2), labels int64 0..K-1, class names) from a CSV with header x1,x2,label.
    Uses the csv module rather than pandas so that each problem can be reported with its line number."""
    data, where = _csv_bytes(source)
    if not data.strip():
        raise DataError(f"{where} is empty; it needs a header line x1,x2,label and at least {MIN_CSV_ROWS} rows")
    try:
        text = data.decode("utf-8-sig")  # -sig: Excel's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError as e:
        raise DataError(f"{where} is not a text file (byte {e.start} is not UTF-8); "
                        "export it as CSV (UTF-8) with columns x1,x2,label") from None
    if "\x00" in text:
        raise DataError(f"{where} is not a text file (it contains NUL bytes); export it as CSV with columns x1,x2,label")

    # strict: an unclosed quote is an error, not a silently swallowed rest of the file
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            raise DataError(f"{where} is empty; it needs a header line x1,x2,label and at least {MIN_CSV_ROWS} rows")
        names = [cell.strip().lower() for cell in header]
        missing = [c for c in CSV_COLUMNS if c not in names]
        if missing:
            hint = "; separate columns with commas" if any(s in header[0] for s in ";\t") else ""
            raise DataError(f"{where} lacks column(s) {', '.join(missing)}: the first line must be a header "
                            f"naming x1, x2 and label (found {show(header, 80)}){hint}")
        i1, i2, il = (names.index(c) for c in CSV_COLUMNS)
        width = max(i1, i2, il) + 1
        points, labels = [], []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank lines (or ",,," from spreadsheets) carry no data
            line = reader.line_num
            if len(points) == MAX_CSV_ROWS:
                raise DataError(f"{where} has more than {MAX_CSV_ROWS:,} rows, the limit; use fewer rows")
            if len(row) < width:
                raise DataError(f"{where}: line {line} has {len(row)} value(s), but the header needs {width} "
                                "for x1, x2 and label")
            label = row[il].strip()
            if not label:
                raise DataError(f"{where}: empty value in column label on line {line}; every row needs a label")
            points.append((_number(row[i1], "x1", line, where), _number(row[i2], "x2", line, where)))
            labels.append(label)
    except csv.Error as e:
        raise DataError(f"{where} is not valid CSV near line {reader.line_num} ({e}); "
                        "export it as CSV with columns x1,x2,label") from None
    if len(points) < MIN_CSV_ROWS:
        raise DataError(f"{where} has only {len(points)} data row(s); it needs at least {MIN_CSV_ROWS} "
                        "to train and test on")
    codes, class_names = _label_codes(labels, where)
    return np.asarray(points, dtype=np.float64), codes, class_names
