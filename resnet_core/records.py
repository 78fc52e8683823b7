"""What a run records, in memory while it trains and as tidy files in its folder.

Metrics are rows; per-layer measurements are kept as one numpy vector per (model, step) so
that a 1000-layer net over 1000 steps stays compact, and are turned into tidy rows only when
written or asked for as a table. Every method is safe to call from another thread.
"""
from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from resnet_core.errors import UserError

METRIC_COLUMNS = ["step", "model", "train_loss", "train_error", "test_error", "wall_s", "status"]
LAYER_COLUMNS = ["step", "model", "layer", "name", "grad_norm", "act_std", "branch_ratio"]
PATH_COLUMNS = ["step", "model", "length", "n_paths", "grad_norm", "share", "residual"]
PATH_OPTIONAL = ["path_norm"]  # Veit et al.'s sampled per-path magnitude, where it was measured
LESION_COLUMNS = ["model", "block", "train_error"]
REGION_COLUMNS = ["step", "model", "x", "y", "predicted", "confidence"]  # the latest map per model, one row per grid point


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


class RunRecord:
    def __init__(self, config: dict[str, Any] | None = None, layer_names: dict[str, list[str]] | None = None):
        self.config = config or {}
        self.layer_names = dict(layer_names or {})
        self._lock = threading.Lock()
        self._metrics: list[dict[str, Any]] = []
        self._layers: dict[str, list[LayerSnapshot]] = {m: [] for m in self.layer_names}
        self._paths: list[dict[str, Any]] = []
        self._lesion: list[dict[str, Any]] = []
        self._regions: dict[str, tuple[int, dict[str, Any]]] = {}  # latest decision map per model
        self._region_history: list[tuple[int, str, _StoredMap]] = []  # every map set, oldest first
        self.version = 0  # bumped on every change, so a reader can tell when to redraw

    # ---- writing -------------------------------------------------------------------------
    def add_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            self._metrics.extend(rows)
            self.version += 1

    def add_layers(self, model: str, snapshot: LayerSnapshot) -> None:
        with self._lock:
            self._layers.setdefault(model, []).append(snapshot)
            self.version += 1

    def add_paths(self, rows: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            self._paths.extend(rows)
            self.version += 1

    def set_lesion(self, rows: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            self._lesion = list(rows)
            self.version += 1

    def set_regions(self, model: str, step: int, grid: dict[str, Any]) -> None:
        with self._lock:
            self._regions[model] = (step, grid)
            self._region_history.append((int(step), model, _StoredMap.of(grid)))
            self.version += 1

    def set_region_history(self, maps: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        """Replace every decision map with ``maps`` ((step, model, grid), oldest first): the latest
        map per model becomes the last one given for it."""
        history = [(int(step), model, _StoredMap.of(grid)) for step, model, grid in maps]
        with self._lock:
            self._region_history = history
            self._regions = {model: (step, stored.grid()) for step, model, stored in history}
            self.version += 1

    # ---- reading -------------------------------------------------------------------------
    def regions(self) -> dict[str, tuple[int, dict[str, Any]]]:
        with self._lock:
            return dict(self._regions)

    def region_history(self, until: int | None = None) -> list[tuple[int, str, dict[str, Any]]]:
        """Every decision map set so far as (step, model, grid), oldest first; with ``until``, only
        those of steps up to it. ``regions()`` is the latest of each model's."""
        with self._lock:
            history = list(self._region_history)
        return [(step, model, stored.grid()) for step, model, stored in history if until is None or step <= until]

    def regions_at(self, step: int) -> dict[str, tuple[int, dict[str, Any]]]:
        """Each model's decision map as it stood at ``step``: the latest set at or before it."""
        with self._lock:
            current = {model: (s, stored) for s, model, stored in self._region_history if s <= step}
        return {model: (s, stored.grid()) for model, (s, stored) in current.items()}

    def lesion_rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._lesion)

    def metrics_frame(self) -> pd.DataFrame:
        with self._lock:
            rows = list(self._metrics)
        return pd.DataFrame(rows, columns=METRIC_COLUMNS)

    def paths_frame(self) -> pd.DataFrame:
        with self._lock:
            rows = list(self._paths)
        extra = [c for c in PATH_OPTIONAL if any(c in r for r in rows)]
        return pd.DataFrame(rows, columns=PATH_COLUMNS + extra)

    def lesion_frame(self) -> pd.DataFrame:
        with self._lock:
            rows = list(self._lesion)
        return pd.DataFrame(rows, columns=LESION_COLUMNS)

    def regions_frame(self) -> pd.DataFrame:
        """Each model's latest decision map as rows: the grid runs over x fastest, then y."""
        frames = []
        for model, (step, grid) in self.regions().items():
            n = grid["n"]
            xs, ys = np.linspace(*grid["x"], n), np.linspace(*grid["y"], n)
            frames.append(pd.DataFrame({"step": step, "model": model, "x": np.tile(xs, n), "y": np.repeat(ys, n),
                                        "predicted": grid["classes"], "confidence": grid["confidence"]}))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=REGION_COLUMNS)

    def snapshots(self, model: str) -> list[LayerSnapshot]:
        with self._lock:
            return list(self._layers.get(model, []))

    def layer_matrix(self, model: str, field: str, max_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values[step, layer]) for one measurement; evenly thinned to max_steps rows."""
        snaps = self.snapshots(model)
        if max_steps and len(snaps) > max_steps:
            keep = np.unique(np.linspace(0, len(snaps) - 1, max_steps).round().astype(int))
            snaps = [snaps[i] for i in keep]
        steps = np.array([s.step for s in snaps], dtype=np.int64)
        depth = len(self.layer_names.get(model, []))
        values = np.stack([getattr(s, field) for s in snaps]) if snaps else np.empty((0, depth))
        return steps, values

    def layers_frame(self) -> pd.DataFrame:
        frames = []
        with self._lock:
            items = [(m, list(s)) for m, s in self._layers.items()]
        for model, snaps in items:
            names = self.layer_names.get(model, [])
            for snap in snaps:
                frames.append(pd.DataFrame({
                    "step": snap.step, "model": model, "layer": np.arange(len(names)), "name": names,
                    "grad_norm": snap.grad_norm, "act_std": snap.act_std, "branch_ratio": snap.branch_ratio,
                }))
        if not frames:
            return pd.DataFrame(columns=LAYER_COLUMNS)
        return pd.concat(frames, ignore_index=True)[LAYER_COLUMNS]

    def models(self) -> list[str]:
        return [m["name"] for m in self.config.get("models", [])] or list(self.layer_names)

    def latest_step(self) -> int:
        with self._lock:
            return max((r["step"] for r in self._metrics), default=0)

    # ---- files -----------------------------------------------------------------------------
    def write(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(self.config, indent=2, default=_jsonable) + "\n")
        self.metrics_frame().to_csv(out / "metrics.csv", index=False)
        self.layers_frame().to_csv(out / "layers.csv", index=False)
        paths = self.paths_frame()
        if len(paths):
            paths.to_csv(out / "paths.csv", index=False)
        for name, frame in (("lesion.csv", self.lesion_frame()), ("regions.csv", self.regions_frame())):
            if len(frame):
                frame.to_csv(out / name, index=False)
        return out

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunRecord":
        run = Path(run_dir)
        try:
            config = json.loads((run / "config.json").read_text())
            metrics = pd.read_csv(run / "metrics.csv")
            layers = pd.read_csv(run / "layers.csv")
        except FileNotFoundError as exc:
            raise RecordError(f"{run} is not a run folder: {Path(exc.filename).name} is missing") from None
        except (ValueError, OSError) as exc:
            raise RecordError(f"{run}: cannot read its files ({type(exc).__name__})") from None
        _require(metrics, METRIC_COLUMNS, run / "metrics.csv")
        _require(layers, LAYER_COLUMNS, run / "layers.csv")
        names = {m: list(g.sort_values("layer").drop_duplicates("layer")["name"]) for m, g in layers.groupby("model", sort=False)}
        record = cls(config, names)
        record.add_metrics(metrics.astype(object).where(metrics.notna(), None).to_dict("records"))
        for model, group in layers.groupby("model", sort=False):
            for step, g in group.groupby("step", sort=True):
                g = g.sort_values("layer")
                record.add_layers(model, LayerSnapshot(int(step), g["grad_norm"].to_numpy(float),
                                                       g["act_std"].to_numpy(float), g["branch_ratio"].to_numpy(float)))
        # Tables only some runs record:
        if (run / "paths.csv").exists():
            record.add_paths(_read_table(run / "paths.csv", PATH_COLUMNS).to_dict("records"))
        if (run / "lesion.csv").exists():
            record.set_lesion(_read_table(run / "lesion.csv", LESION_COLUMNS).to_dict("records"))
        if (run / "regions.csv").exists():
            _add_regions(record, _read_table(run / "regions.csv", REGION_COLUMNS), run / "regions.csv")
        return record


@dataclass(frozen=True)
class _StoredMap:
    """A decision map kept compactly for the history: classes as small integers and confidences
    (rounded to 3 decimals by the trainer) as thousandths, where that loses nothing."""
    meta: dict[str, Any]
    classes: np.ndarray
    confidence: np.ndarray  # uint16 thousandths, or float64 when the values are not whole thousandths

    @classmethod
    def of(cls, grid: dict[str, Any]) -> "_StoredMap":
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


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise RecordError(f"{path}: cannot read it ({type(exc).__name__})") from None
    _require(frame, columns, path)
    return frame


def _add_regions(record: RunRecord, frame: pd.DataFrame, path: Path) -> None:
    for model, g in frame.groupby("model", sort=False):
        g = g.sort_values(["y", "x"])
        n = g["x"].nunique()
        if n < 2 or len(g) != n * n or g["step"].nunique() != 1:
            raise RecordError(f"{path}: the map of {model} is not one square grid of one step")
        record.set_regions(str(model), int(g["step"].iloc[0]), {
            "x": [float(g["x"].min()), float(g["x"].max())], "y": [float(g["y"].min()), float(g["y"].max())],
            "n": n, "classes": g["predicted"].astype(int).tolist(), "confidence": g["confidence"].astype(float).tolist()})


def _require(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RecordError(f"{path} lacks the column(s) {', '.join(missing)}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
