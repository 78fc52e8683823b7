"""What the + x does to the signal, and blocks that refine (issue 21, parts 2 and 3): the signal
propagation plot, the Jacobian's singular values and the block lens, as the trainer records them,
checked against what the papers say on seeds these tests pick, and round-tripped through a run folder."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from resnet_core.analysis.lens import lens_at
from resnet_core.analysis.signal import growth_per_block, isometry_share
from resnet_core.analysis.signal.compute import jacobian_rows, signal_rows, stack_jacobians
from resnet_core.nets.models import build_model
from resnet_core.records import STEP_TABLES, RunRecord
from resnet_core.records.step_tables import STEP_ANALYSES, StepTables
from resnet_core.settings import Settings
from resnet_core.analysis.recorders import standard
from resnet_core.training.lockstep import LockstepTrainer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def points(seed: int, n: int = 256) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", [4, 9])
@pytest.mark.parametrize("model", ["resnet-56-nobn-skipinit", "resnet-56-nobn-fixup", "resnet-56-pre-nobn-fixup"])
def test_skipinit_and_fixup_keep_the_streams_variance_flat_at_step_0(model, seed):
    s = Settings(models=(model,), seed=seed).checked()
    net = build_model(model, s, (2,), 3)
    frame = pd.DataFrame(signal_rows(net, points(seed), 0, model))
    assert len(frame) == 27
    assert np.allclose(frame["variance"], frame["variance"].iloc[0], rtol=1e-12)
    assert (frame["branch_variance"] == 0).all(), "every branch starts at zero"
    assert growth_per_block(frame, model) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [1, 5])
def test_he_init_without_normalisation_doubles_the_variance_per_block_and_batchnorm_does_not(seed):
    s = Settings(models=("resnet-22-pre-nobn", "resnet-22-pre"), width=256, seed=seed).checked()
    x = points(seed, 1024)
    frames = {m: pd.DataFrame(signal_rows(build_model(m, s, (2,), 3), x, 0, m)) for m in s.models}
    assert 1.7 < growth_per_block(frames["resnet-22-pre-nobn"], "resnet-22-pre-nobn") < 2.3
    # With BN each branch adds about one unit of variance: linear growth, far below 2^L (Brock et al. 2021).
    bn = frames["resnet-22-pre"]["variance"].to_numpy()
    assert bn[-1] / bn[0] < 10 < frames["resnet-22-pre-nobn"]["variance"].iloc[-1] / frames["resnet-22-pre-nobn"]["variance"].iloc[0]


@pytest.mark.parametrize("seed", [0, 6])
def test_the_jacobian_of_a_stack_at_skipinit_is_the_identity(seed):
    model = "resnet-20-pre-skipinit"
    s = Settings(models=(model,), width=24, seed=seed).checked()
    net = build_model(model, s, (2,), 3)
    jac = stack_jacobians(net, points(seed, 8))
    assert torch.equal(jac, torch.eye(24).expand(8, 24, 24))
    rows = jacobian_rows(net, points(seed, 32), 0, model)
    assert [r["index"] for r in rows] == list(range(24)) and all(r["singular_value"] == pytest.approx(1.0) for r in rows)


def test_the_jacobian_matches_autograd_and_the_plain_stack_leaves_fewer_singular_values_near_1():
    s = Settings(models=("plain-56-nobn", "resnet-56-nobn"), width=16, seed=3, block="pre").checked()
    x = points(3, 16)
    plain = build_model("plain-56-nobn", s, (2,), 3)
    jac = stack_jacobians(plain, x[:2])
    h0 = plain.features(x[:1])
    reference = torch.autograd.functional.jacobian(lambda v: _stack(plain, v), h0).reshape(16, 16)
    assert torch.allclose(jac[0], reference, rtol=1e-5, atol=1e-6)
    near_one = {m: isometry_share(pd.DataFrame(jacobian_rows(build_model(m, s, (2,), 3), x, 0, m)), m)
                for m in s.models}
    assert near_one["resnet-56-nobn"] >= near_one["plain-56-nobn"] + 0.2, near_one


def _stack(net, v):
    for block in net.blocks:
        v = block(v)
    return v


@pytest.fixture(scope="module")
def small_run() -> RunRecord:
    s = Settings(models=("plain-20", "resnet-20", "resnet-20-nobn-skipinit"), dataset_args={"n": 600}, width=16,
                 steps=40, eval_every=10, paths_every=20, seed=2).checked()
    trainer = LockstepTrainer(s, recorders=standard())
    trainer.run()
    return trainer.record


def test_the_lens_at_the_last_block_is_the_models_own_training_error(small_run):
    lens, metrics = small_run.table_frame("lens.csv"), small_run.metrics_frame()
    assert sorted(lens["step"].unique()) == [0, 20, 40]
    for model in small_run.models():
        for step in (0, 20, 40):
            own = metrics[(metrics["model"] == model) & (metrics["step"] == step)]["train_error"].iloc[0]
            read = lens_at(lens, model, step)
            assert read["train_error"].iloc[-1] == own, (model, step)
            assert list(read["block"]) == list(range(1, 10))


def test_the_tables_stream_to_the_run_folder_and_read_back(small_run, tmp_path):
    small_run.write(tmp_path / "run")
    back = RunRecord.read(tmp_path / "run")
    for table, columns in STEP_TABLES.items():
        a, b = small_run.table_frame(table), back.table_frame(table)
        assert list(a.columns) == columns and len(a) > 0
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)
    streamed = RunRecord()
    streamed.config = small_run.config
    streamed.stream_to(tmp_path / "streamed")
    for table in STEP_TABLES:
        streamed.add_rows(table, small_run.table_frame(table).to_dict("records"))
    streamed.close_stream()
    again = RunRecord.read(tmp_path / "streamed")
    for table in STEP_TABLES:
        assert len(again.table_frame(table)) == len(small_run.table_frame(table))


def test_a_bad_cell_in_a_step_table_is_one_line_naming_it(small_run, tmp_path):
    from resnet_core.records import RecordError

    small_run.write(tmp_path / "run")
    path = tmp_path / "run" / "lens.csv"
    lines = path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[3] = "1.5"  # an error above 1
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    with pytest.raises(RecordError, match="lens.csv: column train_error"):
        RunRecord.read(tmp_path / "run")


def test_the_tables_in_memory_stay_bounded():
    tables = StepTables()
    for step in range(500):
        tables.add("jacobian.csv", [{"step": step, "model": "resnet-20", "index": i, "singular_value": 1.0}
                                    for i in range(32)])
    kept = sorted({row["step"] for row in tables.rows("jacobian.csv")})
    assert len(kept) == STEP_ANALYSES[1] and kept[0] == 0 and kept[-2:] == [498, 499]


def test_a_cnn_records_its_signal_and_no_jacobian():
    from resnet_core.training.tensors import load_dataset

    data = load_dataset("digits", {})
    s = Settings(dataset="digits", arch="cnn", width=8, models=("resnet-20",)).checked()
    net = build_model("resnet-20", s, data.input_shape, data.n_classes)
    x = data.x_train[:32]
    assert len(signal_rows(net, x, 0, "resnet-20")) == 9
    assert jacobian_rows(net, x, 0, "resnet-20") == []


def test_a_cached_run_and_a_run_replayed_to_a_step_keep_the_tables(small_run):
    """The run cache's copy of a finished run, and a cached run joined mid-way (``record_until``), carry
    the signal, Jacobian and lens rows of the steps they hold."""
    from dashboard.runtime.finished_runs import frozen_copy
    from dashboard.runtime.run_cache import record_until

    copy = frozen_copy(small_run)
    halfway = record_until(small_run, 20)
    for table in STEP_TABLES:
        whole = small_run.table_frame(table)
        assert len(copy.table_frame(table)) == len(whole) > 0
        assert sorted(halfway.table_frame(table)["step"].unique()) == [0, 20]
