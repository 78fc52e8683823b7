"""Reading a run folder back (``RunRecord.read``): only regular files of the folder itself, within a
size limit when asked, parsed in chunks with every column's type checked, so a folder that is not
what a run writes is a ``RecordError`` naming the file and the first bad line."""
from __future__ import annotations

import io
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from resnet_core.records.tables import (LAYER_COLUMNS, LESION_COLUMNS, METRIC_COLUMNS, PATH_COLUMNS, PATH_OPTIONAL,
                                        REGION_COLUMNS, STEP_TABLES, LayerSnapshot, RecordError)
from resnet_core.settings import SettingsError, parse_model_name

CONFIG_MAX_BYTES = 1 << 20  # a config.json is a few kilobytes; more is not a run's
READ_CHUNK_ROWS = 50_000    # tables are read in chunks of this many rows and thinned as they come
TEXT_COLUMNS = {"model": str, "name": str, "status": str}  # the rest are numbers, parsed as such


class _Limited(io.RawIOBase):
    """A file read up to ``limit`` bytes; one byte more is an error naming the limit."""

    def __init__(self, f, limit: int | None, what: str):
        self.f, self.left, self.what, self.limit = f, limit, what, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.f.read(len(buffer))
        if self.left is not None:
            self.left -= len(data)
            if self.left < 0:
                raise RecordError(f"{self.what} is larger than {_size(self.limit)}, more than a replay reads")
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.f.close()
        super().close()


class Reader:
    """One read of a run folder: safe opens, chunked typed parsing, every problem a RecordError."""

    def __init__(self, run: Path, label: str, max_bytes: int | None):
        self.run, self.label, self.max_bytes = run, label, max_bytes
        self.current = "config.json"

    def where(self, file: str) -> str:
        return f"{self.label}/{file}"

    def open(self, file: str, required: bool = True):
        """The file as a bounded binary stream, or None when it is optional and absent."""
        self.current = file
        path = self.run / file
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            if required:
                raise RecordError(f"{self.label} is not a run folder: {file} is missing") from None
            return None
        if stat.S_ISLNK(info.st_mode):
            raise RecordError(f"{self.where(file)} is a link; a run folder holds its own files")
        if not stat.S_ISREG(info.st_mode):
            raise RecordError(f"{self.where(file)} is not a regular file")
        if self.max_bytes is not None and info.st_size > self.max_bytes:
            raise RecordError(f"{self.where(file)} has {_size(info.st_size)}, more than the {_size(self.max_bytes)} "
                              "a replay reads")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        f = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped since the check
            f.close()
            raise RecordError(f"{self.where(file)} is not a regular file")
        return io.BufferedReader(_Limited(f, self.max_bytes, self.where(file)))

    def chunks(self, file: str, columns: list[str], required: bool = True):
        stream = self.open(file, required)
        if stream is None:
            return
        with stream:
            try:
                reader = pd.read_csv(stream, dtype=TEXT_COLUMNS, chunksize=READ_CHUNK_ROWS)
                first = True
                line = 2
                for chunk in reader:
                    if first:
                        _require(chunk, columns, self.where(file))
                        first = False
                    yield _Typed(chunk, self.where(file), line)
                    line += len(chunk)
                if first:  # a header and no rows
                    yield None
            except pd.errors.EmptyDataError:
                raise RecordError(f"{self.where(file)} is empty; it needs at least its header line") from None
            except pd.errors.ParserError:
                raise RecordError(f"{self.where(file)}: cannot read it (ParserError)") from None
            except UnicodeDecodeError:
                raise RecordError(f"{self.where(file)} is not UTF-8 text") from None

    def config(self) -> dict[str, Any]:
        stream = self.open("config.json")
        with stream:
            raw = stream.read(CONFIG_MAX_BYTES + 1)
        if len(raw) > CONFIG_MAX_BYTES:
            raise RecordError(f"{self.where('config.json')} is larger than {_size(CONFIG_MAX_BYTES)}; a run's is a "
                              "few kilobytes")
        try:
            config = json.loads(raw.decode("utf-8"))
        except RecursionError:
            raise RecordError(f"{self.where('config.json')} is nested too deeply to be a run's configuration") from None
        except (ValueError, UnicodeDecodeError):
            raise RecordError(f"{self.where('config.json')} is not valid JSON") from None
        if not isinstance(config, dict):
            raise RecordError(f"{self.where('config.json')} must hold a JSON object, not a {type(config).__name__}")
        for key in ("settings", "dataset"):
            if key in config and not isinstance(config[key], dict):
                raise RecordError(f"{self.where('config.json')}: {key} must be an object")
        models = config.get("models", [])
        if not isinstance(models, list):
            raise RecordError(f"{self.where('config.json')}: models must be a list")
        for i, model in enumerate(models):
            if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not model["name"].strip():
                raise RecordError(f"{self.where('config.json')}: model {i + 1} has no name")
            _model_name(model["name"], self.where("config.json"))
        return config

    def read(self, cls):
        config = self.config()
        record = cls(config)
        for typed in self.chunks("metrics.csv", METRIC_COLUMNS):
            if typed is None:
                continue
            cols = {"step": typed.whole("step"), "model": typed.models(), "train_loss": typed.number("train_loss"),
                    "train_error": typed.fraction("train_error"), "test_error": typed.fraction("test_error"),
                    "wall_s": typed.number("wall_s"), "status": typed.choice("status", ("ok", "diverged"))}
            record.add_metrics([{c: (int(v[i]) if c == "step" else v[i] if c in ("model", "status") else _none(v[i]))
                                 for c, v in cols.items()} for i in range(len(cols["step"]))])
        self._read_layers(record)
        if self._exists("paths.csv"):
            for typed in self.chunks("paths.csv", PATH_COLUMNS, required=False):
                if typed is None:
                    continue
                cols = {"step": typed.whole("step"), "model": typed.models(), "length": typed.whole("length")}
                extra = [c for c in PATH_OPTIONAL if c in typed.frame.columns]
                for c in ("n_paths", "grad_norm", "share", "residual", *extra):
                    cols[c] = typed.number(c)
                n = len(cols["step"])
                record.add_paths([{c: (int(v[i]) if c in ("step", "length") else v[i] if c == "model" else float(v[i]))
                                   for c, v in cols.items()} for i in range(n)])
        for table, columns in STEP_TABLES.items():
            if self._exists(table):
                self._read_step_table(record, table, columns)
        if self._exists("lesion.csv"):
            rows = []
            for typed in self.chunks("lesion.csv", LESION_COLUMNS, required=False):
                if typed is None:
                    continue
                models, blocks, errors = typed.models(), typed.whole("block", lo=-1), typed.fraction("train_error")
                rows += [{"model": models[i], "block": int(blocks[i]), "train_error": float(errors[i])}
                         for i in range(len(models))]
            record.set_lesion(rows)
        if self._exists("regions.csv"):
            frames = [typed.regions() for typed in self.chunks("regions.csv", REGION_COLUMNS, required=False)
                      if typed is not None]
            if frames:
                _add_regions(record, pd.concat(frames, ignore_index=True), self.where("regions.csv"))
        record.folder = self.run
        return record

    def _read_step_table(self, record, table: str, columns: list[str]) -> None:
        """signal.csv, jacobian.csv, lens.csv: step, model, a whole-number index, then numbers (the lens's
        error a fraction)."""
        for typed in self.chunks(table, columns, required=False):
            if typed is None:
                continue
            cols = {"step": typed.whole("step"), "model": typed.models(), columns[2]: typed.whole(columns[2])}
            for c in columns[3:]:
                cols[c] = typed.fraction(c) if c == "train_error" else typed.number(c)
            whole = ("step", columns[2])
            record.add_rows(table, [{c: (int(v[i]) if c in whole else v[i] if c == "model" else float(v[i]))
                                     for c, v in cols.items()} for i in range(len(cols["step"]))])

    def _exists(self, file: str) -> bool:
        return os.path.lexists(self.run / file)

    def _read_layers(self, record) -> None:
        """Snapshots from layers.csv: the rows of one (model, step) come together, layers 0..L-1 in
        order, and every step of a model has the same L layers."""
        pending: pd.DataFrame | None = None
        where = self.where("layers.csv")
        depth: dict[str, tuple[int, int]] = {}  # model -> (layers, first step)

        def add(group: pd.DataFrame) -> None:
            model, step = group["model"].iloc[0], int(group["step"].iloc[0])
            layers = group["layer"].to_numpy()
            if not np.array_equal(layers, np.arange(len(layers))):
                raise RecordError(f"{where}: the layers of {model} at step {step} are not 0 to {len(layers) - 1} "
                                  "in order, one row each")
            if model not in depth:
                depth[model] = (len(layers), step)
                record.layer_names[model] = list(group["name"])
            elif depth[model][0] != len(layers):
                first, at = depth[model]
                raise RecordError(f"{where}: {model} has {first} layer{'s' if first != 1 else ''} at step {at} but "
                                  f"{len(layers)} at step {step}; every step needs the same layers")
            record.add_layers(model, LayerSnapshot(step, group["grad_norm"].to_numpy(float),
                                                   group["act_std"].to_numpy(float),
                                                   group["branch_ratio"].to_numpy(float)))

        for typed in self.chunks("layers.csv", LAYER_COLUMNS):
            if typed is None:
                continue
            frame = pd.DataFrame({"step": typed.whole("step"), "model": typed.models(), "layer": typed.whole("layer"),
                                  "name": typed.text("name"), "grad_norm": typed.number("grad_norm"),
                                  "act_std": typed.number("act_std"), "branch_ratio": typed.number("branch_ratio")})
            if pending is not None:
                frame = pd.concat([pending, frame], ignore_index=True)
            key = frame["model"] + "\x00" + frame["step"].astype(str)
            starts = np.flatnonzero(np.r_[True, key.to_numpy()[1:] != key.to_numpy()[:-1]])
            for a, b in zip(starts[:-1], starts[1:]):
                add(frame.iloc[a:b])
            pending = frame.iloc[starts[-1]:]  # the last group may go on in the next chunk
        if pending is not None and len(pending):
            add(pending)


class _Typed:
    """One chunk of a table, as text, with checked conversions that name the first bad cell."""

    def __init__(self, frame: pd.DataFrame, where: str, first_line: int):
        self.frame, self.where, self.first_line = frame, where, first_line

    def _bad(self, column: str, mask: np.ndarray, what: str) -> None:
        i = int(np.flatnonzero(mask)[0])
        cell = self.frame[column].iloc[i]
        value = "" if isinstance(cell, float) and math.isnan(cell) else str(cell)
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise RecordError(f"{self.where}: column {column} has {shown!r} on line {self.first_line + i}; {what}")

    def number(self, column: str) -> np.ndarray:
        """The column as floats; empty cells (and "nan") are NaN, any other text is an error. pandas
        parses a clean column as numbers already (8 bytes a cell, not a string each)."""
        raw = self.frame[column]
        if pd.api.types.is_numeric_dtype(raw):
            return raw.to_numpy(dtype=np.float64)
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        text = raw.astype(str).str.strip().str.lower()
        bad = np.isnan(values) & raw.notna().to_numpy() & ~text.isin(["", "nan"]).to_numpy()
        if bad.any():
            self._bad(column, bad, "it must be a number (or empty)")
        return values

    def text(self, column: str) -> np.ndarray:
        return self.frame[column].fillna("").astype(str).to_numpy(dtype=object)

    def fraction(self, column: str) -> np.ndarray:
        values = self.number(column)
        bad = ~np.isnan(values) & ((values < 0) | (values > 1))
        if bad.any():
            self._bad(column, bad, "errors are fractions from 0 to 1")
        return values

    def whole(self, column: str, lo: int = 0) -> np.ndarray:
        raw = self.frame[column]
        values = (raw.to_numpy(dtype=np.float64) if pd.api.types.is_numeric_dtype(raw)
                  else pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64))
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (values != np.floor(values)) | (values < lo) | (values > 1e12)
        if bad.any():
            self._bad(column, bad, f"it must be a whole number, {lo} or more")
        return values.astype(np.int64)

    def models(self) -> np.ndarray:
        names = self.text("model")
        for name in pd.unique(names):
            _model_name(name, self.where)
        return names

    def choice(self, column: str, allowed: tuple[str, ...]) -> np.ndarray:
        values = self.text(column)
        bad = ~np.isin(values, allowed)
        if bad.any():
            self._bad(column, bad, f"it must be one of {', '.join(allowed)}")
        return values

    def regions(self) -> pd.DataFrame:
        out = pd.DataFrame({"step": self.whole("step"), "model": self.models()})
        for c in ("x", "y", "confidence"):
            out[c] = self.number(c)
        bad = ~np.isfinite(out[["x", "y"]].to_numpy()).all(axis=1)
        if bad.any():
            self._bad("x", bad, "grid points must be finite numbers")
        out["predicted"] = self.whole("predicted")
        return out


def _model_name(name: Any, where: str) -> None:
    """A run's model names are the app's own (plain-D, resnet-D): anything else did not come from a run."""
    text = str(name)
    try:
        if not text.strip():
            raise SettingsError("empty")
        parse_model_name(text)
    except SettingsError:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise RecordError(f"{where}: {shown!r} is not a model name like plain-20 or resnet-56") from None


def _none(value: float) -> float | None:
    v = float(value)
    return None if math.isnan(v) else v


def _add_regions(record, frame: pd.DataFrame, where: str) -> None:
    for model, g in frame.groupby("model", sort=False):
        g = g.sort_values(["y", "x"])
        n = g["x"].nunique()
        if n < 2 or len(g) != n * n or g["step"].nunique() != 1:
            raise RecordError(f"{where}: the map of {model} is not one square grid of one step")
        record.set_regions(str(model), int(g["step"].iloc[0]), {
            "x": [float(g["x"].min()), float(g["x"].max())], "y": [float(g["y"].min()), float(g["y"].max())],
            "n": n, "classes": g["predicted"].astype(int).tolist(), "confidence": g["confidence"].astype(float).tolist()})


def _require(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RecordError(f"{where} lacks the column(s) {', '.join(missing)}")


def _size(n: int) -> str:
    mb = n / (1 << 20)
    return f"{mb:,.0f} MB" if mb >= 10 else f"{mb:.1f} MB" if mb >= 1 else f"{n:,} bytes"
