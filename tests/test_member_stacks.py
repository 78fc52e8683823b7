"""Distinct runs of one shape trained as members of shared stacks (``training.member_stacks``) give
each run exactly what it gives alone, bit for bit: its error curves, its layer probes and its
analyses, with BN and without, whatever its seed, learning rate or optimizer, when it joins the
others mid-way, and when another leaves early."""
import math

import pytest
import torch

from resnet_core.analysis import recorders
from resnet_core.settings import Settings
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.training.member_stacks import MemberStacks
from resnet_core.training.tensors import load_dataset

BASE = Settings(models=("plain-8", "plain-14", "resnet-14"), steps=24, eval_every=4, probe_every=3, paths_every=12,
                dataset_args={"n": 400})
DATA = load_dataset("spirals", {"n": 400})


def runs(norm: str) -> list[Settings]:
    """Four sessions' runs of one lesson: seeds, learning rates and optimizers differ."""
    base = BASE.with_changes(norm=norm)
    return [base.with_changes(seed=0, lr=0.05), base.with_changes(seed=1, lr=0.02, momentum=0.5),
            base.with_changes(seed=2, optimizer="adam", lr=0.01), base.with_changes(seed=3, lr=0.05, weight_decay=1e-3)]


def trainer(settings: Settings) -> LockstepTrainer:
    return LockstepTrainer(settings, data=DATA, recorders=recorders.standard())


def tables(t: LockstepTrainer) -> dict:
    """What the run recorded, wall-clock times aside."""
    r = t.record
    return {"metrics": [{k: v for k, v in row.items() if k != "wall_s"} for row in r.metric_rows()],
            "layers": r.layers_frame().to_dict("list"), "paths": r.paths_frame().to_dict("list"),
            "regions": r.region_history()}


def same(a, b) -> bool:
    """Equal bit for bit, NaN where the other has NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def alone(settings: Settings) -> dict:
    t = trainer(settings)
    t.run()
    return tables(t)


def together(schedule: dict[int, tuple[int, int]], settings: list[Settings],
             stacks: MemberStacks | None = None) -> tuple[list[LockstepTrainer], list[list[int]]]:
    """Trainers stepped as a worker steps a group: ``schedule[i] = (tick it joins, tick it leaves)``;
    at each tick every member present takes one step, its passes in the stacks (a worker's
    ``MemberStacks()`` unless given). The stack sizes of each tick."""
    stacks, trainers, sizes = stacks or MemberStacks(), {}, []
    end = max(leave for _, leave in schedule.values())
    for tick in range(end):
        for i, (join, _) in schedule.items():
            if tick == join:
                trainers[i] = trainer(settings[i])
        present = [t for i, t in trainers.items() if schedule[i][0] <= tick < schedule[i][1] and not t.done]
        sizes.append(stacks.prepare(present))
        for t in present:
            t.train_step()
    return [trainers[i] for i in sorted(trainers)], sizes


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_members_joining_and_leaving_get_their_own_runs_bit_for_bit(norm):
    settings = runs(norm)
    # Run 0 throughout; 1 leaves early; 2 joins mid-way; 3 joins mid-way and leaves before the end.
    schedule = {0: (0, 30), 1: (0, 10), 2: (5, 30), 3: (7, 19)}
    trained, sizes = together(schedule, settings)
    assert max(max(s, default=0) for s in sizes) == 8  # all four runs' twins plain-14, resnet-14 in one stack
    assert all(len(s) <= 2 for s in sizes)  # one stack per depth: each run's twins share it
    for t, s in zip(trained, settings):
        if t.step == s.steps:  # trained to the end: everything it recorded is its own run's
            assert same(tables(t), alone(s)), f"seed {s.seed}"
        else:  # left early: what it recorded up to there
            solo = trainer(s)
            solo.run(steps=t.step)
            assert same(tables(t), tables(solo)), f"seed {s.seed}"
    assert trained[0].record.metric_rows()[-1]["train_loss"] != trained[1].record.metric_rows()[-1]["train_loss"]


def test_a_member_that_leaves_mid_run_leaves_the_others_numbers_unchanged():
    settings = runs("batch")[:3]
    stay, _ = together({0: (0, 30), 1: (0, 30), 2: (0, 30)}, settings)
    left, _ = together({0: (0, 30), 1: (0, 30), 2: (0, 6)}, settings)
    for a, b in zip(stay[:2], left[:2]):
        assert same(tables(a), tables(b))
    assert left[2].step == 6


@pytest.mark.parametrize(("lr", "diverging"), [(5.0, {"plain-8", "plain-14", "resnet-14"}), (1.0, {"resnet-14"})])
def test_a_diverging_member_is_flagged_and_the_others_train_on(lr, diverging):
    """No BN, a huge step: the second run's nets blow up (at 5.0 its plain-14 a step after its resnet-14,
    next to the first run's twins in their stack; at 1.0 its resnet-14 alone, next to its own plain twin)."""
    base = runs("none")[:2]
    settings = [base[0], base[1].with_changes(lr=lr, momentum=0.9)]
    trained, sizes = together({0: (0, 30), 1: (0, 30)}, settings)
    assert {n for n, st in trained[1].status.items() if st == "diverged"} == diverging
    assert set(trained[0].status.values()) == {"ok"}
    assert sizes[0] == [4]  # at first the twins plain-14 and resnet-14 of both runs (plain-8's pair: alone)
    for t, s in zip(trained, settings):
        assert same(tables(t), alone(s))


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_a_sessions_twins_share_a_stack_by_themselves(norm):
    """One session alone: its plain-14 and resnet-14 differ only in the shortcut, and train as one stack
    where pairs are stacked (a worker stacks from three members on: a pair does not pay)."""
    settings = runs(norm)[2]  # Adam
    trained, sizes = together({0: (0, 30)}, [settings], MemberStacks(smallest=2))
    assert sizes[:settings.steps] == [[2]] * settings.steps  # plain-8 has no partner: it trains alone
    assert same(tables(trained[0]), alone(settings))
    assert MemberStacks().prepare([trainer(settings)]) == []  # a worker's: the pair trains its own passes


def test_plain_and_residual_nets_apart_when_asked():
    """``twins=False`` (the bench's comparison): a plain net and its residual twin in stacks of their own."""
    trained, sizes = together({0: (0, 4), 1: (0, 4)}, runs("batch")[:2], MemberStacks(twins=False, smallest=2))
    assert sizes[0] == [2, 2, 2]


def test_a_cnn_or_a_lone_shape_trains_alone():
    cnn = Settings(arch="cnn", models=("plain-8",), dataset="digits", steps=2, eval_every=1, width=4)
    stacks = MemberStacks()
    trainers = [LockstepTrainer(cnn.with_changes(seed=i)) for i in range(2)]
    assert stacks.prepare(trainers) == [] and all(t.prepared is None for t in trainers)
    one = [trainer(BASE.with_changes(models=("plain-8",))), trainer(BASE.with_changes(models=("plain-14",)))]
    assert stacks.prepare(one) == []


def test_a_worker_group_turn_stacks_the_runs_of_one_shape_and_steps_the_others_alone():
    from resnet_core.worker import _Tenants

    tenants = _Tenants()
    tiny = BASE.with_changes(models=("plain-6", "resnet-6"), width=8, steps=50)
    cnn = Settings(arch="cnn", models=("plain-8",), dataset="digits", steps=50, eval_every=5, width=4)
    for key, settings in (("a", tiny), ("b", tiny.with_changes(seed=7, lr=0.01)), ("c", cnn)):
        reply = tenants._handle({"cmd": "init", "id": key, "settings": settings.to_dict(), "turns": True, "budget_s": 5.0})
        while reply["mid"]:
            reply = tenants._handle({"cmd": "run", "id": key, "to": 0, "budget_s": 5.0})
    reply = tenants._handle({"cmd": "run_group", "budget_s": 5.0,
                             "members": [{"id": k, "to": 3} for k in ("a", "b", "c", "gone")]})
    assert reply["stacks"] == [4]  # plain-6 and resnet-6 of both runs in one stack
    assert set(reply["members"]) == {"a", "b", "c"}  # a run the process no longer holds is left out
    assert all(part["ok"] and part["step"] == 3 and not part["mid"] for part in reply["members"].values())
    solo = trainer(tiny)
    solo.run(steps=3)
    grouped = tenants.in_turns["a"][0].trainer  # its record forwards what it records: its weights say
    for name, net in grouped.models.items():
        mine, own = net.state_dict(), solo.models[name].state_dict()
        assert all(torch.equal(mine[k], own[k]) for k in own), name
    tenants._handle({"cmd": "drop", "id": "a"})
    reply = tenants._handle({"cmd": "run_group", "budget_s": 5.0, "members": [{"id": "b", "to": 5}]})
    assert reply["stacks"] == [] and reply["members"]["b"]["step"] == 5  # alone now: a pair, its own passes


def test_a_group_turn_finishes_building_a_run_before_stepping_it():
    from resnet_core.worker import _Tenants

    tenants = _Tenants()
    tiny = BASE.with_changes(models=("plain-6",), width=8, steps=50)
    for key, seed in (("a", 0), ("b", 1)):  # no time to build: both left in the middle of it
        assert tenants._handle({"cmd": "init", "id": key, "settings": tiny.with_changes(seed=seed).to_dict(),
                                "turns": True, "budget_s": 0.0})["mid"]
    for _ in range(50):
        reply = tenants._handle({"cmd": "run_group", "budget_s": 0.5, "members": [{"id": k, "to": 4} for k in "ab"]})
        if all(part.get("step") == 4 for part in reply["members"].values()):
            break
    assert all(part["ok"] and part["step"] == 4 for part in reply["members"].values())
