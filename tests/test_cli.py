"""The command line: runs write the contracted files; bad arguments exit 2 with one line and write nothing."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from resnet_core.cli import main

ROOT = Path(__file__).resolve().parents[1]

# (arguments after `train --out DIR`, words the one-line message must contain)
BAD_TRAIN_ARGS = [
    (["--preset", "nope"], ["unknown preset", "degradation"]),
    (["--dataset", "mnist"], ["unknown dataset", "spirals"]),
    (["--models", "plain-7"], ["depth 7", "6 or 8"]),
    (["--models", "plain--4"], ["plain-D or resnet-D"]),
    (["--models", "resnet-9999"], ["too deep"]),
    (["--width", "0"], ["width", "from 2"]),
    (["--lr", "0"], ["lr", "greater than 0"]),
    (["--lr", "-1"], ["lr", "greater than 0"]),
    (["--lr", "nan"], ["lr", "finite"]),
    (["--batch-size", "0"], ["batch_size", "from 1"]),
    (["--steps", "abc"], ["--steps", "whole number"]),
    (["--block", "banana"], ["--block", "post", "pre"]),
    (["--bogus"], ["unrecognized arguments", "--bogus"]),
    (["--dataset", "csv", "--dataset-arg", "path=/no/such.csv"], ["/no/such.csv", "not found"]),
    (["--dataset-arg", "arms=lots"], ["arms"]),
    (["--dataset", "cifar10", "--dataset-arg", "root=/no/cifar"], ["cifar", "data_batch_1.bin"]),
    (["--batch-size", "4000"], ["batch_size 4000", "training set", "at most 1600"]),
    (["--width", "512", "--models", "resnet-1002"], ["weights", "lower the width or the depth"]),
]


@pytest.mark.parametrize("args,words", BAD_TRAIN_ARGS, ids=[" ".join(a) for a, _ in BAD_TRAIN_ARGS])
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, args, words):
    out = tmp_path / "run"
    code = main(["train", "--out", str(out), "--steps", "5", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word.lower() in err.lower(), (word, err)
    assert not out.exists()


def test_an_existing_run_is_not_overwritten_without_asking(tmp_path, capsys):
    (tmp_path / "metrics.csv").write_text("step\n")
    assert main(["train", "--out", str(tmp_path), "--steps", "2"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "metrics.csv").read_text() == "step\n"


def test_presets_lists_one_line_each(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert {"degradation", "no-bn", "identity", "preact-deep", "thousand-layers", "digits-cnn"} <= set(names)
    assert all(len(line.split(maxsplit=1)[1]) > 20 for line in lines)  # each with its one-line description


def test_train_writes_the_contracted_run_folder(tmp_path):
    """A real `python -m resnet_core` process: flags override the preset; tidy CSVs come out."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "resnet_core", "train", "--preset", "degradation", "--models", "plain-6,resnet-14",
           "--steps", "20", "--eval-every", "10", "--dataset-arg", "n=300", "--workers", "2", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resnet-14" in done.stdout and "Traceback" not in done.stderr
    config = json.loads((out / "config.json").read_text())
    assert [m["name"] for m in config["models"]] == ["plain-6", "resnet-14"]
    assert config["settings"]["steps"] == 20 and config["settings"]["dataset_args"] == {"n": 300}
    assert {"torch", "python"} <= set(config["versions"])
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == ["step", "model", "train_loss", "train_error", "test_error", "wall_s", "status"]
    assert sorted(metrics.step.unique()) == [0, 10, 20]
    layers = pd.read_csv(out / "layers.csv")
    assert list(layers.columns) == ["step", "model", "layer", "name", "grad_norm", "act_std", "branch_ratio"]
    assert layers.groupby("model").layer.nunique().to_dict() == {"plain-6": 6, "resnet-14": 14}


def test_bad_argument_in_a_real_process_has_no_traceback(tmp_path):
    cmd = [sys.executable, "-m", "resnet_core", "train", "--models", "resnet-13", "--out", str(tmp_path / "x")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: depth 13 is not valid for the MLP (2n+2): try 12 or 14"


TINY_RUN = ["--models", "plain-4,resnet-6", "--width", "8", "--steps", "6", "--eval-every", "3",
            "--dataset-arg", "n=200", "--workers", "1"]


def test_a_folder_that_is_not_a_run_is_never_written_into(tmp_path, capsys):
    """A user's own config.json and layers.csv: refused, with or without --overwrite, untouched."""
    own = {"config.json": '{"my": "notes"}', "layers.csv": "my,own\n1,2\n"}
    for name, text in own.items():
        (tmp_path / name).write_text(text)
    for extra in ([], ["--overwrite"]):
        assert main(["train", "--out", str(tmp_path), *TINY_RUN, *extra]) == 2
        err = capsys.readouterr().err
        assert "holds files that are not a run (config.json, layers.csv)" in err and err.count("\n") == 1
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == own


def test_overwrite_replaces_the_whole_earlier_run(tmp_path, capsys):
    """The first run analysed paths; the second does not: no paths.csv of the first is left behind."""
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY_RUN, "--paths-every", "3"]) == 0
    assert (out / "paths.csv").exists() and (out / "regions.csv").exists()
    assert main(["train", "--out", str(out), *TINY_RUN, "--paths-every", "0"]) == 2  # not without asking
    assert main(["train", "--out", str(out), *TINY_RUN, "--paths-every", "0", "--dataset", "moons",
                 "--overwrite"]) == 0
    capsys.readouterr()
    assert not (out / "paths.csv").exists()
    assert json.loads((out / "config.json").read_text())["settings"]["dataset"] == "moons"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no partial or old folder left beside it


def test_a_run_that_dies_has_written_what_it_trained(tmp_path):
    """Killed (no chance to clean up) half way: --out is not there, and the partial folder beside it
    is a run folder holding the steps trained so far."""
    import os
    import signal
    import time

    from resnet_core.records import RunRecord

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "resnet_core", "train", "--models", "plain-4", "--width", "8", "--steps", "100000",
           "--eval-every", "5", "--dataset-arg", "n=200", "--paths-every", "0", "--out", str(out)]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            partial = [p for p in tmp_path.iterdir() if p.name.startswith("run.partial-")]
            if partial and (partial[0] / "metrics.csv").exists() and \
                    len((partial[0] / "metrics.csv").read_text().splitlines()) > 3:
                break
            time.sleep(0.5)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not out.exists()
    record = RunRecord.read(partial[0])
    assert record.latest_step() >= 10 and len(record.snapshots("plain-4")) >= 5


def test_workers_beyond_the_cores_are_refused(tmp_path, capsys):
    import os

    cores = os.cpu_count() or 1
    assert main(["train", "--out", str(tmp_path / "run"), "--workers", str(cores + 1)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --workers must be from 0 (automatic) to {cores}, this "
                                               f"machine's cores (got {cores + 1})")
    assert not (tmp_path / "run").exists()


def test_the_summary_reads_the_last_evaluation_and_the_mean_of_each_model(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--models", "plain-4,plain-14,resnet-14", "--norm", "none", "--lr", "1", "--steps", "30",
            "--eval-every", "5", "--dataset-arg", "n=300", "--paths-every", "0", "--workers", "1", "--out", str(out)]
    assert main(args) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:-2]}
    metrics = pd.read_csv(out / "metrics.csv")
    for model, rows in metrics.groupby("model"):
        ok = rows[rows.status == "ok"]
        words = lines[model].split()
        if (rows.status == "diverged").any():  # without BN at lr 1 the deeper nets blow up (test_trainer)
            assert lines[model].endswith(f"diverged at step {rows[rows.status == 'diverged'].step.iloc[0]}")
        else:
            assert words[-1] == "ok"
        if len(ok):
            last = ok.iloc[-1]
            assert words[1:4] == [f"{last.train_error:.1%}", f"{last.test_error:.1%}", f"{ok.train_error.mean():.1%}"]
    assert set(lines) == {"plain-4", "plain-14", "resnet-14"}


def test_out_through_a_link_to_an_empty_folder_writes_the_run_into_that_folder(tmp_path, capsys):
    """Issue 20, item 12: it trained, then failed with NotADirectoryError and a traceback, leaving
    link.partial-* behind."""
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    assert main(["train", "--out", str(link), "--steps", "2", "--models", "plain-4"]) == 0, capsys.readouterr().err
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert {"config.json", "metrics.csv", "layers.csv"} <= {p.name for p in real.iterdir()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]  # no partial folder left
