"""Lessons: each check says "shown" on a small real run where its claim holds, and "not shown" on a
real run built to break it, and never claims before the evidence is in.

Runs are small (600 spiral points, width 16, 120-150 steps, one torch thread) and shared between
tests: one run carries several lessons' claims, another several lessons' counter-examples. The
lesson's own settings (full size, three seeds) are checked by bench/bench_lessons.py, and one of
them end to end from the command line in the slow test at the bottom.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnet_core.cli import main
from resnet_core.lessons.evidence import NOT_SHOWN, NOT_YET, SHOWN
from resnet_core.lessons import LESSONS, get_lesson
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.analysis.recorders import standard
from resnet_core.nets.models import build_model, parameter_count
from resnet_core.records import RunRecord
from resnet_core.settings import Settings, SettingsError, parse_model_name

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"dataset": "spirals", "dataset_args": {"n": 600}, "width": 16, "steps": 150, "eval_every": 10,
         "probe_every": 5, "paths_every": 0, "seed": 0}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train(lesions: bool = False, **changes) -> RunRecord:
    trainer = LockstepTrainer(Settings.from_dict({**SMALL, **changes}), recorders=standard())
    trainer.run()
    if lesions:
        trainer.call("lesion_study")
    return trainer.record


# ---- the runs ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deep_run() -> RunRecord:
    """Claims 1, 2, 4, 5, 8 hold here: 32 layers in three stages of widths 16/32/64 (option A), zero-init
    branches; a 32-layer plain net without BN (He init) beside them does *not* lose its gradient (claim 3 breaks)."""
    return train(models=("plain-8", "plain-32", "resnet-32", "plain-32-nobn"), stages=3, shortcut="pad",
                 init="zero", paths_every=75, lesions=True)


@pytest.fixture(scope="module")
def shallow_run() -> RunRecord:
    """Nothing to show at 8-10 layers: every net trains, no branch starts at zero (He init), and deleting
    one of only three blocks is costly, even in the residual net."""
    return train(models=("plain-8", "resnet-8", "plain-10", "resnet-8-b1", "resnet-8-pre"), stages=3,
                 shortcut="pad", paths_every=75, lesions=True)


@pytest.fixture(scope="module")
def vanishing_run() -> RunRecord:
    return train(models=("plain-8", "plain-32", "plain-32-nobn"), init="default")


@pytest.fixture(scope="module")
def deep_layouts_run() -> RunRecord:
    """110 layers: plain, one-layer branches, two-layer branches, pre-activation."""
    return train(models=("plain-110", "resnet-110-b1", "resnet-110", "resnet-110-pre"), steps=120, probe_every=1000)


@pytest.fixture(scope="module")
def thousand_run() -> RunRecord:
    return train(models=("resnet-1002",), block="pre", dataset="blobs", steps=20, eval_every=4, probe_every=1000)


@pytest.fixture(scope="module")
def thousand_stalled_run() -> RunRecord:
    """The same net with a learning rate too small to get anywhere in 12 steps."""
    return train(models=("resnet-1002",), block="pre", dataset="blobs", steps=12, eval_every=3, probe_every=1000,
                 lr=1e-4)


def _without_bn(depth: int) -> list[str]:
    return [f"resnet-{depth}", f"resnet-{depth}-nobn", f"resnet-{depth}-nobn-skipinit", f"resnet-{depth}-nobn-fixup"]


@pytest.fixture(scope="module")
def no_bn_run() -> RunRecord:
    """56 layers without BN: He init diverges at once; SkipInit and Fixup start as the identity and train."""
    return train(models=_without_bn(56))


@pytest.fixture(scope="module")
def no_bn_shallow_run() -> RunRecord:
    """8 layers (3 blocks): the stream's variance grows only 8-fold, and He init trains without BN."""
    return train(models=_without_bn(8))


SIGNAL_MODELS = ("plain-56", "resnet-56", "resnet-56-nobn", "resnet-56-nobn-skipinit")


@pytest.fixture(scope="module")
def signal_run() -> RunRecord:
    """Pre-activation, 56 layers: He init without BN doubles the variance per block, BN grows it linearly,
    SkipInit keeps it flat and its Jacobian the identity."""
    return train(models=SIGNAL_MODELS, block="pre", steps=20, paths_every=10)


@pytest.fixture(scope="module")
def scaled_signal_run() -> RunRecord:
    """The same nets with every branch scaled by 1/√L: without BN the variance no longer explodes."""
    return train(models=SIGNAL_MODELS, block="pre", steps=20, paths_every=10, branch_scale="invsqrt")


@pytest.fixture(scope="module")
def refine_run() -> RunRecord:
    return train(models=("plain-56", "resnet-56"), paths_every=75)


HOLDS = {"degradation": "deep_run", "residual-learning": "deep_run", "vanishing-gradients": "vanishing_run",
         "identity-mappings": "deep_run", "two-kinds-of-block": "deep_run", "two-layer-branches": "deep_layouts_run",
         "pre-activation": "deep_layouts_run", "paths": "deep_run", "thousand-layers": "thousand_run",
         "need-batchnorm": "no_bn_run", "signal": "signal_run", "blocks-refine": "refine_run"}
# lesson -> (run, a criterion the verdict must report as failed, or words its summary must hold)
BREAKS = {
    "degradation": ("shallow_run", "plain net at least 5 points worse"),     # plain-10 vs plain-8
    "residual-learning": ("shallow_run", "at least 5 points better"),          # resnet-8 vs plain-8
    "vanishing-gradients": ("deep_run", "✗ vanished without BatchNorm"),       # He init: nothing vanishes
    "identity-mappings": ("shallow_run", "✗ every branch starts at zero"),     # He init: branches start non-zero
    "two-kinds-of-block": ("shallow_run", "better than its plain twin"),       # 8 layers: the plain net trains too
    "two-layer-branches": ("shallow_run", "✗ two-layer branches gain at least 10 points"),
    "pre-activation": ("shallow_run", "Averaged over the run"),                # 8 layers: both layouts train alike
    "paths": ("shallow_run", "✗ deleting one block of the residual net"),      # 3 blocks: each one matters
    "thousand-layers": ("thousand_stalled_run", "training error in 12 steps"),
    "need-batchnorm": ("no_bn_shallow_run", "✗ He init without normalisation fails"),
    "signal": ("scaled_signal_run", "✗ He init without normalisation: at least"),
    "blocks-refine": ("shallow_run", "✗ the plain net's middle block reads as chance"),
}


def test_the_lessons_in_the_issue_order():
    assert list(LESSONS) == ["degradation", "residual-learning", "vanishing-gradients", "identity-mappings",
                             "two-kinds-of-block", "two-layer-branches", "pre-activation", "paths", "thousand-layers",
                             "need-batchnorm", "signal", "blocks-refine"]
    assert set(HOLDS) == set(BREAKS) == set(LESSONS)
    for lesson in LESSONS.values():
        assert lesson.settings().models  # valid settings
        assert re.search(r"et al\. \(?20\d\d", lesson.text), lesson.name  # cites the paper: authors and year
        assert lesson.question.endswith("?") and "\n" not in lesson.text


@pytest.mark.parametrize("name", list(HOLDS))
def test_the_claim_shows_where_it_holds(name, request):
    verdict = get_lesson(name).check(request.getfixturevalue(HOLDS[name]))
    assert verdict.state == SHOWN, (verdict.summary, verdict.details)
    assert any(ch.isdigit() for ch in verdict.summary)  # the figures, not just a word
    assert not any(line.startswith("✗") for line in verdict.details)


@pytest.mark.parametrize("name", list(BREAKS))
def test_the_claim_does_not_show_on_a_run_built_to_break_it(name, request):
    run, evidence = BREAKS[name]
    verdict = get_lesson(name).check(request.getfixturevalue(run))
    assert verdict.state == NOT_SHOWN, (verdict.summary, verdict.details)
    assert evidence in verdict.summary + "\n" + "\n".join(verdict.details)


def test_the_degradation_figures_are_the_runs_own(deep_run):
    """The verdict quotes the mean training error of the last quarter of the run, as the chart shows it."""
    m = deep_run.metrics_frame()
    late = m[m.step >= 150 * 0.75].groupby("model").train_error.mean()
    summary = get_lesson("degradation").check(deep_run).summary
    assert f"{100 * late['plain-32']:.1f} %" in summary and f"{100 * late['plain-8']:.1f} %" in summary
    assert f"{100 * (late['plain-32'] - late['plain-8']):.0f} points worse" in summary


# ---- no verdict before the evidence ----------------------------------------------------------------
def truncated(record: RunRecord, upto: int) -> RunRecord:
    """The record as a live view saw it at step ``upto`` (the real run's rows up to then)."""
    early = RunRecord(record.config, record.layer_names)
    m = record.metrics_frame()
    early.add_metrics(m[m.step <= upto].to_dict("records"))
    for model in record.layer_names:
        for snap in record.snapshots(model):
            if snap.step <= upto:
                early.add_layers(model, snap)
    return early


def test_not_yet_while_the_run_is_too_short_to_judge(deep_run):
    verdict = get_lesson("degradation").check(truncated(deep_run, 40))
    assert verdict.state == NOT_YET and "step 40 of 150" in verdict.summary


def test_not_yet_rather_than_not_shown_while_the_run_goes_on(shallow_run):
    verdict = get_lesson("degradation").check(truncated(shallow_run, 100))
    assert verdict.state == NOT_YET and verdict.summary.startswith("Not shown so far")


def test_paths_lesson_waits_for_the_lesion_study(deep_run):
    no_lesions = truncated(deep_run, 150)
    no_lesions.add_paths(deep_run.paths_frame().to_dict("records"))
    verdict = get_lesson("paths").check(no_lesions)
    assert verdict.state == NOT_YET and "lesion study" in verdict.summary


def test_before_train_the_verdict_says_press_train():
    assert get_lesson("degradation").judge(None).state == NOT_YET
    assert "Train" in get_lesson("degradation").judge(None).summary


def test_a_run_without_the_models_the_claim_needs_cannot_show_it(vanishing_run):
    verdict = get_lesson("pre-activation").check(vanishing_run)
    assert verdict.state == NOT_SHOWN and "cannot show" in verdict.summary and "resnet-302" in verdict.details[0]


def test_a_diverged_model_is_named_and_the_claim_not_shown():
    record = train(models=("plain-8", "plain-20"), norm="none", lr=10.0, momentum=0.0, steps=30)
    verdict = get_lesson("degradation").check(record)
    assert verdict.state == NOT_SHOWN and "diverged at step" in verdict.summary


# ---- the per-model options the lessons use ---------------------------------------------------------------
def test_model_suffixes_round_trip_and_set_the_models_own_options():
    for name in ("resnet-56-b1", "plain-56-nobn", "resnet-302-b3-pre-bn", "resnet-20-pre"):
        assert parse_model_name(name).name == name
    with pytest.raises(SettingsError, match="in that order"):
        parse_model_name("resnet-56-pre-b1")
    s = Settings(models=("plain-56", "resnet-56-b1", "resnet-56", "plain-56-nobn")).checked()
    nets = {n: build_model(n, s, (2,), 3) for n in s.models}
    assert len(nets["resnet-56-b1"].blocks) == 54 and len(nets["resnet-56"].blocks) == 27
    assert all(len(net.units()) == 56 for net in nets.values())
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in nets["plain-56-nobn"].modules())
    # identity shortcuts add nothing: every 56-layer net with BN has the same parameters
    assert len({parameter_count(nets[n]) for n in ("plain-56", "resnet-56-b1", "resnet-56")}) == 1


def test_a_models_own_layers_per_branch_sets_its_depth_rule():
    Settings(models=("resnet-57-b1",)).checked()  # 55 one-layer blocks
    with pytest.raises(SettingsError, match="3n\\+2"):
        Settings(models=("resnet-56-b3",), branch_layers=2).with_changes(models=("resnet-57-b3",))


# ---- the command line and the panel ------------------------------------------------------------------------
def test_cli_lists_the_lessons(capsys):
    assert main(["lesson", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(LESSONS)


@pytest.mark.parametrize("args,words", [(["nope", "--out", "x"], ["unknown lesson", "degradation"]),
                                        (["degradation"], ["--out"]), ([], ["--list"]),
                                        (["degradation", "--out", "x", "--seed", "-1"], ["seed"])])
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, capsys, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    assert main(["lesson", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words), err
    assert not (tmp_path / "x").exists()


def test_cli_exits_1_when_the_claim_did_not_show(tmp_path, capsys):
    """Three steps are too few to judge: the claim did not show, exit 1, the run is still written."""
    code = main(["lesson", "degradation", "--steps", "3", "--workers", "1", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 1 and "✗ not shown: The run was too short to judge" in out
    assert (tmp_path / "run" / "metrics.csv").exists()


def test_panel_shows_text_question_and_verdict(tmp_path, deep_run):
    from streamlit.testing.v1 import AppTest

    deep_run.write(tmp_path / "run")

    def page(run_dir):
        from dashboard.panels.lesson import render_lesson_panel
        from resnet_core.records import RunRecord

        render_lesson_panel("degradation", None)
        render_lesson_panel("degradation", RunRecord.read(run_dir))

    at = AppTest.from_function(page, args=(str(tmp_path / "run"),), default_timeout=60).run()
    assert not at.exception
    text = "\n".join(m.value for m in at.markdown)
    assert "Degradation" in text and "He et al. (2015" in text and "Not yet.** Press Train" in text
    assert all("Question for the class" in box.value and box.value.endswith("?") for box in at.info)
    assert at.success[0].value.startswith("**✓ Shown on this run.**") and "32-layer plain net" in at.success[0].value


@pytest.mark.slow
def test_the_degradation_lesson_end_to_end_from_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "resnet_core", "lesson", "degradation", "--seed", "1",
                           "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "✓ shown" in proc.stdout and "points worse than the 20-layer one" in proc.stdout
    record = RunRecord.read(tmp_path / "run")
    assert get_lesson("degradation").check(record).state == SHOWN  # the folder replays to the same verdict
