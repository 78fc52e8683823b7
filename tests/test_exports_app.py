"""The Records tab's exports, through Streamlit's AppTest: the trained nets of a live run saved by
its worker process and handed out as models.zip, and those of a run folder written by
``train --save-models`` when it is replayed."""
from __future__ import annotations

import io
import zipfile

from app_pages import step_of, wait_until

import dashboard.sidebar.url_state as url_state
from dashboard.sidebar.url_state import UrlState
from resnet_core.analysis.recorders import standard
from resnet_core.records.exported_models import write_model_py
from resnet_core.settings import Settings
from resnet_core.training.lockstep import LockstepTrainer

TINY = Settings(models=("plain-4", "resnet-6"), width=8, steps=10, eval_every=5, probe_every=5,
                paths_every=0, dataset_args={"n": 200})


def zip_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return sorted(z.namelist())


def test_a_live_runs_nets_are_saved_from_the_records_tab(app_test):
    at = app_test(url_state.encode(UrlState(TINY)))
    at.button(key="train").click().run()
    wait_until(at, lambda: step_of(at) == 10)
    at.session_state["tab"] = "Records"
    at.run()
    assert "models.zip" not in [d.label for d in at.get("download_button")]
    at.button(key="save_models").click().run()
    assert not at.error, [e.value for e in at.error]
    assert "models.zip" in [d.label for d in at.get("download_button")]
    tag, data = at.session_state["models_zip"]
    assert tag == ("live", 10)
    assert zip_names(data) == ["models/data.npz", "models/model.py", "models/plain-4.safetensors",
                               "models/resnet-6.safetensors"]


def test_a_replayed_run_hands_out_the_nets_it_saved(app_test, tmp_path, monkeypatch):
    monkeypatch.setenv("RESIDUAL_LAB_RUNS", str(tmp_path))
    for name, save in (("with", True), ("without", False)):
        trainer = LockstepTrainer(TINY, recorders=standard())
        trainer.run().write(tmp_path / name)
        if save:
            trainer.call("save_models", folder=str(tmp_path / name / "models"))
            write_model_py(tmp_path / name / "models")
    at = app_test()
    at.session_state["tab"] = "Records"
    at.run()
    for name, offered in (("with", True), ("without", False)):
        at.selectbox(key="replay_pick").set_value(name).run()
        at.button(key="replay_go").click().run()
        assert ("models.zip" in [d.label for d in at.get("download_button")]) is offered
        assert any("holds no trained nets" in c.value for c in at.caption) is not offered


def test_the_records_tab_offers_the_run_as_a_notebook(app_test):
    at = app_test(url_state.encode(UrlState(TINY)))
    at.session_state["tab"] = "Records"
    at.run()
    assert "notebook.zip" not in [d.label for d in at.get("download_button")]  # nothing trained yet
    at.button(key="train").click().run()
    wait_until(at, lambda: step_of(at) == 10)
    assert "notebook.zip" in [d.label for d in at.get("download_button")]
