"""The sidebar: every control that edits the one ``Settings`` object.

The canonical settings live in ``st.session_state["settings"]``; the widgets are a view of it.
Widgets are seeded from it (never given a ``value=`` as well, so Streamlit never sees two
sources), and the settings are rebuilt from the widgets after every interaction. Widgets that a
run does not draw (the presenter view hides most) lose their state in Streamlit; they are
re-seeded from the canonical settings when they come back.

Labels, help, options and ranges come from the fields' own facts (``SETTING_META``) and each
data set's ``defaults/ranges/help``, so a new option or data-set argument needs little or no code here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from resnet_core.data import DATASETS, DataError
from resnet_core.lessons import LESSONS
from resnet_core.presets import get_preset, presets
from resnet_core.settings import CHOICES, SETTING_META, Settings, SettingsError
from resnet_core.sizing.budget import check_settings

from dashboard.runtime.uploads import store_points_csv
from dashboard.text import code, literal
from dashboard.sidebar.model_picker import model_rows, option_keys, render_models, seed_models
from dashboard.sidebar.url_state import UrlState, decode

W = "w."  # widget keys: "w.width", "w.ds.spirals.arms", "w.m3.depth", ...
CUSTOM = ""

WIDTHS = (2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
LRS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
DECAYS = (0.0, 1e-5, 1e-4, 5e-4, 1e-3, 1e-2)
BATCHES = (16, 32, 64, 128, 256, 512, 1024)
# Plain widgets whose state is the setting's value as is.
SIMPLE = tuple(n for n, m in SETTING_META.items() if m.widget and (m.choices or m.range))


@dataclass
class SidebarResult:
    settings: Settings | None                 # None while the controls hold something invalid
    error: str | None = None
    pressed: set[str] = field(default_factory=set)


# ------------------------------------------------------------------------------ session start
def start_session(query: Any) -> list[str]:
    """On a session's first run the link fills every control; returns what had to be adjusted."""
    if "settings" in st.session_state:
        return []
    state, notes = decode(dict(query), LESSONS)
    adopt(state.settings, state.preset, state.lesson)
    st.session_state["presenter"] = state.presenter
    st.session_state[W + "presenter"] = state.presenter
    return notes


def adopt(settings: Settings, preset: str | None = None, lesson: str | None = None) -> None:
    """Make ``settings`` the canonical ones and show them in every widget."""
    ss = st.session_state
    ss["settings"] = settings
    ss["preset"], ss["lesson"] = preset, lesson
    ss[W + "preset"] = preset or CUSTOM
    ss[W + "lesson"] = lesson or CUSTOM
    for key in SIMPLE:
        ss[W + key] = getattr(settings, key)
    ss[W + "norm"] = settings.norm == "batch"
    ss[W + "dataset"] = settings.dataset
    spec = DATASETS.get(settings.dataset)
    if spec is not None:
        for arg, default in spec.defaults.items():
            ss[f"{W}ds.{settings.dataset}.{arg}"] = settings.dataset_args.get(arg, default)
    seed_models(settings)


def _keep_widget_state(settings: Settings) -> None:
    """Every widget keeps its value through runs that do not draw it (a closed popover or expander,
    presenter view): Streamlit drops the state of a widget a run did not draw, and a value set
    earlier under its key comes back in its place. So each run sets the kept widgets' values again,
    as they are, before any is drawn; a widget never seen gets the canonical value."""
    ss = st.session_state
    for key in SIMPLE:
        ss.setdefault(W + key, getattr(settings, key))
    ss.setdefault(W + "norm", settings.norm == "batch")
    ss.setdefault(W + "dataset", settings.dataset)
    name = ss[W + "dataset"]
    data_keys = []
    for arg, default in DATASETS[name].defaults.items():
        value = settings.dataset_args.get(arg, default) if name == settings.dataset else default
        data_keys.append(f"{W}ds.{name}.{arg}")
        ss.setdefault(data_keys[-1], value)
    ss.setdefault(W + "preset", ss.get("preset") or CUSTOM)
    ss.setdefault(W + "lesson", ss.get("lesson") or CUSTOM)
    ss.setdefault(W + "presenter", bool(ss.get("presenter")))
    if not model_rows():
        seed_models(settings)
    for key in (*(W + k for k in SIMPLE), W + "norm", *data_keys, *option_keys()):
        if key in ss:
            ss[key] = ss[key]


# --------------------------------------------------------------------------------- callbacks
def _apply_preset() -> None:
    name = st.session_state[W + "preset"]
    if name == CUSTOM:
        st.session_state["preset"] = None
        return
    adopt(get_preset(name).settings(), preset=name, lesson=None)  # a lesson is its own settings


def _apply_lesson() -> None:
    name = st.session_state[W + "lesson"]
    if name == CUSTOM or name not in LESSONS:
        st.session_state["lesson"] = None
        return
    lesson = LESSONS[name]
    try:
        settings = lesson.settings()
    except SettingsError as exc:
        st.session_state["control_error"] = f"lesson {code(name)}: {literal(exc)}"
        return
    # Show the preset the lesson is made of, when it is one.
    preset = next((p for p, preset in presets().items() if preset.settings() == settings), None)
    adopt(settings, preset=preset, lesson=name)


def _presenter_changed() -> None:
    st.session_state["presenter"] = bool(st.session_state[W + "presenter"])


# ----------------------------------------------------------------------------------- widgets
def render_sidebar() -> SidebarResult:
    ss = st.session_state
    canonical: Settings = ss["settings"]
    _keep_widget_state(canonical)
    presenter = bool(ss.get("presenter"))
    pressed: set[str] = set()
    with st.sidebar:
        st.toggle("Presenter view", key=W + "presenter", on_change=_presenter_changed,
                  help="Large type and only the controls a lesson needs; also kept in the link.")
        if LESSONS:
            st.selectbox("Lesson", [CUSTOM, *LESSONS], key=W + "lesson", on_change=_apply_lesson,
                         format_func=lambda n: "— none —" if n == CUSTOM else LESSONS[n].title)
        st.selectbox("Preset", [CUSTOM, *presets()], key=W + "preset", on_change=_apply_preset,
                     format_func=lambda n: "— custom —" if n == CUSTOM else presets()[n].title,
                     help="A preset fills in every setting below.")
        if ss.get("preset") and not presenter:
            modified = canonical != get_preset(ss["preset"]).settings()
            st.caption(presets()[ss["preset"]].description + (" *Changed below since.*" if modified else ""))
        pressed = _buttons()
        st.subheader("Models")
        models = render_models(_shape_from_widgets())
        if not presenter:
            dataset, dataset_args, data_error = _data_section()
            _network_section()
            _optimisation_section()
        else:
            dataset, dataset_args, data_error = canonical.dataset, dict(canonical.dataset_args), None
    settings, error = _settings_from_widgets(models, dataset, dataset_args)
    error = error or data_error or ss.pop("control_error", None)
    if settings is not None and not error:
        ss["settings"] = settings
    return SidebarResult(settings if not error else None, error, pressed)


BUTTONS = (("Train", ":material/play_arrow:", "Train every model, in lockstep, on the same batches"),
           ("Pause", ":material/pause:", "Stop after the current step; Train goes on from there"),
           ("Step", ":material/skip_next:", "One training step of every model"),
           ("Reset", ":material/restart_alt:", "Back to step 0 with freshly initialised models"))


def _buttons() -> set[str]:
    pressed = set()
    for row in (BUTTONS[:2], BUTTONS[2:]):
        for col, (label, icon, help_text) in zip(st.columns(2, gap="small"), row):
            with col:
                if st.button(label, key=label.lower(), icon=icon, width="stretch", help=help_text,
                             type="primary" if label == "Train" else "secondary"):
                    pressed.add(label.lower())
    return pressed


def _shape_from_widgets() -> Settings:
    """Architecture settings as the widgets hold them now (they are drawn below the models, but
    their state is already current), so depth sliders offer only valid depths."""
    ss = st.session_state
    return Settings(arch=ss[W + "arch"], branch_layers=int(ss[W + "branch_layers"]), stages=int(ss[W + "stages"]))


def _data_section() -> tuple[str, dict[str, Any], str | None]:
    ss = st.session_state
    st.subheader("Data")
    name = st.selectbox("Data set", list(DATASETS), key=W + "dataset",
                        help="\n\n".join(f"**{n}**: {s.description}" for n, s in DATASETS.items()))
    spec = DATASETS[name]
    st.caption(spec.description)
    args: dict[str, Any] = {}
    error = None
    if name == "csv":
        args, error = _csv_upload()
    options = st.expander("Data options", key="data_options", on_change="rerun")  # drawn only while open
    for arg, default in spec.defaults.items():
        if isinstance(default, str):
            continue  # paths: the CSV comes from the uploader, CIFAR-10 from data/
        key = f"{W}ds.{name}.{arg}"
        value = ss[key]  # set by _keep_widget_state, before any widget is drawn
        if options.open:
            with options:
                value = _number_widget(arg, key, default, spec.ranges.get(arg), spec.help.get(arg))
        if value != default:
            args[arg] = value
    return name, args, error


def _number_widget(label: str, key: str, default: Any, rule, help_text: str | None) -> Any:
    whole = isinstance(default, int)
    if rule is None:
        return st.number_input(label, key=key, help=help_text, step=1 if whole else 0.01)
    lo, hi = rule.lo, rule.hi
    if whole:
        lo, hi = int(lo) + (1 if rule.lo_open else 0), int(hi)
        if hi - lo <= 20:
            return st.slider(label, lo, hi, key=key, help=help_text)
        return st.number_input(label, lo, hi, key=key, help=help_text, step=1)
    step = 0.01 if hi - lo <= 10 else 0.1
    lo = lo + step if rule.lo_open else lo
    return st.slider(label, float(lo), float(hi), key=key, help=help_text, step=step)


def _csv_upload() -> tuple[dict[str, Any], str | None]:
    """The uploaded CSV, checked here and written to a file the worker process can read."""
    upload = st.file_uploader("Your points (CSV: x1, x2, label)", type=["csv"], key=W + "csv_upload")
    current = st.session_state["settings"].dataset_args.get("path")
    if upload is None:
        if current and Path(current).exists():
            return {"path": current}, None
        return {}, "upload a CSV file with columns x1, x2, label to train on your own points"
    try:
        path = store_points_csv(upload.getvalue())  # parsed once per content, not on every rerun
    except DataError as exc:
        return {}, f"{code(upload.name)}: {literal(exc)}"
    return {"path": str(path)}, None


def _choice(widget, name: str, **kwargs) -> None:
    meta = SETTING_META[name]
    widget(meta.label, CHOICES[name], key=W + name, format_func=meta.choices.get, help=meta.help, **kwargs)


def _slider(name: str, kind: type = int, **kwargs) -> None:
    meta = SETTING_META[name]
    lo, hi = meta.range
    st.slider(meta.label, kind(lo), kind(hi), key=W + name, help=meta.help, **kwargs)


def _number(name: str, step: int) -> None:
    meta = SETTING_META[name]
    lo, hi = meta.range
    st.number_input(meta.label, int(lo), int(hi), key=W + name, step=step, help=meta.help)


def _network_section() -> None:
    ss = st.session_state
    st.subheader("Network")
    _choice(st.segmented_control, "arch", required=True)
    _choice_slider("width", WIDTHS)
    _choice(st.segmented_control, "block", required=True)
    _choice(st.selectbox, "shortcut")
    st.toggle(SETTING_META["norm"].label, key=W + "norm", help=SETTING_META["norm"].help)
    _choice(st.selectbox, "init")
    _choice(st.selectbox, "branch_scale")
    _slider("branch_layers")
    if ss[W + "arch"] == "mlp":
        _slider("stages")


def _optimisation_section() -> None:
    ss = st.session_state
    st.subheader("Optimisation")
    _choice(st.segmented_control, "optimizer", required=True)
    _choice_slider("lr", LRS, fmt=lambda v: f"{v:g}")
    if ss[W + "optimizer"] == "sgd":
        _slider("momentum", float, step=0.01)
    _choice_slider("weight_decay", DECAYS, fmt=lambda v: f"{v:g}")
    _choice_slider("batch_size", BATCHES)
    _number("steps", step=50)
    _number("seed", step=1)
    measurement = st.expander("Measurement", key="measurement", on_change="rerun")
    if measurement.open:  # drawn only while open (their values kept by _keep_widget_state)
        with measurement:
            for name in ("eval_every", "probe_every", "paths_every"):
                _number(name, step=1)
            _choice(st.selectbox, "device")


def _choice_slider(name: str, options: tuple, fmt=None) -> Any:
    """A select_slider over nice values that still shows an odd value a link brought in."""
    meta, key = SETTING_META[name], W + name
    current = st.session_state[key]
    values = sorted(set(options) | {current})
    return st.select_slider(meta.label, values, key=key, format_func=fmt or str, help=meta.help)


def _settings_from_widgets(models: list[str], dataset: str, dataset_args: dict[str, Any]) -> tuple[Settings | None, str | None]:
    ss = st.session_state
    values = {key: ss[W + key] for key in SIMPLE}
    values["norm"] = "batch" if ss[W + "norm"] else "none"
    try:
        settings = Settings.from_dict({**values, "models": models, "dataset": dataset, "dataset_args": dataset_args})
        check_settings(settings)  # the weight cap and the memory budget, before a worker is asked
    except SettingsError as exc:
        return None, literal(str(exc))
    return settings, None


def view_state() -> UrlState:
    ss = st.session_state
    return UrlState(ss["settings"], ss.get("preset"), ss.get("lesson"), bool(ss.get("presenter")))


