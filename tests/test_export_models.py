"""The trained nets out of the app: ``train --save-models`` writes ``models/NAME.safetensors``, a
standalone ``models/model.py`` and ``models/data.npz``, and a student's fresh Python, with torch and
safetensors but *without this project* (a meta-path finder refuses ``resnet_core`` and
``dashboard``, and the check fails if either was loaded), rebuilds every net from ``model.py`` and
gets the run's last recorded training and test error exactly. Every block option there is today
is covered: post/pre, identity/projection/pad shortcuts, BN or none, MLP and CNN, 1-3 layers per
branch."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
import io
from pathlib import Path

import pandas as pd
import pytest

from resnet_core.cli.output import is_run_folder
from resnet_core.records.exported_models import models_zip, write_model_py
from resnet_core.settings import Settings
from resnet_core.analysis.recorders import SavedNets
from resnet_core.training.lockstep import LockstepTrainer

REPO = Path(__file__).resolve().parents[1]

# One run per line; together they use every block option (names: -bN layers per branch, -pre, -nobn).
CASES = {
    "mlp-projection": dict(dataset="spirals", arch="mlp", stages=2, shortcut="projection",
                           models="plain-6-pre,resnet-8-b3-pre-nobn,resnet-4-b1,resnet-6-nobn"),
    "mlp-pad": dict(dataset="spirals", arch="mlp", stages=2, shortcut="pad", block="pre", models="resnet-6,resnet-6-post"),
    "cnn-identity": dict(dataset="digits", arch="cnn", width=8, models="plain-8,resnet-8,resnet-8-pre-nobn"),
    "cnn-pad": dict(dataset="digits", arch="cnn", width=8, shortcut="pad", models="resnet-5-b1,resnet-11-b3-pre"),
}

# Run in a fresh interpreter: nothing of this project may load; torch, safetensors and numpy only.
STUDENT = r"""
import importlib.abc, importlib.util, json, sys
from pathlib import Path

class NotThisProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("resnet_core", "dashboard"):
            raise ImportError(f"{name}: the exported model must not need Residual Lab")

sys.meta_path.insert(0, NotThisProject())
import numpy as np
import torch

torch.set_num_threads(1)
out = {}
for i, folder in enumerate(sys.argv[1:]):
    spec = importlib.util.spec_from_file_location(f"model_{i}", Path(folder) / "model.py")
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
    data = np.load(Path(folder) / "data.npz")
    x_train, y_train = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    x_test, y_test = torch.from_numpy(data["x_test"]), torch.from_numpy(data["y_test"])
    for name in model.ARCHITECTURES:
        net = model.load(name)
        out[f"{folder}|{name}"] = [model.error(net, x_train, y_train, batch_stats=True), model.error(net, x_test, y_test)]
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("resnet_core", "dashboard"))
print(json.dumps({"errors": out, "project_modules": loaded}))
"""


def as_student(folders: list[Path]) -> dict[str, list[float]]:
    """Each saved net's (training, test) error as model.py computes them, in a fresh interpreter
    started outside the repository, isolated (-I: no cwd or PYTHON* variables on the path; -B: no __pycache__ left)."""
    done = subprocess.run([sys.executable, "-I", "-B", "-c", STUDENT, *map(str, folders)], cwd=folders[0],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["project_modules"] == []
    return answer["errors"]


def last_errors(metrics: pd.DataFrame) -> dict[str, list[float]]:
    ok = metrics[metrics["status"] == "ok"]
    last = ok.groupby("model").tail(1)
    return {row.model: [row.train_error, row.test_error] for row in last.itertuples()}


def test_every_block_option_reloads_standalone_with_the_runs_errors(tmp_path):
    expected, folders = {}, []
    for case, overrides in CASES.items():
        settings = Settings.from_dict({**overrides, "steps": 12, "eval_every": 6, "paths_every": 0, "seed": 3})
        trainer = LockstepTrainer(settings, recorders=[SavedNets()])
        trainer.run()
        folder = tmp_path / case / "models"
        trainer.call("save_models", folder=str(folder))
        write_model_py(folder)
        folders.append(folder)
        for name, errors in last_errors(trainer.record.metrics_frame()).items():
            expected[f"{folder}|{name}"] = errors
        assert {p.stem for p in folder.glob("*.safetensors")} == set(settings.models)
    got = as_student(folders)
    assert got == expected
    # the errors are not all alike: a net loaded wrongly could not match them by chance
    assert len({tuple(v) for v in expected.values()}) > 3


def test_the_cli_saves_the_models_of_a_run_trained_in_worker_processes(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "resnet_core", "train", "--dataset", "spirals",
                           "--models", "plain-8,resnet-8", "--steps", "20", "--eval-every", "10",
                           "--paths-every", "0", "--workers", "2", "--save-models", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    models = out / "models"
    assert sorted(p.name for p in models.iterdir()) == ["data.npz", "model.py", "plain-8.safetensors",
                                                       "resnet-8.safetensors"]
    expected = {f"{models}|{k}": v for k, v in last_errors(pd.read_csv(out / "metrics.csv")).items()}
    assert as_student([models]) == expected
    # the Records tab hands out the same folder as one zip, model.py made the same way
    with zipfile.ZipFile(io.BytesIO(models_zip(out))) as z:
        assert sorted(z.namelist()) == sorted(f"models/{p.name}" for p in models.iterdir())
        assert z.read("models/model.py").decode() == (models / "model.py").read_text()
    # a run folder with its models is still a run: --overwrite may replace it, all of it
    assert is_run_folder(out)


def test_model_py_is_plain_pytorch():
    """What model.py imports: torch and the standard library (safetensors inside ``load``, numpy, torch's
    own dependency, inside ``main`` to read data.npz)."""
    source = (REPO / "resnet_core" / "nets" / "standalone.py").read_text()
    imported = {alias.name.partition(".")[0] for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.partition(".")[0] for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported == {"__future__", "pathlib", "torch", "safetensors", "numpy"}


def test_models_zip_is_none_without_saved_models(tmp_path):
    assert models_zip(tmp_path) is None
    (tmp_path / "models").mkdir()
    assert models_zip(tmp_path) is None


@pytest.mark.parametrize("junk", [b"", b"\xff" * 8 + b"{}", b"\x02\x00\x00\x00\x00\x00\x00\x00{}"])
def test_a_file_that_is_not_a_saved_net_is_a_record_error(tmp_path, junk):
    from resnet_core.records import RecordError

    (tmp_path / "x.safetensors").write_bytes(junk)
    with pytest.raises(RecordError, match="x.safetensors is not a net saved by Residual Lab"):
        write_model_py(tmp_path)


def test_a_parameter_the_standalone_model_does_not_know_fails_the_export_by_name(tmp_path, spirals):
    """What a new init option adds (a learnable scalar at the end of each branch, say) is not silently
    dropped: the export names it until nets/export.py and nets/standalone.py describe it."""
    import torch

    from resnet_core.nets.export import ExportError, save_model
    from resnet_core.nets.models import build_model

    settings = Settings(models=("resnet-6",), width=8)
    net = build_model("resnet-6", settings, spirals.input_shape, spirals.n_classes)
    save_model(net, tmp_path, spirals.input_shape)  # as built today: it exports
    net.blocks[0].branch_scale = torch.nn.Parameter(torch.zeros(()))
    with pytest.raises(ExportError, match="blocks.0.branch_scale"):
        save_model(net, tmp_path / "again", spirals.input_shape)
    assert not (tmp_path / "again").exists()
