"""What the run cache's tests share: small settings, a live run of them, the comparison of two runs'
tables, and five tiny finished runs by key (``tests/test_run_cache.py`` and
``tests/test_run_cache_sharing.py``; the ``tiny_runs`` fixture is in ``tests/conftest.py``)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from dashboard.runtime.run_cache import run_key
from resnet_core.analysis.recorders import standard
from resnet_core.records import RunRecord
from resnet_core.settings import Settings
from resnet_core.training.lockstep import LockstepTrainer

REPO = Path(__file__).resolve().parents[1]

# The degradation lesson in small: a shallow and a deeper plain MLP beside the residual twin.
MLP = Settings(models=("plain-8", "plain-20", "resnet-20"), steps=30, eval_every=5, probe_every=1,
               paths_every=10, dataset_args={"n": 300})
TINY = Settings(models=("resnet-4",), steps=3, eval_every=3, probe_every=1, paths_every=0, batch_size=32,
                dataset_args={"n": 100})


def train(settings: Settings, steps: int | None = None, lesion: bool = False) -> RunRecord:
    """A live run, with one torch thread as every trainer of the project (module fixtures are
    made before the per-test one_thread fixture, so this sets it itself)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = LockstepTrainer(settings, recorders=standard())
        trainer.run(steps)
        if lesion:
            trainer.call("lesion_study")
        return trainer.record
    finally:
        torch.set_num_threads(threads)


def assert_same_run(a: RunRecord, b: RunRecord, *, wall_s: bool = False, history: bool = True) -> None:
    """The tables a user sees are identical, value for value (wall_s too where asked), and so is
    every decision map of the run (where asked)."""
    drop = [] if wall_s else ["wall_s"]
    pd.testing.assert_frame_equal(a.metrics_frame().drop(columns=drop), b.metrics_frame().drop(columns=drop),
                                  check_exact=True)
    for table in ("layers_frame", "paths_frame", "regions_frame", "lesion_frame"):
        pd.testing.assert_frame_equal(getattr(a, table)(), getattr(b, table)(), check_exact=True, obj=table)
    assert a.regions() == b.regions()
    if history:
        assert a.region_history() == b.region_history()


def tiny_runs_by_key() -> dict[str, RunRecord]:
    """Five small finished runs of five seeds, by key (the ``tiny_runs`` fixture, tests/conftest.py)."""
    return {run_key(s): train(s) for s in (TINY.with_changes(seed=seed) for seed in range(5))}
