"""The model list in the sidebar: one row per model (family, depth slider, and in a small popover
the model's own block layout, layers per branch, normalisation and initialisation), with buttons to add and
remove rows. Depth sliders offer only depths valid for that model, dense where a class
experiments (up to ~130 layers) and a few landmarks beyond (164, 302, 1002, ...)."""
from __future__ import annotations

import functools
from dataclasses import replace

import streamlit as st

from resnet_core.settings import MAX_MODELS, ModelSpec, Settings

from dashboard.sidebar.url_state import nearest_depth

W = "w."
ROWS = "model_rows"
DENSE_UP_TO = 130
LANDMARKS = (164, 200, 302, 500, 1002, 1202, 2002)
FAMILY_LABELS = {"plain": "plain", "resnet": "residual"}
LAYOUT_LABELS = {"": "as the Block setting", "post": "original (post-activation)", "pre": "pre-activation"}
LAYERS_LABELS = {0: "as set below", 1: "1 (nearly linear)", 2: "2 (the paper's)", 3: "3"}
NORM_LABELS = {"": "as set below", "batch": "BatchNorm", "none": "no normalisation"}
INIT_LABELS = {"": "as set below", "he": "He", "zero": "zero branches", "skipinit": "SkipInit (α = 0)",
               "fixup": "Fixup (no BatchNorm)"}
FIELDS = ("family", "depth", "block", "layers", "norm", "init")


def model_rows() -> list[int]:
    return list(st.session_state.get(ROWS, []))


def _key(row: int, field: str) -> str:
    return f"{W}m{row}.{field}"


def _write_row(row: int, spec: ModelSpec) -> None:
    ss = st.session_state
    for field, value in zip(FIELDS, (spec.family, spec.depth, spec.block or "", spec.branch_layers or 0, spec.norm or "",
                                  spec.init or "")):
        ss[_key(row, field)] = value


def option_keys() -> list[str]:
    """The widget keys of every row's own options (drawn only while the row's popover is open)."""
    return [_key(row, field) for row in model_rows() for field in FIELDS[2:]]


def _spec_of(row: int) -> ModelSpec | None:
    ss = st.session_state
    if _key(row, "family") not in ss or _key(row, "depth") not in ss:
        return None
    return ModelSpec(ss[_key(row, "family")], int(ss[_key(row, "depth")]), ss.get(_key(row, "block")) or None,
                     ss.get(_key(row, "layers")) or None, ss.get(_key(row, "norm")) or None,
                     ss.get(_key(row, "init")) or None)


def seed_models(settings: Settings) -> None:
    """One row per model of ``settings`` (fresh row ids, so no stale widget state survives)."""
    ss = st.session_state
    start = ss.get("next_row", 0)
    rows = []
    for i, spec in enumerate(settings.model_specs):
        _write_row(start + i, spec)
        rows.append(start + i)
    ss[ROWS] = rows
    ss["next_row"] = start + len(rows)


def depth_options(model_shape: Settings, current: int) -> list[int]:
    """Depths valid for one model (its own layers per branch), thinned past ~130 layers."""
    valid = model_shape.valid_depths()
    dense = [d for d in valid if d <= DENSE_UP_TO]
    landmarks = {nearest_depth(model_shape, d) for d in LANDMARKS}
    return sorted(set(dense) | landmarks | {current})


def current_names() -> list[str]:
    return [spec.name for spec in (_spec_of(r) for r in model_rows()) if spec is not None]


def _shape() -> Settings:
    ss = st.session_state
    return Settings(arch=ss[W + "arch"], branch_layers=int(ss[W + "branch_layers"]), stages=int(ss[W + "stages"]))


def _add_model() -> None:
    rows = model_rows()
    if len(rows) >= MAX_MODELS:
        return
    shape = _shape()
    taken = set(current_names())
    options = depth_options(shape, shape.valid_depths()[0])
    deepest = max((s.depth for s in map(_spec_of, rows) if s), default=options[min(len(options) - 1, 5)])
    depth = next((d for d in options if d >= deepest and f"resnet-{d}" not in taken), options[-1])
    row = st.session_state.get("next_row", 0)
    _write_row(row, ModelSpec("resnet", depth))
    st.session_state[ROWS] = rows + [row]
    st.session_state["next_row"] = row + 1


def _remove_model(row: int) -> None:
    rows = model_rows()
    if len(rows) > 1 and row in rows:
        rows.remove(row)
        st.session_state[ROWS] = rows


def render_models(shape: Settings) -> list[str]:
    """Draw every model row; returns the model names they describe."""
    ss = st.session_state
    rows = model_rows()
    presenter = bool(ss.get("presenter"))
    for row in rows:
        spec = _spec_of(row)
        model_shape = shape.for_model(spec)
        fixed = nearest_depth(model_shape, spec.depth)  # the architecture may have changed
        if fixed != spec.depth:
            spec = replace(spec, depth=fixed)
            ss[_key(row, "depth")] = fixed
        with st.container(border=True):
            cols = st.columns([5, 1, 1], vertical_alignment="center", gap="small") if not presenter else [st.container()]
            with cols[0]:
                st.segmented_control(f"Family of {spec.name}", ("plain", "resnet"), key=_key(row, "family"),
                                     required=True, label_visibility="collapsed", format_func=FAMILY_LABELS.get)
            if not presenter:
                with cols[1]:
                    options = st.popover("", icon=":material/tune:", help=f"options of {spec.name} alone",
                                         key=f"options{row}", on_change="rerun")
                if options.open:  # drawn only while open: four widgets a model, at every run of every page
                    choice = functools.partial(options.segmented_control, required=True)  # a radio reads all of session state: 3x the CPU
                    choice("Block layout", tuple(LAYOUT_LABELS), key=_key(row, "block"), format_func=LAYOUT_LABELS.get,
                           help="He et al. (2016) compare the original and the pre-activation layout")
                    choice("Weight layers per branch", tuple(LAYERS_LABELS), key=_key(row, "layers"),
                           format_func=LAYERS_LABELS.get, help="He et al. (2015, Sec. 3.1): one layer brings no advantage")
                    choice("Normalisation", tuple(NORM_LABELS), key=_key(row, "norm"), format_func=NORM_LABELS.get)
                    choice("Initialisation", tuple(INIT_LABELS), key=_key(row, "init"), format_func=INIT_LABELS.get,
                           help="De & Smith (2020): SkipInit; Zhang et al. (2019): Fixup trains without normalisation")
                with cols[2]:
                    st.button("", key=f"remove{row}", icon=":material/close:", help="remove this model",
                              on_click=_remove_model, args=(row,), disabled=len(rows) <= 1, type="tertiary")
            st.select_slider(f"Depth of {spec.name}", depth_options(model_shape, spec.depth), key=_key(row, "depth"),
                             help="weighted layers, stem and head included (He et al.): "
                                  + (f"{3 * model_shape.branch_layers}n+2 for the CNN" if shape.arch == "cnn"
                                     else f"{model_shape.branch_layers}n+2 for the MLP"))
    if not presenter:
        st.button("Add a model", key="add_model", icon=":material/add:", on_click=_add_model,
                  disabled=len(rows) >= MAX_MODELS, width="stretch")
    return current_names()
