"""The whole setting in the page's URL, so that a link restores a lesson exactly.

    encode(view)              -> {"preset": "degradation", "models": "plain-20,plain-56,resnet-56", ...}
    decode(query)             -> (UrlState, ["width 100000 is above 512: using 512", ...])

A URL is user input: every value is checked against ``CHOICES``, ``RANGES`` and the data set's
own ranges. Numbers out of range are clamped, anything else invalid is replaced by the preset's
(or the default) value, and each change is reported in one line. File paths are never taken from
a link (a link must not make the server read a file of the sender's choosing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from resnet_core.data import DATASETS, DataError, parse_dataset_args
from resnet_core.presets import presets
from resnet_core.settings import CHOICES, DEFAULTS, MAX_MODELS, RANGES, Settings, SettingsError, parse_model_name

from dashboard.text import code, literal

DATA_PREFIX = "ds_"
VIEW_KEYS = ("preset", "lesson", "presenter")
SETTING_KEYS = tuple(f.name for f in fields(Settings) if f.name != "dataset_args")
IGNORED_KEYS = ("embed", "embed_options")  # Streamlit's own
DEFAULT_PRESET = "degradation"  # a bare link opens the first lesson of every class
# Lengths a link's parameters may have, checked before any parsing: six long model names, a preset.
MAX_PARAMS = 64
MAX_KEY_CHARS = 40
MAX_VALUE_CHARS = {"models": MAX_MODELS * 24, "": 64}


@dataclass(frozen=True)
class UrlState:
    settings: Settings
    preset: str | None = None
    lesson: str | None = None
    presenter: bool = False


# ------------------------------------------------------------------------------------------ out
def encode(state: UrlState) -> dict[str, str]:
    """Every setting, as text; paths (a CSV upload, a CIFAR folder) stay out of the link."""
    s = state.settings
    out: dict[str, str] = {}
    if state.preset:
        out["preset"] = state.preset
    if state.lesson:
        out["lesson"] = state.lesson
    if state.presenter:
        out["presenter"] = "1"
    for key in SETTING_KEYS:
        value = getattr(s, key)
        out[key] = ",".join(value) if key == "models" else _text(value)
    spec = DATASETS.get(s.dataset)
    for key, value in dict(s.dataset_args).items():
        if spec is not None and isinstance(spec.defaults.get(key), str):
            continue
        out[DATA_PREFIX + key] = _text(value)
    return out


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else f"{value:.1f}"
    return str(value)


# ------------------------------------------------------------------------------------------- in
def decode(query: Mapping[str, Any], lessons: Mapping[str, Any] | None = None) -> tuple[UrlState, list[str]]:
    """The view a link describes, and one line for every value that had to be adjusted."""
    notes: list[str] = []
    params = _capped(query, notes)
    if not params and DEFAULT_PRESET in presets():
        params = {"preset": DEFAULT_PRESET}

    preset = params.pop("preset", None)
    if preset is not None and preset not in presets():
        notes.append(f"preset {code(preset)} is unknown: using the defaults")
        preset = None
    lesson = params.pop("lesson", None)
    if lesson is not None and lesson not in (lessons or {}):
        notes.append(f"lesson {code(lesson)} is unknown: ignored")
        lesson = None
    presenter = params.pop("presenter", "0").strip().lower() in ("1", "true", "yes", "on")

    if lesson:  # a lesson is its own settings; the link's other values go on top
        base = lessons[lesson].settings()
    else:
        base = presets()[preset].settings() if preset else Settings()
    values = base.to_dict()
    for key in list(params):
        if key in SETTING_KEYS and key not in ("models", "dataset"):
            values[key] = _setting(key, params.pop(key), values[key], notes)

    dataset = params.pop("dataset", values["dataset"])
    if dataset not in DATASETS:
        notes.append(f"dataset {code(dataset)} is unknown: using {base.dataset}")
        dataset = base.dataset
    if dataset != base.dataset:
        values["dataset_args"] = {}
    values["dataset"] = dataset
    data_keys = [k for k in params if k.startswith(DATA_PREFIX)]
    values["dataset_args"] = _dataset_args(dataset, {k[len(DATA_PREFIX):]: params.pop(k) for k in data_keys},
                                           values["dataset_args"], notes)

    shape = Settings(arch=values["arch"], branch_layers=values["branch_layers"], stages=values["stages"])
    models = _models(params.pop("models", None), shape, base, notes)
    unknown = sorted(params)
    if len(unknown) <= 3:
        notes += [f"ignored unknown link parameter {code(key)}" for key in unknown]
    else:
        notes.append(f"ignored {len(unknown)} unknown link parameters: {', '.join(code(k) for k in unknown[:3])} "
                     f"and {len(unknown) - 3} more")
    try:
        settings = Settings.from_dict({**values, "models": list(models)})
    except SettingsError as exc:  # cannot happen after the checks above, but a link must never crash
        notes.append(f"{literal(exc)}: using the defaults")
        settings = base
    return UrlState(settings, preset, lesson, presenter), notes


def _capped(query: Mapping[str, Any], notes: list[str]) -> dict[str, str]:
    """The link's parameters as text, each checked for length before anything parses it: a value
    longer than any setting needs (half a megabyte of model names cost seconds of server time) is
    dropped, and so is anything past the first ``MAX_PARAMS`` parameters."""
    params: dict[str, str] = {}
    for i, (key, value) in enumerate(query.items()):
        if i == MAX_PARAMS:
            notes.append(f"the link has {len(query):,} parameters, more than {MAX_PARAMS}: read the first {MAX_PARAMS}")
            break
        value = value[-1] if isinstance(value, (list, tuple)) and value else value
        key, value = str(key), str(value)
        if key in IGNORED_KEYS:
            continue
        limit = MAX_VALUE_CHARS.get(key, MAX_VALUE_CHARS[""])
        if len(key) > MAX_KEY_CHARS or len(value) > limit:
            long = len(key) if len(key) > MAX_KEY_CHARS else len(value)
            notes.append(f"link parameter {code(key, 40)} is {long:,} characters long, more than "
                         f"{MAX_KEY_CHARS if len(key) > MAX_KEY_CHARS else limit}: ignored")
            continue
        params[key] = value
    return params


def _setting(key: str, raw: str, default: Any, notes: list[str]) -> Any:
    if key in CHOICES:
        value = raw.strip().lower()
        if value not in CHOICES[key]:
            notes.append(f"{key} {code(raw)} is not one of {', '.join(CHOICES[key])}: using {default}")
            return default
        return value
    if key not in RANGES:
        return default
    lo, hi = RANGES[key]
    whole = isinstance(getattr(DEFAULTS, key), int)
    try:
        number = float(raw)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        notes.append(f"{key} {code(raw)} is not a number: using {_text(default)}")
        return default
    clamped = min(max(number, lo), hi)
    if whole:
        clamped = int(round(clamped))
    if clamped != number:
        why = "below" if number < lo else "above" if number > hi else "not a whole number"
        bound = _text(lo if number < lo else hi) if why != "not a whole number" else ""
        notes.append(f"{key} {code(raw)} is {why}{' ' + bound if bound else ''}: using {_text(clamped)}")
    return int(clamped) if whole else float(clamped)


def _dataset_args(name: str, raw: dict[str, str], base_args: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    spec = DATASETS[name]
    args = {k: v for k, v in dict(base_args).items() if k in spec.defaults}
    for key, value in raw.items():
        if key not in spec.defaults:
            notes.append(f"data set {name} has no option {code(key)}: ignored")
            continue
        if isinstance(spec.defaults[key], str):
            notes.append(f"{key} is never taken from a link: ignored")
            continue
        try:
            args.update(parse_dataset_args(name, [f"{key}={value}"]))
            continue
        except DataError:
            pass
        default = args.get(key, spec.defaults[key])
        rule = spec.ranges.get(key)
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if rule is None or not math.isfinite(number) or (rule.lo_open and number <= rule.lo):
            notes.append(f"{key} {code(value)} is not allowed for {name}: using {default}")
            continue
        clamped = min(max(number, rule.lo), rule.hi)
        whole = isinstance(spec.defaults[key], int)
        clamped = int(round(clamped)) if whole else clamped
        lo, hi = (int(b) if whole else b for b in (rule.lo, rule.hi))
        notes.append(f"{key} {code(value)} is outside {lo}..{hi}: using {clamped}")
        args[key] = clamped
    return args


def nearest_depth(settings: Settings, depth: int) -> int:
    """The valid depth closest to ``depth`` for this architecture (ties go deeper). The valid
    depths are an arithmetic run (``Settings.valid_depths``): worked out, not searched (every
    model row of every page asks, at every rerun)."""
    valid = settings.valid_depths()
    first, last = valid[0], valid[-1]
    every = valid[1] - first if len(valid) > 1 else 1
    below = first + max(0, min(depth - first, last - first)) // every * every
    return min((below, min(below + every, last)), key=lambda d: (abs(d - depth), -d))


def _models(raw: str | None, shape: Settings, base: Settings, notes: list[str]) -> tuple[str, ...]:
    if raw is None:
        names = list(base.models)
    else:
        names = [n.strip() for n in raw.split(",") if n.strip()]
    out: list[str] = []
    for name in names:
        try:
            spec = parse_model_name(name)
        except SettingsError:
            notes.append(f"model {code(name)} is not a model name like plain-20 or resnet-56-pre: dropped")
            continue
        depth = nearest_depth(shape.for_model(spec), spec.depth)
        fixed = name if depth == spec.depth else replace(spec, depth=depth).name
        if fixed != name:
            notes.append(f"{name} is not a valid depth for the {shape.arch.upper()}: using {fixed}")
        if fixed in out:
            notes.append(f"model {fixed} is listed twice: kept once")
            continue
        out.append(fixed)
    if len(out) > MAX_MODELS:
        notes.append(f"at most {MAX_MODELS} models at once: kept the first {MAX_MODELS}")
        out = out[:MAX_MODELS]
    if not out:
        fallback = [replace(s, depth=nearest_depth(shape.for_model(s), s.depth)).name for s in base.model_specs]
        if raw is not None:
            notes.append(f"no usable model in the link: using {', '.join(fallback)}")
        out = list(dict.fromkeys(fallback))
    return tuple(out)
