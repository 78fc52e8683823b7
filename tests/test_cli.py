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
