"""Adding a block variant is one edit in one module. This file is that module: it defines a toy
variant, a gated branch y = s(x) + tanh(g)·F(x) with one learnable g a block (a little like
SkipInit, but its own class), and registers it; nothing of the project changes. It then trains
through every path: in this process, the command line and its worker processes (which import this
file through RESIDUAL_LAB_PLUGINS), the probes, the exact path decomposition, the lesion study and
the sweep, with the fast paths falling back to the modules and autograd by themselves."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.nets.models import BLOCK_VARIANTS, Block, Probe, build_model, parameter_count, register_block
from resnet_core.settings import CHOICES, SETTING_META

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


class GatedBlock(Block):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.g = nn.Parameter(torch.tensor(0.5)) if self.residual else None

    def branch(self, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
        h = super().branch(x, probe)
        return h if self.g is None else torch.tanh(self.g) * h


def register() -> None:
    """The one edit: the variant, and the name that selects it."""
    register_block("gated", "gated branch: y = s(x) + tanh(g)·F(x) (a toy variant the tests define)")(GatedBlock)


if __name__ in os.environ.get("RESIDUAL_LAB_PLUGINS", "").split(","):  # imported as a plugin: the CLI, a worker
    register()


@pytest.fixture(autouse=True, scope="module")
def gated_is_registered():
    """Here for this file's tests only: the other tests' block choices stay the project's own."""
    register()
    yield
    BLOCK_VARIANTS.pop("gated", None)
    SETTING_META["block"].choices.pop("gated", None)
    CHOICES["block"] = tuple(SETTING_META["block"].choices)


PLUGIN_ENV = {**os.environ, "RESIDUAL_LAB_PLUGINS": "test_block_variant",
              "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])}


def settings(**changes):
    from resnet_core.settings import Settings

    base = dict(models=("plain-8", "resnet-8"), block="gated", width=16, steps=30, eval_every=10, paths_every=10,
                probe_every=5, dataset_args={"n": 400}, seed=1)
    return Settings(**{**base, **changes}).checked()


def test_the_settings_know_it_and_the_net_is_built_of_it():
    s = settings()
    plain, res = (build_model(m, s, (2,), 3) for m in s.models)
    assert all(type(b) is GatedBlock for b in res.blocks)
    assert parameter_count(res) == parameter_count(plain) + len(res.blocks)  # one g per residual block
    assert not any(b.bare for b in res.blocks)  # so no fast path takes it


def test_the_fast_paths_fall_back_and_give_autograds_numbers():
    from resnet_core.nets import mlp_stack
    from resnet_core.nets.mlp_stacked import stackable

    net = build_model("resnet-8", settings(), (2,), 3)
    twin = copy.deepcopy(net)
    x, y = torch.randn(64, 2), torch.randint(0, 3, (64,))
    F.cross_entropy(mlp_stack.forward(net, x), y).backward()
    F.cross_entropy(twin(x), y).backward()
    assert net._mlp_stack == () and not stackable(net)
    for (name, a), (_, b) in zip(net.named_parameters(), twin.named_parameters()):
        assert torch.equal(a.grad, b.grad), name
    assert net.blocks[0].g.grad is not None and net.blocks[0].g.grad != 0  # g learns


def test_the_exact_path_decomposition_adds_up_to_autograds_gradient():
    from resnet_core.analysis.paths.compute import path_gradients
    from resnet_core.training.tensors import load_dataset

    data = load_dataset("spirals", {"n": 400})
    net = build_model("resnet-14", settings(models=("resnet-14",)), data.input_shape, data.n_classes)
    result = path_gradients(net, data.x_train[:64], data.y_train[:64], tol=0, keep_terms=True)
    assert result.exact and result.residual < 1e-5
    assert float((result.terms.sum(0) - result.gradient).norm() / result.gradient.norm()) < 1e-5


def test_a_run_in_this_process_records_probes_paths_and_lesions():
    from resnet_core.analysis.recorders import standard
    from resnet_core.training.lockstep import LockstepTrainer

    trainer = LockstepTrainer(settings(), recorders=standard())
    trainer.run()
    trainer.call("lesion_study")
    record = trainer.record
    layers = record.layers_frame()
    assert layers.query("model == 'resnet-8'").branch_ratio.notna().any()  # the probes see its branches
    paths = record.paths_frame()
    assert sorted(paths.step.unique()) == [0, 10, 20, 30] and (paths.residual < 1e-4).all()
    assert set(record.lesion_frame().model) == {"plain-8", "resnet-8"}
    assert record.metrics_frame().query("step == 30 and model == 'resnet-8'").train_error.iloc[0] < 0.5


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnet_core", *args], env=PLUGIN_ENV, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_the_command_line_and_its_workers_train_it(tmp_path):
    out = tmp_path / "run"
    done = run_cli("train", "--models", "plain-8,resnet-8", "--block", "gated", "--width", "16", "--steps", "30",
                   "--eval-every", "10", "--paths-every", "10", "--probe-every", "5", "--seed", "1",
                   "--dataset-arg", "n=400", "--workers", "2",
                   "--out", str(out))
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["block"] == "gated"
    params = {m["name"]: m["parameters"] for m in config["models"]}
    assert params["resnet-8"] == params["plain-8"] + 3  # its three gates, built in the worker
    for table in ("metrics.csv", "layers.csv", "paths.csv", "lesion.csv"):
        assert len(pd.read_csv(out / table)) > 0, table
    from resnet_core.training.lockstep import LockstepTrainer

    here = LockstepTrainer(settings()).run().metrics_frame()  # the workers' numbers are this process's
    def by_step(frame: pd.DataFrame) -> pd.DataFrame:  # two workers: their rows interleave as they come
        return frame.drop(columns="wall_s").sort_values(["step", "model"], ignore_index=True)
    pd.testing.assert_frame_equal(by_step(pd.read_csv(out / "metrics.csv")), by_step(here), check_dtype=False)


def test_the_sweep_trains_it_seed_by_seed(tmp_path):
    out = tmp_path / "sweep"
    done = run_cli("sweep", "--depths", "4,8", "--seeds", "0,1", "--block", "gated", "--width", "16", "--steps", "10",
                   "--dataset-arg", "n=400", "--workers", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out / "sweep.csv")
    assert len(frame) == 8 and frame.train_error.between(0, 1).all()


def test_without_the_plugin_the_name_is_refused_in_one_line(tmp_path):
    env = {k: v for k, v in PLUGIN_ENV.items() if k != "RESIDUAL_LAB_PLUGINS"}
    done = subprocess.run([sys.executable, "-m", "resnet_core", "train", "--block", "gated", "--out", str(tmp_path / "x")],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "gated" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "resnet_core", "presets"], env={**env, "RESIDUAL_LAB_PLUGINS": "no_such_module"},
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: RESIDUAL_LAB_PLUGINS: cannot import 'no_such_module' (ModuleNotFoundError: No module named 'no_such_module')")


@pytest.mark.parametrize("name", ["post", "Gated!"])
def test_a_variant_may_not_take_a_name_in_use_or_a_malformed_one(name):
    from resnet_core.settings import SettingsError

    with pytest.raises(SettingsError, match="new lowercase word"):
        register_block(name, "x")(GatedBlock)
