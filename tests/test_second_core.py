"""A one-model run's analyses in a second process (training/second_core.py): the record is the one
the analyses give in the trainer's own process, number for number; only when rows arrive differs."""
import os
from pathlib import Path

import pandas as pd
import pytest

from resnet_core.analysis.paths import lesion
from resnet_core.cli import main
from resnet_core.cli import train as cli_train
from resnet_core.remote.trainer import WorkerError
from resnet_core.settings import Settings
from resnet_core.training.lockstep import LockstepTrainer
from resnet_core.training.second_core import SecondCore


def settings(**kw) -> Settings:
    base = dict(models=("resnet-20",), width=8, steps=12, eval_every=4, paths_every=6, probe_every=2,
                dataset_args={"n": 300}, seed=3)
    return Settings(**{**base, **kw}).checked()


def tables(record) -> dict[str, pd.DataFrame]:
    """Every table of a record, wall-clock times left out (they differ between any two runs)."""
    return {"metrics": record.metrics_frame().drop(columns="wall_s"), "layers": record.layers_frame(),
            "paths": record.paths_frame(), "lesion": record.lesion_frame(),
            "regions": pd.DataFrame([(s, m, g["classes"], g["confidence"]) for s, m, g in record.region_history()])}


def trained(s: Settings, analyst=None):
    with LockstepTrainer(s, analyst=analyst) as trainer:
        trainer.run()
        trainer.lesion_study()
        trainer.settle()
        return tables(trainer.record)


@pytest.mark.parametrize("kw", [{}, {"block": "post", "models": ("plain-14",)}, {"norm": "none", "lr": 1.0, "steps": 40}],
                         ids=["resnet-pre-act", "plain-post-act", "diverges"])
def test_the_record_is_the_one_the_trainer_gives_by_itself(monkeypatch, kw):
    # Small parts, so that both processes take some of the lesion study (it is split by the parent).
    monkeypatch.setattr(lesion, "STACK_BYTES", 300 * 8 * 4)
    s = settings(**kw)
    helper = SecondCore(s)
    alone, shared = trained(s), trained(s, helper)
    for name, table in alone.items():
        pd.testing.assert_frame_equal(shared[name], table, obj=name)
    if "lr" in kw:  # the run diverged: its row follows the evaluations before it, as by itself
        assert list(alone["metrics"].status)[-1] == "diverged" and alone["lesion"].empty
    else:
        assert len(alone["lesion"]) == 1 + len(LockstepTrainer(s).models[s.models[0]].blocks)
        assert helper.parts_there > 0  # the other process took some of the lesion study


def test_the_cli_gives_deep_one_model_runs_a_second_process_and_writes_the_same_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_train, "SECOND_CORE_DEPTH", 20)
    args = ["train", "--models", "resnet-20", "--width", "8", "--steps", "12", "--eval-every", "4",
            "--paths-every", "6", "--dataset-arg", "n=300"]
    before = set(Path("/dev/shm").iterdir()) if Path("/dev/shm").is_dir() else set()
    assert main([*args, "--out", str(tmp_path / "two")]) == 0
    assert main([*args, "--workers", "1", "--out", str(tmp_path / "one")]) == 0
    for name in ("metrics.csv", "layers.csv", "paths.csv", "lesion.csv", "regions.csv"):
        one, two = (pd.read_csv(tmp_path / run / name) for run in ("one", "two"))
        if name == "metrics.csv":
            one, two = one.drop(columns="wall_s"), two.drop(columns="wall_s")
        pd.testing.assert_frame_equal(two, one, obj=name)
    after = set(Path("/dev/shm").iterdir()) if Path("/dev/shm").is_dir() else set()
    assert not [p for p in after - before if p.name.startswith("residual-lab-state-")]  # state files removed


def test_only_deep_one_model_cpu_runs_use_it_unless_told(monkeypatch):
    deep, shallow = (Settings(models=(m,), device="cpu").checked() for m in ("resnet-1002", "resnet-20"))
    two_cores = (os.cpu_count() or 1) >= 2
    assert cli_train.second_core_pays(deep) == two_cores and not cli_train.second_core_pays(shallow)
    assert not cli_train.second_core_pays(Settings(models=("resnet-1002", "plain-20"), device="cpu").checked())
    monkeypatch.setenv("RESIDUAL_LAB_SECOND_CORE", "0")
    assert not cli_train.second_core_pays(deep)
    monkeypatch.setenv("RESIDUAL_LAB_SECOND_CORE", "1")
    assert cli_train.second_core_pays(shallow) == two_cores


def test_a_second_process_that_dies_is_an_error_not_a_hang():
    s = settings(steps=40)
    helper = SecondCore(s)
    with LockstepTrainer(s, analyst=helper) as trainer:
        trainer.settle()
        helper.worker.process.kill()
        helper.worker.process.wait(timeout=30)
        with pytest.raises(WorkerError, match="ended|stopped"):
            trainer.run()
            trainer.settle()


def test_a_cli_run_whose_second_process_cannot_start_ends_with_one_line(tmp_path):
    """A worker that cannot load what it needs within its memory limit: exit 1, its line, no traceback."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "resnet_core", "train", "--models", "resnet-202", "--width", "8", "--steps", "3",
           "--dataset-arg", "n=200", "--out", str(tmp_path / "run")]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RESIDUAL_LAB_WORKER_MEMORY_MB": "40"})
    assert done.returncode == 1, done.stderr
    # the worker reports what failed it (here an import it had no memory for), or that it ended; a
    # run already under way says first where what it trained is (the folder it keeps)
    lines = done.stderr.splitlines()
    assert lines[-1].startswith("error: ") and len(lines) <= 2 and "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 or lines[0].startswith("the run stopped: what was trained is in")
    assert not (tmp_path / "run").exists()


def test_state_folders_of_killed_runs_are_removed_by_the_next_one():
    import subprocess
    import sys

    from resnet_core.training.second_core import scratch_folder

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)  # a process that has ended
    mine = scratch_folder()
    left = mine.parent / f"residual-lab-state-{pid}-abc"
    left.mkdir()
    (left / "step-30.f32").write_bytes(b"\0" * 64)
    newer = scratch_folder()
    try:
        assert not left.exists()  # its process is gone
        assert mine.exists() and newer.exists()  # this process's own are kept
        assert newer.name.startswith(f"residual-lab-state-{os.getpid()}-")
    finally:
        for folder in (mine, newer):
            folder.rmdir()


def test_training_waits_rather_than_run_far_ahead_of_the_analyses(monkeypatch):
    """Analyses at every step cost more than the steps: no more than AHEAD states wait at a time."""
    from resnet_core.training import second_core

    monkeypatch.setattr(second_core, "AHEAD", 2)
    s = settings(eval_every=1, paths_every=1, steps=10)
    helper = SecondCore(s)
    waiting = []
    write = second_core.States.write

    def counted(self, path):
        waiting.append(len(list(path.parent.iterdir())))  # state files not yet read by the other process
        return write(self, path)

    monkeypatch.setattr(second_core.States, "write", counted)
    shared = trained(s, helper)
    assert len(waiting) == 11 and max(waiting) <= 2
    for name, table in trained(s).items():
        pd.testing.assert_frame_equal(shared[name], table, obj=name)
