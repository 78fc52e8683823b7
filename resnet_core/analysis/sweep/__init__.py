"""The depth sweep: plain and residual nets over a list of depths and seeds (He et al. 2015,
Table 6 and Fig. 6), one independent run per (family, depth, seed).

Runs share nothing, so they are jobs of ``resnet_core.scheduling.job_pool.JobPool``: worker processes with one torch
thread each, results back as JSON rows as runs finish (a live chart fills in as they come).
An MLP's runs of one depth (both families, every seed and learning rate) have the same parameter shapes, so by
default they are one job, trained side by side as members of shared stacks (``training.member_stacks``,
as a worker trains a class's runs of one shape: one kernel call per layer for all of them, each run's
numbers those of its own run), which answers one row per run. ``RESIDUAL_LAB_ENGINE=autograd`` (no fast
path) or ``plan_sweep(..., stack=False)`` plans one job per run instead (the CNN always does).

    rows = list(run_sweep(plan_sweep(settings, depths=(8, 20, 56), seeds=(0, 1, 2)), workers=2))
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from resnet_core import config
from resnet_core.scheduling.job_pool import JobPool
from resnet_core.settings import RANGES, Settings, SettingsError, check_depth

# ``lr``: the run's learning rate (a sweep over learning rates x depths: ``plan_sweep(lrs=...)``).
SWEEP_COLUMNS = ["family", "depth", "seed", "train_error", "test_error", "mean_train_error", "wall_s", "lr"]
DEFAULT_DEPTHS = (8, 14, 20, 32, 44, 56)
DEFAULT_SEEDS = (0, 1, 2)
FAMILIES = ("plain", "resnet")
MAX_RUNS = 240  # a sweep is for a lesson, not a cluster: 20 depths x 6 seeds x 2 families
PROGRESS_EVERY = 25  # steps between a run's progress messages
STACK = config.get("ENGINE") != "autograd"  # train a depth's runs side by side

# ---------------------------------------------------------------------------- planning a sweep

def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """Parse "8,14,20" into (8, 14, 20); a one-line SettingsError for anything else."""
    return _parse_list(text, what, int, "whole numbers", "8,14,20")


def parse_float_list(text: str, what: str) -> tuple[float, ...]:
    """Parse "0.01,0.1" into (0.01, 0.1); a one-line SettingsError for anything else."""
    return _parse_list(text, what, float, "numbers", "0.01,0.03,0.1")


def _parse_list(text: str, what: str, kind: type, noun: str, example: str) -> tuple:
    try:
        values = tuple(kind(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise SettingsError(f"{what} must be {noun} separated by commas, e.g. {example} (got {text!r})") from None
    if not values:
        raise SettingsError(f"{what}: give at least one, e.g. {example}")
    return values


def plan_sweep(settings: Settings, depths: Iterable[int] = DEFAULT_DEPTHS, seeds: Iterable[int] = DEFAULT_SEEDS,
               steps: int | None = None, families: Iterable[str] = FAMILIES,
               stack: bool | None = None, lrs: Iterable[float] | None = None,
               cores: int | None = None) -> list[dict[str, Any]]:
    """Jobs deepest first (the longest runs start first, so the workers finish together). Every
    depth is checked with the Settings rules before anything runs. ``lrs``: learning rates, each
    (family, depth, seed) trained at every one of them (default: the settings' own).

    Stacked (``stack``, by default ``STACK``; MLPs only): one job per depth whose ``runs`` are the
    jobs of its families, seeds and learning rates, trained side by side, answering one row per
    run; where that makes fewer jobs than ``cores`` (by default this machine's), the largest are
    halved, a plain net and its residual twin kept together, so that no core waits. Otherwise one
    job per (family, depth, seed, learning rate)."""
    base = settings.checked()
    depths = sorted(set(int(d) for d in depths))
    seeds = sorted(set(int(s) for s in seeds))
    families = tuple(families)
    if not depths or not seeds:
        raise SettingsError("a sweep needs at least one depth and one seed")
    if any(f not in FAMILIES for f in families) or not families:
        raise SettingsError(f"families must be among {', '.join(FAMILIES)}")
    for depth in depths:
        check_depth(base, depth)
    lo, hi = RANGES["seed"]
    if any(not lo <= s <= hi for s in seeds):
        raise SettingsError(f"seeds must be from {lo:g} to {hi:g}")
    lrs = sorted(set(float(lr) for lr in lrs)) if lrs is not None else [base.lr]
    if not lrs:
        raise SettingsError("a sweep needs at least one learning rate")
    for lr in lrs:
        base.with_changes(lr=lr)  # the setting's own range, its own message
    runs = len(depths) * len(seeds) * len(families) * len(lrs)
    if runs > MAX_RUNS:
        raise SettingsError(f"a sweep of {runs} runs is too big: at most {MAX_RUNS} (fewer depths, seeds or "
                            "learning rates)")
    # No per-layer probes, no path analysis: a sweep wants errors only, as fast as they come.
    base = base.with_changes(steps=steps or base.steps, probe_every=RANGES["probe_every"][1], paths_every=0)
    by_depth = [[{"family": family, "depth": depth, "seed": seed,
                  "settings": base.with_changes(models=(f"{family}-{depth}",), seed=seed, lr=lr).to_dict()}
                 for lr in lrs for seed in seeds for family in families]
                for depth in sorted(depths, reverse=True)]
    if not ((stack if stack is not None else STACK) and stackable(base)):
        return [run for runs in by_depth for run in runs]
    groups = _halved(by_depth, len(families), cores or os.cpu_count() or 1)
    return [{"depth": runs[0]["depth"], "runs": runs} for runs in groups]


def _halved(groups: list[list[dict[str, Any]]], twins: int, cores: int) -> list[list[dict[str, Any]]]:
    """The groups, the largest halved (at a multiple of ``twins``, so a plain net and its residual
    twin stay together) until there are ``cores`` of them or none has two sets of twins; in order."""
    groups = list(groups)
    while len(groups) < cores:
        largest = max(range(len(groups)), key=lambda i: len(groups[i]))
        runs = groups[largest]
        if len(runs) < 2 * twins:
            break
        cut = (len(runs) // twins + 1) // 2 * twins
        groups[largest:largest + 1] = [runs[:cut], runs[cut:]]
    return groups


def stackable(settings: Settings) -> bool:
    """MLPs, whose runs of one shape a stack may hold (a net it does not hold, such as zero-padded
    shortcuts between stages, trains its own passes where the job runs)."""
    return settings.arch == "mlp" and not (settings.shortcut == "pad" and settings.stages > 1)


def job_runs(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs (jobs of one run each) a job trains: those a stacked job holds, or itself."""
    return job["runs"] if "runs" in job else [job]


def run_count(jobs: list[dict[str, Any]]) -> int:
    """Runs (rows of sweep.csv) the jobs make: a stacked job makes one per run it holds."""
    return sum(len(job_runs(job)) for job in jobs)


def deepest_run(jobs: list[dict[str, Any]]) -> Settings:
    """The settings of the sweep's deepest run (its first): the one to check before anything runs."""
    return Settings.from_dict(job_runs(jobs[0])[0]["settings"])


def result_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of sweep.csv in one job's answer: a stacked job's list, or the one row."""
    return list(result["rows"]) if "rows" in result else [result]


def run_sweep(jobs: list[dict[str, Any]], workers: int = 1, pool: JobPool | None = None,
              on_progress: Callable[[float], None] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of sweep.csv as runs finish (partial results for a live chart); a stacked job's rows
    come together, when it finishes."""
    own = pool is None
    pool = pool or JobPool(workers)
    fraction = [0.0] * len(jobs)
    try:
        for event in pool.run("train", jobs):
            if event.partial is not None:
                fraction[event.index] = event.partial["step"] / max(event.partial["steps"], 1)
            else:
                fraction[event.index] = 1.0
            if on_progress is not None:
                on_progress(sum(fraction) / max(len(jobs), 1))
            if event.result is not None:
                yield from result_rows(event.result)
    finally:
        if own:
            pool.close()


def sweep_frame(rows: Iterable[dict[str, Any]]):
    """The rows as a table with the columns of sweep.csv (None -> NaN), sorted for reading."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=SWEEP_COLUMNS)
    for column in SWEEP_COLUMNS[3:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame.sort_values(["family", "depth", "lr", "seed"], ignore_index=True)


def write_sweep_csv(rows: Iterable[dict[str, Any]], out_dir: str | Path) -> Path:
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    sweep_frame(rows).to_csv(path / "sweep.csv", index=False)
    return path / "sweep.csv"


def sweep_summary(frame):
    """Mean and spread over seeds per (family, depth), and per learning rate where the sweep has
    several: what the degradation curve plots."""
    keys = ["family", "depth"] + (["lr"] if frame["lr"].nunique() > 1 else [])
    grouped = frame.groupby(keys, sort=True)
    out = grouped[["train_error", "test_error", "mean_train_error"]].agg(["mean", "min", "max"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["seeds"] = grouped.size()
    return out.reset_index()
