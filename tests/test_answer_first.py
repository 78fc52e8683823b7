"""A dashboard run's first step is the answer to a click: a new run in turns (``answer_first``) takes it
before step 0's analyses (decision maps, unrolled paths, signal and lens: about half of a build), which
record in the next turn on copies of the nets as they were then; the run records exactly what it would
have recorded without waiting, file for file."""
from __future__ import annotations

import filecmp

import pandas as pd
import torch

from resnet_core.analysis.recorders import standard
from resnet_core.records import RunRecord
from resnet_core.records.events import replay_events
from resnet_core.settings import Settings
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.worker import _Tenants

SETTINGS = Settings(dataset="spirals", models=("plain-8", "resnet-8"), steps=25, eval_every=5, probe_every=2,
                    paths_every=10, dataset_args={"n": 400}, seed=2)
ANALYSES = ("paths.csv", "signal.csv", "jacobian.csv", "lens.csv", "regions.csv")


def same_run(a: RunRecord, b: RunRecord, tmp_path) -> None:
    left, right = a.write(tmp_path / "a"), b.write(tmp_path / "b")
    for name in ("layers.csv", *ANALYSES):
        assert (right / name).exists() and filecmp.cmp(left / name, right / name, shallow=False), name
    pd.testing.assert_frame_equal(pd.read_csv(left / "metrics.csv").drop(columns="wall_s"),
                                  pd.read_csv(right / "metrics.csv").drop(columns="wall_s"))


def test_a_new_run_takes_its_first_step_before_its_step_0_analyses_and_records_the_same(tmp_path):
    plain = LockstepTrainer(SETTINGS, recorders=standard())
    plain.run()
    first = LockstepTrainer(SETTINGS, recorders=standard(), answer_first=True)
    assert first.later and first.record.paths_frame().empty and not first.record.regions()
    assert len(first.record.metrics_frame()) == 2  # step 0's evaluation is there: the curves start
    first.train_step()  # the click's answer
    assert first.step == 1 and first.record.paths_frame().empty
    first.record_later()
    assert not first.later and set(first.record.paths_frame()["step"]) == {0}
    first.run()
    same_run(plain.record, first.record, tmp_path)
    for name, net in plain.models.items():  # weights, BN statistics and BN's batch counters (saved with a net)
        mine, theirs = first.models[name].state_dict(), net.state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), name


def test_a_worker_answers_new_runs_first_turns_with_their_first_steps_and_the_analyses_a_turn_later(tmp_path):
    """Two runs of one shape, so that their later turns come in a group turn, their models in a stack."""
    tenants, runs = _Tenants(), {"r": SETTINGS, "s": SETTINGS.with_changes(seed=5, lr=0.02)}
    records = {}
    for key, settings in runs.items():
        replies = [tenants._handle({"cmd": "init", "id": key, "settings": settings.to_dict(), "turns": True, "to": 1,
                                    "budget_s": 5.0, "answer_first": True})]
        while replies[-1]["mid"]:
            replies.append(tenants._handle({"cmd": "run", "id": key, "to": 1, "budget_s": 5.0}))
        assert replies[-1]["step"] == 1 and replies[-1]["later"]  # the first step, step 0's analyses held back
        records[key] = RunRecord(replies[0]["config"], replies[0]["layer_names"])
        for reply in replies:
            replay_events(records[key], reply["events"])
        assert records[key].paths_frame().empty and not records[key].regions()
    reply = tenants._handle({"cmd": "run", "id": "r", "to": 1, "budget_s": 5.0})  # a Step click: nothing more
    assert reply["step"] == 1 and not reply["later"] and not reply["mid"]
    replay_events(records["r"], reply["events"])
    assert set(records["r"].paths_frame()["step"]) == {0}
    stacked = []
    while any(record.latest_step() < SETTINGS.steps for record in records.values()):
        reply = tenants._handle({"cmd": "run_group", "budget_s": 5.0,
                                 "members": [{"id": key, "to": SETTINGS.steps} for key in runs]})
        stacked += reply["stacks"]
        for key, part in reply["members"].items():
            assert not part["later"]  # "s" recorded its step 0 analyses in the first group turn
            replay_events(records[key], part["events"])
    assert 4 in stacked  # both runs' plain-8 and resnet-8 in one stack
    for key, settings in runs.items():
        plain = LockstepTrainer(settings, recorders=standard())
        plain.run()
        same_run(plain.record, records[key], tmp_path / key)


def test_a_rebuilt_run_holds_nothing_back():
    tenants = _Tenants()
    reply = tenants._handle({"cmd": "init", "id": "r", "settings": SETTINGS.to_dict(), "turns": True, "to": 1,
                             "budget_s": 5.0})
    while reply["mid"]:
        reply = tenants._handle({"cmd": "run", "id": "r", "to": 1, "budget_s": 5.0})
    assert reply["step"] == 1 and not reply["later"]


def test_a_run_that_ends_at_its_first_step_holds_nothing_back():
    one = LockstepTrainer(SETTINGS.with_changes(steps=1), recorders=standard(), answer_first=True)
    assert one.later
    one.train_step()
    assert one.done and not one.later and set(one.record.paths_frame()["step"]) == {0, 1}
