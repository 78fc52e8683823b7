"""A sweep point's runs (its families and seeds at one depth) trained side by side in one job, their
passes in shared stacks (``training.member_stacks``), give each run's row of sweep.csv exactly as its
own run gives it, bit for bit, on every MLP block kind a sweep can ask for; divergence as a run
alone reports it; and the sweep's rows are the same planned side by side or run by run."""
import itertools

import pytest

from resnet_core.analysis.sweep import plan_sweep, run_count, run_sweep, sweep_frame
from resnet_core.analysis.sweep import compute
from resnet_core.analysis.sweep.compute import _data, fits_together, train_one
from resnet_core.nets import mlp_stacked
from resnet_core.nets.models import build_model
from resnet_core.settings import Settings, SettingsError
from resnet_core.sizing import budget
from resnet_core.training.member_stacks import MemberStacks

SEEDS = [0, 1, 2]
BASE = Settings(steps=20, eval_every=5, probe_every=100_000, paths_every=0, dataset_args={"n": 400})


def runs(settings: Settings, seeds=SEEDS, families=None) -> list[dict]:
    """The runs the sweep plans at the settings' depth, for these seeds (and families: by default the
    settings' own model's), on one core: one job's side by side, or where a stack cannot hold the
    nets, each its own job's."""
    family, depth = settings.models[0].split("-")
    jobs = plan_sweep(settings, depths=[int(depth)], seeds=seeds, families=families or (family,), stack=True, cores=1)
    return [run for job in jobs for run in job.get("runs", [job])]


def without_wall(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "wall_s"}


def check_as_alone(jobs: list[dict]) -> list[dict]:
    """Trains the runs side by side and each alone; their rows, asserted equal but for wall time."""
    together = train_one({"depth": jobs[0]["depth"], "runs": jobs})["rows"]
    assert len(together) == len(jobs)
    for row, job in zip(together, jobs):
        assert without_wall(row) == without_wall(train_one(job)), (job["family"], job["seed"])
    return together


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


class Spy(MemberStacks):
    """The job's stacks, saying how many members each step's stacks held."""
    sizes: list[list[int]] = []

    def prepare(self, trainers):
        Spy.sizes.append(super().prepare(trainers))
        return Spy.sizes[-1]


@pytest.mark.parametrize("settings", list(kinds()))
def test_each_run_gets_the_row_of_its_own_run_bit_for_bit(settings, monkeypatch):
    monkeypatch.setattr(compute, "MemberStacks", Spy)
    Spy.sizes = []
    rows = check_as_alone(runs(settings))
    assert Spy.sizes[0] == [3]  # the three seeds' passes in one stack
    assert all(r["mean_train_error"] is not None for r in rows) or settings.norm == "none"  # trained (a net without BN may blow up)


def test_the_seeds_really_differ_and_two_stages_and_both_families_share_a_job():
    settings = BASE.with_changes(models=("resnet-10",), stages=2, shortcut="identity")  # a projection between stages
    rows = check_as_alone(runs(settings, families=("plain", "resnet")))
    assert len({r["mean_train_error"] for r in rows}) == len(rows)  # each run its own weights and batches


def test_a_diverged_run_is_reported_while_the_others_go_on():
    """Without BN at lr 1.0, resnet-8's seeds 0-2 diverge at different steps and seed 3 trains on."""
    settings = BASE.with_changes(models=("resnet-8",), norm="none", lr=1.0, steps=30)
    rows = check_as_alone(runs(settings, seeds=[0, 1, 2, 3]))
    assert [r["train_error"] is None for r in rows] == [True, True, True, False]  # as the sweep shows it


def test_a_sweep_gives_the_same_rows_side_by_side_or_not():
    jobs = plan_sweep(BASE, depths=(4, 8), seeds=(0, 1, 2), cores=2)
    assert len(jobs) == 2 and run_count(jobs) == 12 and all(len(j["runs"]) == 6 for j in jobs)
    unstacked = plan_sweep(BASE, depths=(4, 8), seeds=(0, 1, 2), stack=False)
    assert len(unstacked) == 12 and [j for job in jobs for j in job["runs"]] == unstacked
    a = sweep_frame(run_sweep(jobs, workers=0))
    b = sweep_frame(run_sweep(unstacked, workers=0))
    assert a.drop(columns="wall_s").equals(b.drop(columns="wall_s"))
    # a run's wall_s is its group's: the same for every run of a depth
    assert (a.groupby("depth").wall_s.nunique() == 1).all()


def test_a_sweep_of_fewer_depths_than_cores_is_halved_keeping_twins_together():
    """One depth on two cores: two jobs, not one job and an idle core; on four, a depth's three
    seeds cannot be cut into four sets of twins, so three jobs."""
    def jobs(cores: int) -> list[list[tuple[str, int]]]:
        return [[(r["family"], r["seed"]) for r in job["runs"]]
                for job in plan_sweep(BASE, depths=(8,), seeds=(0, 1, 2), cores=cores)]

    assert jobs(1) == [[("plain", 0), ("resnet", 0), ("plain", 1), ("resnet", 1), ("plain", 2), ("resnet", 2)]]
    assert jobs(2) == [[("plain", 0), ("resnet", 0), ("plain", 1), ("resnet", 1)], [("plain", 2), ("resnet", 2)]]
    assert jobs(4) == [[("plain", 0), ("resnet", 0)], [("plain", 1), ("resnet", 1)], [("plain", 2), ("resnet", 2)]]
    deep_first = plan_sweep(BASE, depths=(4, 8), seeds=(0, 1), cores=3)
    assert [(j["depth"], len(j["runs"])) for j in deep_first] == [(8, 2), (8, 2), (4, 4)]


def test_a_cnn_sweep_is_planned_run_by_run():
    settings = BASE.with_changes(arch="cnn", dataset="digits", dataset_args={})
    jobs = plan_sweep(settings, depths=(8,), seeds=(0, 1))
    assert len(jobs) == 4 and all("seed" in j and "runs" not in j for j in jobs)


def test_a_net_a_stack_does_not_hold_trains_its_own_passes_in_the_job():
    settings = BASE.with_changes(models=("resnet-10",), stages=2, shortcut="pad")
    assert not mlp_stacked.stackable(build_model("resnet-10", settings, (2,), 3))
    check_as_alone(runs(settings, seeds=[0, 1]))


def test_runs_that_would_not_fit_one_runs_memory_together_train_one_after_another(monkeypatch):
    settings = BASE.with_changes(models=("plain-8",))
    one_run = budget.check_fits(settings, budget.shape_of(_data(settings))).total
    monkeypatch.setattr(budget, "run_memory_budget", lambda: int(one_run * 2.5))  # two fit, three do not
    assert fits_together([settings] * 2, _data(settings)) and not fits_together([settings] * 3, _data(settings))
    built = []
    monkeypatch.setattr(compute, "MemberStacks", lambda *a, **k: built.append(a) or MemberStacks(*a, **k))
    rows = check_as_alone(runs(settings))
    assert not built and [r["seed"] for r in rows] == [0, 1, 2]
    train_one({"depth": 8, "runs": runs(settings)[:2]})
    assert built  # two fit: side by side


@pytest.mark.parametrize("changes,seeds", [
    ({"init": "zero", "block": "post"}, SEEDS),
    ({"init": "zero", "block": "pre", "norm": "none", "lr": 0.01}, SEEDS),
    ({"width": 24, "stages": 2}, [0, 1, 2, 3, 4, 5]),  # widths off the optimizer's vector grid, twelve members
])
def test_zero_init_odd_widths_and_more_members_are_bit_for_bit_too(changes, seeds):
    check_as_alone(runs(BASE.with_changes(models=("resnet-14",), **changes), seeds, families=("plain", "resnet")))


def test_a_job_of_many_runs_may_pause_after_each_runs_step_and_reports_its_progress():
    """A worker pauses a job only where it calls ``report`` (``remote/slicing.py``): a tick of a
    dozen deep members is longer than a time slice, so every member's step is such a place."""
    calls = []
    jobs = runs(BASE.with_changes(models=("resnet-8",), steps=60), seeds=[0, 1, 2], families=("plain", "resnet"))
    train_one({"depth": 8, "runs": jobs}, calls.append)
    assert calls.count(None) >= 6 * 60  # six members, sixty steps each
    progress = [c for c in calls if c is not None]
    assert len(progress) == 2 and progress[-1] == {"step": 6 * 50, "steps": 6 * 60}  # every 25 steps
    assert [p["step"] for p in progress] == sorted(p["step"] for p in progress)
