"""What a lesson's check may read of a run, and the rule every check answers by.

A check never knows what the run "should" show. It finds the models playing each part from the
run's model names (the shallow plain net, its deep twin, ...), reads their numbers from the
metrics, layer, path and lesion tables (``RunView``), and answers (``decide``):

- ``not yet``: too little evidence so far (a lesson's minimum share of the steps, a minimum number
  of evaluations), or the figures do not show the claim *yet* while the run goes on;
- ``shown``: enough evidence, and the figures show the claim (quoted in the summary);
- ``not shown``: the run has ended (or a model it needs diverged, or it lacks a model the claim
  needs) and the figures do not show the claim; the details say why.

Errors are fractions; gaps between them are quoted in percentage points.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from resnet_core.records import RunRecord, run_finished
from resnet_core.settings import DEFAULTS, ModelSpec, SettingsError, parse_model_name

SHOWN, NOT_YET, NOT_SHOWN = "shown", "not yet", "not shown"
LATE = 0.25  # "where the run got to": the mean over the evaluations in the last quarter of the steps so far


@dataclass(frozen=True)
class Verdict:
    state: str            # "shown" | "not yet" | "not shown"
    summary: str          # one sentence with the figures
    details: list[str] = field(default_factory=list)

    @property
    def shown(self) -> bool:
        return self.state == SHOWN


class RunView:
    """The parts of one run a check may read: its configuration and its tables, as recorded."""

    def __init__(self, record: RunRecord):
        self.record = record
        self.settings = dict(record.config.get("settings", {}))
        self.metrics = record.metrics_frame()
        self.step = int(self.metrics["step"].max()) if len(self.metrics) else 0
        self.target = int(self.settings.get("steps") or 0) or self.step
        self.models = record.models()
        self.model_info = {m["name"]: m for m in record.config.get("models", []) if "name" in m}
        self._specs: dict[str, ModelSpec] = {}
        for name in self.models:
            try:
                self._specs[name] = parse_model_name(name)
            except SettingsError:
                continue  # a name from a newer or older version: not a part any check can cast

    # ---- the run as a whole ------------------------------------------------------------------
    @property
    def progress(self) -> float:
        return self.step / self.target if self.target else 0.0

    def diverged_at(self, model: str) -> int | None:
        rows = self.metrics[(self.metrics["model"] == model) & (self.metrics["status"] == "diverged")]
        return int(rows["step"].iloc[0]) if len(rows) else None

    @property
    def finished(self) -> bool:
        status = {m: "ok" if self.diverged_at(m) is None else "diverged" for m in self.models}
        return run_finished(self.step, self.target or math.inf, status)

    def evaluations(self, model: str) -> pd.DataFrame:
        m = self.metrics
        return m[(m["model"] == model) & (m["status"] == "ok")].sort_values("step")

    # ---- the models, by the part they play ---------------------------------------------------------
    def specs(self) -> dict[str, ModelSpec]:
        return dict(self._specs)

    def effective(self, spec: ModelSpec, option: str):
        """A model's own suffix (-b1, -pre, -nobn) if it has one, else the run's setting."""
        own = getattr(spec, option)
        return own if own is not None else self.settings.get(option, getattr(DEFAULTS, option))

    def pick(self, family: str, **options) -> list[str]:
        """Models of one family whose effective options match, deepest first."""
        specs = self.specs()
        found = [n for n, s in specs.items() if s.family == family
                 and all(self.effective(s, k) == v if not callable(v) else v(self.effective(s, k))
                         for k, v in options.items())]
        return sorted(found, key=lambda n: -specs[n].depth)

    def depth(self, model: str) -> int:
        return self._specs[model].depth

    def twins(self) -> tuple[str, str] | None:
        """(residual net, plain net) of the same depth, the deepest such pair; None without one
        (the check then says ``NO_TWINS``)."""
        return self.same_depth(self.pick("resnet"), self.pick("plain"))

    def same_depth(self, first: list[str], second: list[str]) -> tuple[str, str] | None:
        """The first pair (a from ``first``, b from ``second``, two models) of equal depth: with
        ``pick``'s deepest-first lists, the deepest such pair (a residual net and its plain twin)."""
        for a in first:
            for b in second:
                if a != b and self.depth(a) == self.depth(b):
                    return a, b
        return None

    # ---- figures ------------------------------------------------------------------------------------
    def late_error(self, model: str, column: str = "train_error") -> float:
        """Mean error over the evaluations in the last quarter of the steps this model trained."""
        ev = self.evaluations(model)
        if not len(ev):
            return math.nan
        last = ev["step"].max()
        return float(ev.loc[ev["step"] >= last * (1 - LATE), column].mean())

    def mean_error(self, model: str) -> float:
        """Mean training error over every evaluation so far: the area under the training curve,
        lower for a net that gets there faster."""
        ev = self.evaluations(model)
        return float(ev["train_error"].mean()) if len(ev) else math.nan

    def first_step_below(self, model: str, level: float) -> int | None:
        ev = self.evaluations(model)
        hit = ev[ev["train_error"] <= level]
        return int(hit["step"].iloc[0]) if len(hit) else None

    def late_window(self) -> str:
        return f"steps {math.ceil(self.step * (1 - LATE))}-{self.step}"


# ---- shared verdict logic -------------------------------------------------------------------------
def decide(view: RunView, holds: bool, summary: str, details: list[str], *, min_fraction: float = 0.5,
           min_evaluations: int = 5, needs: list[str] | None = None) -> Verdict:
    """The common rule: not yet until the evidence is in; shown when it holds; not shown only once
    the run has ended (or a model it needs diverged) without it holding."""
    where = f"Judged at step {view.step} of {view.target}."
    for model in needs or []:
        at = view.diverged_at(model)
        if at is not None:
            return Verdict(NOT_SHOWN, f"{model} diverged at step {at}, so the run cannot show the claim.",
                           ["Its loss became infinite or NaN; a lower learning rate (lr) usually cures it.", where])
    evaluations = min((len(view.evaluations(m)) for m in needs or []), default=len(view.metrics))
    if view.progress < min_fraction or evaluations < min_evaluations:
        if view.finished:
            return Verdict(NOT_SHOWN, f"The run was too short to judge: {view.step} steps and {evaluations} "
                                      f"evaluations; the check needs at least {min_evaluations}.",
                           [f"So far: {summary}", "Train for more steps (or evaluate more often)."])
        wait = max(math.ceil(min_fraction * view.target), 1)
        return Verdict(NOT_YET, f"Training: step {view.step} of {view.target}; the check judges from step {wait} "
                                f"on (and after at least {min_evaluations} evaluations).", [f"So far: {summary}"])
    if holds:
        return Verdict(SHOWN, summary, details + [where])
    if not view.finished:
        return Verdict(NOT_YET, f"Not shown so far: {summary}", details + [where + " The verdict is final when the run ends."])
    return Verdict(NOT_SHOWN, summary, details + [where])


NO_TWINS = "it has no plain net and residual net of the same depth"  # why a twin lesson cannot be checked


def cannot(why: str, hint: str) -> Verdict:
    """The run lacks what the claim is about (e.g. no plain net deeper than another)."""
    return Verdict(NOT_SHOWN, f"This run cannot show it: {why}.", [hint])


def pct(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f} %"


def points(x: float) -> str:
    """A gap between two errors, unsigned, in percentage points ("23 points", "0.4 points")."""
    p = abs(100 * x)
    if not math.isfinite(p):
        return "- points"
    return f"{p:.1f} points" if p < 2 else f"{p:.0f} points"


def ratio_text(x: float) -> str:
    if not math.isfinite(x):
        return "undefined"
    if x == 0:
        return "0"
    if 1000 <= x < 1e7:
        return f"{x:,.0f}"
    if 10 <= x < 1000:
        return f"{x:.0f}"
    return f"{x:.1e}" if x < 0.01 or x >= 1e7 else f"{x:.2f}"


def by_step(matrix: tuple[np.ndarray, np.ndarray], upto: int | None = None, since: int | None = None) -> np.ndarray:
    """Rows of a ``layer_matrix`` with step <= upto and/or >= since."""
    steps, values = matrix
    keep = np.ones(len(steps), dtype=bool)
    if upto is not None:
        keep &= steps <= upto
    if since is not None:
        keep &= steps >= since
    return values[keep]
