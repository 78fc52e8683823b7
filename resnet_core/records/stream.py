"""A record's tables appended to its run folder as they are recorded (``RunRecord.stream_to``), so
the folder holds the whole run while the record in memory keeps a bounded history."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from resnet_core.records.tables import (LAYER_COLUMNS, LESION_COLUMNS, METRIC_COLUMNS, PATH_COLUMNS, PATH_OPTIONAL,
                                        REGION_COLUMNS, STEP_TABLES, LayerSnapshot, jsonable)

FLUSH_EVERY_S = 2.0         # a streaming record writes its buffers out at least this often


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(float(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return "" if math.isnan(v) else repr(v)
    return str(value)


_PLAIN = re.compile(r"[A-Za-z0-9_.\-]*")  # needs no CSV quoting


def _floats(values: np.ndarray) -> list[str]:
    """Each value as pandas' to_csv writes it: the shortest repr, NaN as an empty cell."""
    return ["" if v != v else repr(v) for v in np.asarray(values, dtype=np.float64).tolist()]


class Stream:
    """Appends a record's rows to its run folder's CSV files; lesion.csv and regions.csv (small,
    replaced rather than grown) are rewritten when they changed, at the next flush."""

    def __init__(self, folder: Path, max_bytes: int | None):
        self.folder = folder
        self.max_bytes = max_bytes
        self.written = 0
        self.truncated_at: int | None = None
        self.files: dict[str, Any] = {}
        self.dirty: set[str] = set()
        self.last_flush = time.monotonic()
        self._open("metrics.csv", METRIC_COLUMNS)
        self._open("layers.csv", LAYER_COLUMNS)

    def _open(self, name: str, header: list[str]) -> Any:
        f = open(self.folder / name, "w", newline="", encoding="utf-8")
        f.write(",".join(header) + "\n")
        self.files[name] = (f, csv.writer(f, lineterminator="\n"), header)
        return self.files[name]

    def _rows(self, name: str, rows: list[list[str]]) -> None:
        f, writer, _ = self.files[name]
        writer.writerows(rows)
        self.written += sum(len(c) + 1 for row in rows for c in row)
        if time.monotonic() - self.last_flush > FLUSH_EVERY_S:
            self._flush_files()

    def write_config(self, config: dict[str, Any]) -> None:
        tmp = self.folder / "config.json.tmp"
        tmp.write_text(json.dumps(config, indent=2, default=jsonable) + "\n")
        os.replace(tmp, self.folder / "config.json")

    def metrics(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._rows("metrics.csv", [[_cell(r.get(c)) for c in METRIC_COLUMNS] for r in rows])

    def layers(self, model: str, names: list[str], snap: LayerSnapshot) -> None:
        if self.max_bytes is not None and self.written > self.max_bytes:
            if self.truncated_at is None:
                self.truncated_at = int(snap.step)
            return
        g, a, r = (_floats(v) for v in (snap.grad_norm, snap.act_std, snap.branch_ratio))
        names = list(names[:len(g)]) + [""] * (len(g) - len(names))
        head = f"{int(snap.step)},{model},"
        if _PLAIN.fullmatch(model) and all(_PLAIN.fullmatch(n) for n in names):
            # The hot path (a 1002-layer net probed every step): one string, no csv module per cell.
            f = self.files["layers.csv"][0]
            text = "".join(f"{head}{i},{names[i]},{g[i]},{a[i]},{r[i]}\n" for i in range(len(g)))
            f.write(text)
            self.written += len(text)
            if time.monotonic() - self.last_flush > FLUSH_EVERY_S:
                self._flush_files()
            return
        self._rows("layers.csv", [[str(int(snap.step)), model, str(i), names[i], g[i], a[i], r[i]] for i in range(len(g))])

    def paths(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if "paths.csv" not in self.files:
            self._open("paths.csv", PATH_COLUMNS + [c for c in PATH_OPTIONAL if c in rows[0]])
        header = self.files["paths.csv"][2]
        self._rows("paths.csv", [[_cell(r.get(c)) for c in header] for r in rows])

    def table(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Rows of one of the step tables (``tables.STEP_TABLES``), the file opened at its first rows."""
        if not rows:
            return
        if name not in self.files:
            self._open(name, STEP_TABLES[name])
        header = self.files[name][2]
        self._rows(name, [[_cell(r.get(c)) for c in header] for r in rows])

    def _flush_files(self) -> None:
        for f, _, _ in self.files.values():
            f.flush()
        self.last_flush = time.monotonic()

    def flush(self, lesion: list[dict[str, Any]], regions: dict[str, tuple[int, dict[str, Any]]]) -> None:
        """The buffers out, and lesion.csv and regions.csv rewritten if they changed (the record's
        lock held: these are its current tables)."""
        if "lesion.csv" in self.dirty and lesion:
            _replace_csv(self.folder / "lesion.csv", LESION_COLUMNS,
                         ([_cell(r.get(c)) for c in LESION_COLUMNS] for r in lesion))
        if "regions.csv" in self.dirty and regions:
            _replace_csv(self.folder / "regions.csv", REGION_COLUMNS, _region_rows(regions))
        self.dirty.clear()
        self._flush_files()

    def close(self, config: dict[str, Any], lesion: list[dict[str, Any]],
              regions: dict[str, tuple[int, dict[str, Any]]]) -> None:
        self.write_config(config)
        self.flush(lesion, regions)
        for f, _, _ in self.files.values():
            f.close()
        self.files.clear()


def _replace_csv(path: Path, header: list[str], rows: Iterable[list[str]]) -> None:
    """The file replaced whole, as pandas' to_csv would write it (the tables are small; a table
    library would cost the run 0.2-0.3 s to import at its end)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        f.write(",".join(header) + "\n")
        csv.writer(f, lineterminator="\n").writerows(rows)
    os.replace(tmp, path)


def _region_rows(regions: dict[str, tuple[int, dict[str, Any]]]) -> Iterator[list[str]]:
    """``tables.regions_frame``'s rows: each model's latest map, one row per grid point, x fastest."""
    for model, (step, grid) in regions.items():
        n = grid["n"]
        xs, ys = _floats(np.linspace(*grid["x"], n)), _floats(np.linspace(*grid["y"], n))
        cells = zip(grid["classes"], _floats(grid["confidence"]))
        for i, (predicted, confidence) in enumerate(cells):
            yield [str(int(step)), model, xs[i % n], ys[i // n], str(int(predicted)), confidence]
