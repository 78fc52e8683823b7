"""The sidebar's controls through Streamlit's AppTest: presets and lessons fill them, the link
round-trips them, bad values are refused in one line, and what is not drawn keeps its value."""
from __future__ import annotations

import re
import time

import pytest
from app_pages import TINY, TINY_QUERY, depth_sliders, step_of

import dashboard.sidebar.url_state as url_state
import resnet_core.lessons as lessons
from dashboard.sidebar.url_state import UrlState
from resnet_core.presets import get_preset, presets


@pytest.mark.parametrize("name", sorted(presets()))
def test_presets_fill_the_controls(app_test, name):
    at = app_test()
    at.selectbox(key="w.preset").set_value(name).run()
    expected = get_preset(name).settings()
    assert at.session_state["settings"] == expected
    specs = expected.model_specs
    assert [s.value for s in depth_sliders(at)] == [s.depth for s in specs]
    families = [c.value for c in at.segmented_control if re.fullmatch(r"w\.m\d+\.family", c.key or "")]
    assert families == [s.family for s in specs]
    assert at.segmented_control(key="w.arch").value == expected.arch
    assert at.select_slider(key="w.width").value == expected.width
    assert at.toggle(key="w.norm").value == (expected.norm == "batch")
    assert at.selectbox(key="w.init").value == expected.init
    assert at.segmented_control(key="w.block").value == expected.block
    assert at.number_input(key="w.steps").value == expected.steps
    assert [m.label for m in at.metric] == list(expected.models)
    assert at.query_params["preset"] == name and at.query_params["models"] == ",".join(expected.models)


def test_query_params_round_trip(app_test):
    settings = get_preset("no-bn").settings().with_changes(
        width=48, lr=0.02, seed=7, models=("plain-10", "resnet-10-pre"), dataset_args={"arms": 4}, optimizer="adam")
    query = url_state.encode(UrlState(settings, "no-bn", None, False))
    at = app_test(query)
    assert not at.warning and not at.error
    assert at.session_state["settings"] == settings
    assert {k: at.query_params[k] for k in query} == query  # the page writes the same link back
    assert set(at.query_params.keys()) == set(query)


def test_bad_query_values_are_clamped_or_replaced_with_a_message(app_test):
    at = app_test({"models": "plain-7,resnet-56", "lr": "-1", "width": "100000", "block": "banana",
                   "steps": "lots", "ds_path": "/etc/passwd"})
    s = at.session_state["settings"]
    assert (s.models, s.lr, s.width, s.block, s.steps) == (("plain-8", "resnet-56"), 1e-6, 512, "post", 400)
    assert "path" not in s.dataset_args
    [warning] = at.warning
    for fragment in ("plain-7", "lr `-1`", "width `100000`", "block `banana`", "steps `lots`", "path"):
        assert fragment in warning.value
    assert at.query_params["width"] == "512" and at.query_params["block"] == "post"


def test_invalid_controls_show_an_error_and_do_not_train(app_test):
    at = app_test(TINY_QUERY)
    first, second = depth_sliders(at)
    at.segmented_control(key=second.key.replace(".depth", ".family")).set_value("plain").run()
    depth_sliders(at)[1].set_value(4).run()
    assert any("each name may appear once" in e.value for e in at.error)
    at.button(key="train").click().run()
    time.sleep(0.5)
    at.run()
    assert step_of(at) == 0


def test_presenter_view_hides_most_controls_and_keeps_the_settings(app_test):
    at = app_test({**TINY_QUERY, "presenter": "1"})
    assert at.toggle(key="w.presenter").value is True
    keys = {w.key for w in at.select_slider} | {w.key for w in at.selectbox}
    assert "w.width" not in keys and "w.dataset" not in keys
    assert len(depth_sliders(at)) == 2
    assert at.session_state["settings"] == TINY
    at.toggle(key="w.presenter").set_value(False).run()
    assert at.select_slider(key="w.width").value == TINY.width
    assert "presenter" not in at.query_params


def test_closed_popovers_and_expanders_draw_nothing_and_keep_what_was_set_in_them(app_test):
    at = app_test({"preset": "preact-deep"})
    rows = at.session_state["model_rows"]
    option_widgets = [c.key for c in at.segmented_control if re.fullmatch(r"w\.m\d+\.(block|layers|norm|init)", c.key)]
    assert option_widgets == [] and "w.eval_every" not in {w.key for w in at.number_input}  # closed: not drawn
    at.session_state[f"options{rows[1]}"] = True  # the browser opens the second model's popover
    at.run()
    at.segmented_control(key=f"w.m{rows[1]}.norm").set_value("none").run()
    at.session_state[f"options{rows[1]}"] = False
    at.session_state["measurement"] = True
    at.run()
    at.number_input(key="w.eval_every").set_value(7).run()
    at.session_state["measurement"] = False
    at.run()
    at.run()  # a run that did not draw them: Streamlit has dropped their widgets' state
    assert at.session_state["settings"] == get_preset("preact-deep").settings().with_changes(
        models=("resnet-302-post", "resnet-302-pre-nobn"), eval_every=7)
    assert at.query_params["models"] == "resnet-302-post,resnet-302-pre-nobn"


def test_a_lesson_applies_its_settings(app_test, monkeypatch):
    lesson = lessons.Lesson("why-deeper", "Why deeper is worse", "", "", {**get_preset("degradation").overrides, "width": 16},
                            lessons.checks.degradation)
    monkeypatch.setitem(lessons.LESSONS, "why-deeper", lesson)
    at = app_test()
    at.selectbox(key="w.lesson").set_value("why-deeper").run()
    assert at.session_state["settings"] == get_preset("degradation").settings(width=16)
    assert at.query_params["lesson"] == "why-deeper"


@pytest.mark.skipif(not lessons.LESSONS, reason="no lessons defined")
def test_every_lesson_fills_the_controls_and_round_trips_through_the_link(app_test):
    at = app_test()
    for name, lesson in lessons.LESSONS.items():
        at.selectbox(key="w.lesson").set_value(name).run()
        assert not at.exception, name
        assert at.session_state["settings"] == lesson.settings()
        assert at.query_params["lesson"] == name
    link = {k: at.query_params[k] for k in at.query_params.keys()}
    again = app_test(link)
    assert again.session_state["settings"] == at.session_state["settings"] and not again.warning


@pytest.mark.parametrize(("arch", "layers", "stages"), [("mlp", 2, 1), ("mlp", 3, 2), ("cnn", 2, 1)])
def test_a_depth_slider_offers_every_valid_depth_a_class_tries_then_landmarks(app_test, arch, layers, stages):
    from resnet_core.settings import Settings

    at = app_test()
    at.segmented_control(key="w.arch").set_value(arch).run()
    at.slider(key="w.branch_layers").set_value(layers).run()
    if arch == "mlp":
        at.slider(key="w.stages").set_value(stages).run()
    valid = Settings(arch=arch, branch_layers=layers, stages=stages).valid_depths()
    for slider in depth_sliders(at):
        offered = list(slider.options)
        assert [int(d) for d in offered] == sorted(int(d) for d in offered)
        assert set(int(d) for d in offered) <= set(valid)  # only depths the shape can have
        assert [d for d in valid if d <= 130] == [int(d) for d in offered if int(d) <= 130]  # dense where a class tries
        assert len(offered) - len([d for d in valid if d <= 130]) <= 7  # beyond, a few landmarks
        assert int(slider.value) in [int(d) for d in offered]
