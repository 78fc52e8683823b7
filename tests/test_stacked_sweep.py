"""A sweep point's seeds trained stacked (``training.stacked``) give each seed exactly what its own
run gives: every metrics row (training loss and error, test error) at every evaluation, bit for bit,
on every MLP block kind a sweep can ask for; divergence as separate runs report it; and the sweep's
rows the same stacked or not."""
import itertools
import math

import pytest
import torch

from resnet_core.analysis.sweep import plan_sweep, run_count, run_sweep, sweep_frame
from resnet_core.analysis.sweep.compute import _data, train_one
from resnet_core.nets import mlp_stacked
from resnet_core.nets.models import build_model
from resnet_core.settings import Settings, SettingsError
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.training.stacked import StackedTrainer

SEEDS = [0, 1, 2]
BASE = Settings(steps=20, eval_every=5, probe_every=100_000, paths_every=0, dataset_args={"n": 400})
METRICS = ("step", "status", "train_loss", "train_error", "test_error")


def alone(settings: Settings, seed: int) -> list[tuple]:
    """The metrics rows of a seed's own run, as the sweep trains it without stacking."""
    trainer = LockstepTrainer(settings.with_changes(seed=seed), data=_data(settings))  # a sweep run records its curves only
    trainer.run()
    return [tuple(r[k] for k in METRICS) for r in trainer.record.metric_rows()]


def stacked(settings: Settings, seeds=SEEDS) -> StackedTrainer:
    trainer = StackedTrainer(settings, seeds, data=_data(settings))
    trainer.run()
    return trainer


def same_rows(a: list[tuple], b: list[tuple]) -> bool:
    """Equal bit for bit (NaN where the other has NaN)."""
    return len(a) == len(b) and all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
                                    for r, q in zip(a, b) for x, y in zip(r, q))


def kinds():
    """Every block kind: layout, BN, shortcut, family, branch length; init, optimizer, weight decay
    and momentum cycled through them so that each meets several of the others."""
    combos = itertools.product(("post", "pre"), ("batch", "none"), ("identity", "projection"),
                               ("plain", "resnet"), (1, 2, 3))
    extras = itertools.cycle([("he", "sgd", 0.0, 0.9), ("default", "adam", 0.0, 0.9), ("he", "adam", 1e-3, 0.9),
                              ("default", "sgd", 1e-3, 0.0), ("he", "sgd", 1e-3, 0.5)])
    for (block, norm, shortcut, family, layers), (init, optimizer, decay, momentum) in zip(combos, extras):
        if family == "plain" and shortcut == "projection":
            continue  # a plain net has no shortcut
        settings = BASE.with_changes(models=(f"{family}-14",), block=block, norm=norm, shortcut=shortcut,
                                     branch_layers=layers, init=init, optimizer=optimizer, weight_decay=decay,
                                     momentum=momentum, lr=0.01 if optimizer == "adam" or norm == "none" else 0.05)
        try:
            settings.checked()
        except SettingsError:
            continue
        yield pytest.param(settings, id=f"{family}-{block}-{norm}-{shortcut}-b{layers}-{init}-{optimizer}-wd{decay}")


@pytest.mark.parametrize("settings", list(kinds()))
def test_each_seed_gets_the_metrics_of_its_own_run_bit_for_bit(settings):
    trainer = stacked(settings)
    for i, seed in enumerate(SEEDS):
        mine = [tuple(r[k] for k in METRICS) for r in trainer.metrics[i]]
        assert same_rows(mine, alone(settings, seed)), f"seed {seed}"
    last = trainer.metrics[0][-1]
    assert last["step"] == 20 or last["status"] == "diverged"  # trained to the end (a net without BN may blow up)


def test_the_seeds_really_differ_and_two_stages_stack_too():
    settings = BASE.with_changes(models=("resnet-10",), stages=2, shortcut="identity")  # a projection between stages
    trainer = stacked(settings)
    rows = [[r["train_loss"] for r in m] for m in trainer.metrics]
    assert rows[0] != rows[1] != rows[2]  # each member its own weights and batches
    for i, seed in enumerate(SEEDS):
        assert same_rows([tuple(r[k] for k in METRICS) for r in trainer.metrics[i]], alone(settings, seed))


def test_a_diverged_seed_is_frozen_and_reported_while_the_others_go_on():
    """Without BN at lr 1.0, resnet-8's seeds 0-2 diverge at different steps and seed 3 trains on."""
    settings = BASE.with_changes(models=("resnet-8",), norm="none", lr=1.0, steps=30)
    seeds = [0, 1, 2, 3]
    trainer = StackedTrainer(settings, seeds, data=_data(settings))
    frozen = None
    while not trainer.done:
        trainer.train_step()
        if frozen is None and trainer.status.count("diverged") == 1:
            member = trainer.status.index("diverged")
            frozen = member, [t.clone() for t in trainer.nets[member].parameters()]
    assert trainer.status == ["diverged", "diverged", "diverged", "ok"] and len(set(trainer.diverged_at.values())) == 3
    member, weights = frozen
    assert all(torch.equal(a, b) for a, b in zip(weights, trainer.nets[member].parameters()))  # untouched since
    for i, seed in enumerate(seeds):
        assert same_rows([tuple(r[k] for k in METRICS) for r in trainer.metrics[i]], alone(settings, seed)), seed
    rows = train_one({"family": "resnet", "depth": 8, "seeds": seeds, "settings": settings.to_dict()})["rows"]
    assert [r["train_error"] is None for r in rows] == [True, True, True, False]  # as the sweep shows it


def test_bn_statistics_stay_per_member():
    """Sharing one set of BN statistics over the members would still train, and give other numbers."""
    settings = BASE.with_changes(models=("plain-8",))
    trainer = StackedTrainer(settings, SEEDS, data=_data(settings))
    trainer.run()
    means = [net.stem.norm.running_mean for net in trainer.nets]
    assert not torch.equal(means[0], means[1])
    for i, seed in enumerate(SEEDS):
        assert same_rows([tuple(r[k] for k in METRICS) for r in trainer.metrics[i]], alone(settings, seed))


def test_a_sweep_gives_the_same_rows_stacked_or_not():
    jobs = plan_sweep(BASE, depths=(4, 8), seeds=(0, 1, 2))
    assert len(jobs) == 4 and run_count(jobs) == 12 and all(j["seeds"] == [0, 1, 2] for j in jobs)
    unstacked = plan_sweep(BASE, depths=(4, 8), seeds=(0, 1, 2), stack=False)
    assert len(unstacked) == 12
    a = sweep_frame(run_sweep(jobs, workers=0))
    b = sweep_frame(run_sweep(unstacked, workers=0))
    assert a.drop(columns="wall_s").equals(b.drop(columns="wall_s"))
    # a seed's wall_s is its group's: the same for every seed of a (family, depth)
    assert (a.groupby(["family", "depth"]).wall_s.nunique() == 1).all()


def test_a_cnn_sweep_is_planned_seed_by_seed():
    settings = BASE.with_changes(arch="cnn", dataset="digits", dataset_args={})
    jobs = plan_sweep(settings, depths=(8,), seeds=(0, 1))
    assert len(jobs) == 4 and all("seed" in j and "seeds" not in j for j in jobs)


def test_a_net_that_cannot_be_stacked_trains_seed_by_seed_in_its_job():
    settings = BASE.with_changes(models=("resnet-10",), stages=2, shortcut="pad")
    assert not mlp_stacked.stackable(build_model("resnet-10", settings, (2,), 3))
    job = {"family": "resnet", "depth": 10, "seeds": [0, 1], "settings": settings.to_dict()}
    rows = train_one(job)["rows"]
    for row, seed in zip(rows, (0, 1)):
        own = train_one({"family": "resnet", "depth": 10, "seed": seed,
                         "settings": settings.with_changes(seed=seed).to_dict()})
        assert {k: v for k, v in row.items() if k != "wall_s"} == {k: v for k, v in own.items() if k != "wall_s"}


def test_seeds_that_would_not_fit_one_runs_memory_together_train_seed_by_seed(monkeypatch):
    from resnet_core.analysis.sweep import compute
    from resnet_core.sizing import budget
    from resnet_core.training import stacked as stacked_module

    settings = BASE.with_changes(models=("plain-8",))
    one_run = budget.check_fits(settings, budget.shape_of(_data(settings))).total
    monkeypatch.setattr(budget, "run_memory_budget", lambda: int(one_run * 2.5))  # two fit, three do not
    assert stacked_module.group_fits(settings, _data(settings), 2)
    assert not stacked_module.group_fits(settings, _data(settings), 3)
    built = []
    monkeypatch.setattr(compute, "StackedTrainer", lambda *a, **k: built.append(a) or StackedTrainer(*a, **k))
    rows = train_one({"family": "plain", "depth": 8, "seeds": [0, 1, 2], "settings": settings.to_dict()})["rows"]
    assert not built and [r["seed"] for r in rows] == [0, 1, 2]


@pytest.mark.parametrize("changes,seeds", [
    ({"init": "zero", "block": "post"}, SEEDS),
    ({"init": "zero", "block": "pre", "norm": "none", "lr": 0.01}, SEEDS),
    ({"width": 24, "stages": 2}, [0, 1, 2, 3, 4, 5]),  # slices off the optimizer's vector grid, six members
])
def test_zero_init_odd_widths_and_more_members_are_bit_for_bit_too(changes, seeds):
    settings = BASE.with_changes(models=("resnet-14",), **changes)
    trainer = stacked(settings, seeds)
    for i, seed in enumerate(seeds):
        assert same_rows([tuple(r[k] for k in METRICS) for r in trainer.metrics[i]], alone(settings, seed)), seed
