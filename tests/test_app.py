"""The dashboard through Streamlit's AppTest: the buttons, training, the cache, replay, uploads, and
what the page says (the sidebar's controls and the link: test_app_controls.py).

The app runs in this process; its training jobs use real worker processes (see conftest's
``app_test``, which stops them after each test)."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import bad_inputs  # noqa: F401  the crafted run folders
import pytest
import torch
from app_pages import TINY, TINY_QUERY, depth_sliders, step_of, wait_until

import dashboard.runtime.replay as replay
import dashboard.sidebar.url_state as url_state
from dashboard.sidebar.url_state import UrlState
from dashboard.text import shown
from resnet_core.analysis.recorders import standard
from resnet_core.presets import get_preset
from resnet_core.records import RecordError
from resnet_core.training.lockstep import LockstepTrainer


def test_default_page_opens_the_degradation_preset_with_a_card_per_model(app_test):
    at = app_test()
    assert not at.exception and not at.error
    assert at.session_state["settings"] == get_preset("degradation").settings()
    assert at.query_params["preset"] == "degradation"
    assert [m.label for m in at.metric] == ["plain-20", "plain-56", "resnet-56"]
    assert all(m.value == "—" for m in at.metric)
    assert step_of(at) == 0
    assert {b.label for b in at.button} >= {"Train", "Pause", "Step", "Reset"}








def test_buttons_drive_the_training_job(app_test):
    at = app_test(TINY_QUERY)
    at.button(key="step").click().run()
    wait_until(at, lambda: step_of(at) == 1)
    assert all(m.value.endswith("%") for m in at.metric)  # the step-0 evaluation is on the cards
    at.button(key="train").click().run()
    wait_until(at, lambda: step_of(at) > 5)
    at.button(key="pause").click().run()
    wait_until(at, lambda: any("paused" in md.value for md in at.markdown))
    held = step_of(at)
    time.sleep(0.5)
    at.run()
    assert step_of(at) == held
    at.button(key="reset").click().run()
    wait_until(at, lambda: step_of(at) == 0 and all(m.value == "—" for m in at.metric))
    assert not at.exception


def test_a_tabs_training_is_charged_to_that_tab_in_the_scheduler(app_test):
    """Turns are shared per browser tab (resnet_core.scheduling.scheduler): the tab's run is in its share."""
    from dashboard.runtime.session import _OPEN_SESSIONS

    at = app_test(url_state.encode(UrlState(TINY.with_changes(seed=41))))  # a run nobody trained before
    at.button(key="step").click().run()
    wait_until(at, lambda: step_of(at) == 1)
    tab = at.session_state["_page_id"]
    [job] = [j for j in _OPEN_SESSIONS if j.owner == tab]
    assert job.source.owner == tab


def test_changing_a_model_mid_run_resets_with_a_notice(app_test):
    at = app_test(TINY_QUERY)
    at.button(key="step").click().run()
    wait_until(at, lambda: step_of(at) == 1)
    slider = depth_sliders(at)[-1]
    deeper = [d for d in slider.options if int(d) > slider.value][0]
    slider.set_value(int(deeper)).run()
    assert any("reset" in t.value for t in at.toast)
    wait_until(at, lambda: step_of(at) == 0)
    assert [m.label for m in at.metric] == ["plain-4", f"resnet-{deeper}"]


def test_a_run_the_class_trained_already_is_served_from_the_cache_and_says_so(app_test):
    """Another session (here: one driven directly, on the same cache folder) trained these settings;
    this page is served that run, and marks it quietly in the header, with the same cards."""
    from dashboard.runtime.class_runs import CACHED_NOTICE, ClassRuns
    from dashboard.runtime.run_cache import RunCache
    from dashboard.runtime.session import Session
    from resnet_core.scheduling.scheduler import Scheduler

    settings = TINY.with_changes(steps=40, seed=11)
    scheduler = Scheduler(size=1)
    try:
        runs = ClassRuns(scheduler, RunCache())  # the test session's cache folder (conftest)
        other = Session(scheduler, settings, runs)
        other.train()
        deadline = time.monotonic() + 60
        while other.status().state != "done" and time.monotonic() < deadline:
            time.sleep(0.1)
        runs.wait_for_writes()
        cards = charts_cards(other.status().record, settings.models)
    finally:
        scheduler.close()
    at = app_test(url_state.encode(UrlState(settings)))
    assert not any(CACHED_NOTICE in md.value for md in at.markdown)  # nothing served before Train
    at.button(key="train").click().run()
    wait_until(at, lambda: step_of(at) == 40)
    assert any(CACHED_NOTICE in md.value for md in at.markdown)
    assert [m.value for m in at.metric] == cards


def charts_cards(record, models) -> list[str]:
    import dashboard.charts as charts

    return [card.value for card in charts.model_cards(record.metrics_frame(), list(models))]


def test_learning_rate_change_mid_run_keeps_the_run(app_test):
    at = app_test(TINY_QUERY)
    at.button(key="step").click().run()
    wait_until(at, lambda: step_of(at) == 1)
    at.select_slider(key="w.lr").set_value(0.01).run()
    assert not at.toast and not at.error
    assert step_of(at) == 1 and at.query_params["lr"] == "0.01"
    at.button(key="step").click().run()
    wait_until(at, lambda: step_of(at) == 2)












def test_replay_a_run_folder_in_the_same_panels(app_test, tmp_path, monkeypatch):
    monkeypatch.setenv("RESIDUAL_LAB_RUNS", str(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny layers: one thread is as fast, and does not fight the other processes
    try:
        record = LockstepTrainer(TINY.with_changes(steps=10, paths_every=5), recorders=standard()).run()
        record.write(tmp_path / "demo")
    finally:
        torch.set_num_threads(threads)
    at = app_test()
    at.session_state["tab"] = "Records"
    at.run()
    assert [d.label for d in at.get("download_button")][:2] == ["metrics.csv", "layers.csv"]
    assert at.selectbox(key="replay_pick").options == ["demo"]
    at.button(key="replay_go").click().run()
    assert step_of(at) == 10
    assert any("replay" in md.value for md in at.markdown)
    assert [m.label for m in at.metric] == list(TINY.models)
    errors = record.metrics_frame().query("step == 10")["train_error"]
    assert [m.value for m in at.metric] == [f"{100 * e:.1f} %" for e in errors]
    at.session_state["tab"] = "Decision regions"  # the maps came back from regions.csv
    at.run()
    assert len(at.get("plotly_chart")) == 1 and not at.info
    at.session_state["tab"] = "Records"  # its step tables hand out as its other tables do
    at.run()
    offered = {d.label: d for d in at.get("download_button")}
    for table in ("signal.csv", "jacobian.csv", "lens.csv"):
        assert table in offered and not offered[table].proto.disabled, table


def test_replay_refuses_anything_outside_the_runs_folder(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "config.json").write_text("{}")
    (tmp_path / "runs" / "link").symlink_to(tmp_path / "elsewhere")
    assert replay.run_folders(tmp_path / "runs") == []
    for name in ("../elsewhere", "link", "/etc"):
        with pytest.raises(RecordError):
            replay.resolve(name, tmp_path / "runs")


def test_a_diverging_model_is_shown_as_diverged_while_the_others_train(app_test):
    # Without normalisation a 302-layer residual net's signal explodes at once (He init).
    settings = TINY.with_changes(models=("plain-4", "resnet-302"), norm="none", steps=20)
    at = app_test(url_state.encode(UrlState(settings)))
    at.button(key="train").click().run()
    wait_until(at, lambda: step_of(at) == 20)
    cards = {m.label: m.value for m in at.metric}
    assert cards["resnet-302"] == "diverged at step 1"
    assert cards["plain-4"].endswith("%")  # the other model trained on to the end


POINTS_CSV = "x1,x2,label\n" + "\n".join(f"{i % 7},{(i * 3) % 11},{'ab'[i % 2]}" for i in range(200))


def test_a_csv_upload_trains_on_the_users_points(app_test):
    at = app_test(url_state.encode(UrlState(TINY.with_changes(dataset="csv", dataset_args={}))))
    assert any("upload a CSV" in e.value for e in at.error)
    at.file_uploader(key="w.csv_upload").upload("bad.csv", b"a,b\n1,2\n", "text/csv").run()
    assert any(e.value.startswith("`bad.csv`:") for e in at.error)  # the loader's own message, the name as code
    at.file_uploader(key="w.csv_upload").clear().upload("points.csv", POINTS_CSV.encode(), "text/csv").run()
    assert not at.error
    path = at.session_state["settings"].dataset_args["path"]
    assert open(path).read() == POINTS_CSV
    assert "ds_path" not in at.query_params  # a link never carries a server path
    at.button(key="step").click().run()
    wait_until(at, lambda: step_of(at) == 1)


def test_the_app_imports_without_torch():
    """The server only draws; torch (about a second of every start-up) is for the training and
    analysis processes. Which module pulled it in, if one does, is in the failure."""
    code = ("import builtins, sys, traceback\n"
            "real = builtins.__import__\n"
            "def spy(name, *a, **k):\n"
            "    if name.partition('.')[0] == 'torch' and 'torch' not in sys.modules:\n"
            "        print(''.join(traceback.format_stack(limit=6)))\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = spy\n"
            "import dashboard.app\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("False"), out.stdout


LINK = "[Your session expired](https://evil.example/login)"


def outside_code(markdown: str) -> str:
    """The parts of a Markdown text that are not inside `code spans`."""
    return re.sub(r"`[^`]*`", "", markdown)


def test_a_link_cannot_put_markup_in_the_pages_messages(app_test):
    """A value from the link is quoted as code, so no link of the sender's renders in our warning box."""
    at = app_test({"preset": LINK, "lesson": "![x](https://evil.example/i.png)", "evil](https://x)": "1"})
    [warning] = at.warning
    assert f"`{LINK}`" in warning.value and "`![x](https://evil.example/i.png)`" in warning.value
    assert "](" not in outside_code(warning.value)


def test_an_uploaded_files_text_is_shown_as_text(app_test):
    """A cell of the CSV, quoted in the loader's message, and the file's name are escaped or code."""
    at = app_test(url_state.encode(UrlState(TINY.with_changes(dataset="csv", dataset_args={}))))
    bad = "x1,x2,label\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(12)) + f"{LINK},1,0\n"
    at.file_uploader(key="w.csv_upload").upload("[a](https://evil.example).csv", bad.encode(), "text/csv").run()
    [error] = [e.value for e in at.error if "non-numeric" in shown(e.value)]
    assert error.startswith("`[a](https://evil.example).csv`:")
    assert "](" not in outside_code(error) and "\\[Your session expired\\]\\(https" in error


REPLAYS = {what: get for where, what, get in bad_inputs.CASES
           if where == "replay" and hasattr(get, "make")}
ON_THE_PAGE = [w for w in REPLAYS if any(k in w for k in (
    "text in a number column of `metrics.csv`", "without a name", "nested", "uneven", "text in a number column of `paths",
    "/dev/zero", "named pipe"))]


@pytest.mark.parametrize("what", ON_THE_PAGE)
def test_a_broken_run_folder_is_refused_on_the_page_in_one_line(app_test, tmp_path, monkeypatch, what):
    """The issue's crafted folders, replayed from the Records tab: an error naming the file, no
    traceback, no server path, and the live run is still there."""
    runs = tmp_path / "runs"
    runs.mkdir()
    name = REPLAYS[what].make(runs)
    monkeypatch.setenv("RESIDUAL_LAB_RUNS", str(runs))
    at = app_test()
    at.session_state["tab"] = "Records"
    at.run()
    at.selectbox(key="replay_pick").set_value(name).run()
    at.button(key="replay_go").click().run()
    assert not at.exception
    [error] = [shown(e.value) for e in at.error]
    assert error == REPLAYS[what]().replace("<tmp>", str(tmp_path)) and str(tmp_path) not in error
    assert step_of(at) == 0 and "replay" not in at.session_state


def test_a_replayed_config_never_makes_the_server_read_a_file(tmp_path):
    """A run folder whose config.json names /etc/passwd as its CSV (or a CIFAR-10 folder): the
    settings the page shows the replay with keep neither path."""
    from resnet_core.records import RunRecord

    for dataset, key, path in (("csv", "path", "/etc/passwd"), ("cifar10", "root", "/dev")):
        record = RunRecord({"settings": {**TINY.to_dict(), "dataset": dataset, "dataset_args": {key: path}}})
        settings, note = replay.settings_of(record)
        assert key not in settings.dataset_args and note is None


def test_an_uploaded_csv_is_parsed_once_not_on_every_rerun(app_test, monkeypatch):
    """Issue 20, item 14: every rerun parsed the upload again (0.33-0.42 s of the server's CPU a
    click for a 9 MB file). Now once per content, across sessions too."""
    import dashboard.runtime.uploads as uploads
    import dashboard.sidebar.controls as controls
    from resnet_core.data import points_csv_arrays

    parsed = []
    for module in (uploads, controls):  # wherever the page parses it
        monkeypatch.setattr(module, "points_csv_arrays", lambda data: (parsed.append(len(data)), points_csv_arrays(data))[1], raising=False)
    unique = POINTS_CSV + "\n0,0,a\n" * 3  # a content no other test uploaded
    at = app_test(url_state.encode(UrlState(TINY.with_changes(dataset="csv", dataset_args={}))))
    at.file_uploader(key="w.csv_upload").upload("points.csv", unique.encode(), "text/csv").run()
    assert not at.error
    for _ in range(3):
        at.run()  # clicks elsewhere on the page: each a rerun with the file still in the uploader
    other = app_test(url_state.encode(UrlState(TINY.with_changes(dataset="csv", dataset_args={}))))
    other.file_uploader(key="w.csv_upload").upload("mine.csv", unique.encode(), "text/csv").run()
    assert not other.error and len(parsed) == 1
