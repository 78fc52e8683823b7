"""The one settings object: everything that defines a run.

The sidebar edits it, the URL carries it, presets are overrides of it, the CLI parses into
it and a run folder's ``config.json`` stores it. ``Settings.checked()`` is the single place
where values are validated; every front end turns its ``SettingsError`` into a message.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from resnet_core.errors import UserError

FAMILIES = ("plain", "resnet")

MAX_DEPTH = 2002
MAX_MODELS = 6

# plain-D / resnet-D, then optional per-model options in this order: -b1..-b3 (weight layers per
# branch), -post/-pre (block layout), -bn/-nobn (normalisation), -he/-zero/-skipinit/-fixup
# (initialisation). They let a lesson set variants side by side in one run (resnet-56-b1 beside
# resnet-56; plain-56-nobn beside plain-56; resnet-110-nobn-fixup beside resnet-110-nobn).
_MODEL_NAME = re.compile(r"^(plain|resnet)-(\d{1,6})(?:-b([1-3]))?(?:-(post|pre))?(?:-(bn|nobn))?"
                         r"(?:-(he|zero|skipinit|fixup))?$")
# Initialisations that change a residual branch's arithmetic; a plain net has no branch, and starts as with "he".
BRANCH_INITS = ("skipinit", "fixup")
_NORM_SUFFIX = {"bn": "batch", "nobn": "none"}


class SettingsError(UserError):
    """A setting that cannot be used; the message says what is wrong and what is allowed."""


@dataclass(frozen=True)
class ModelSpec:
    """One entry of ``Settings.models``, e.g. ``resnet-56``: family and paper-style depth.
    Optional suffixes set this model's own layers per branch, block layout and normalisation
    (``resnet-56-b1``, ``resnet-302-pre``, ``plain-56-nobn``), so variants train side by side
    in one run."""

    family: str
    depth: int
    block: str | None = None
    branch_layers: int | None = None  # None: the settings' value
    norm: str | None = None           # None: the settings' value; else "batch" or "none"
    init: str | None = None           # None: the settings' value; else one of its choices but "default"

    @property
    def name(self) -> str:
        suffix = {"batch": "-bn", "none": "-nobn"}.get(self.norm or "", "")
        return (f"{self.family}-{self.depth}" + (f"-b{self.branch_layers}" if self.branch_layers else "")
                + (f"-{self.block}" if self.block else "") + suffix + (f"-{self.init}" if self.init else ""))

    @property
    def residual(self) -> bool:
        return self.family == "resnet"


@dataclass(frozen=True)
class SettingMeta:
    """What a front end needs to know about one setting, kept beside the field itself."""

    label: str
    help: str = ""
    choices: Mapping[str, str] | None = None   # value -> how the sidebar names it
    range: tuple[float, float] | None = None   # inclusive
    widget: bool = True                        # the sidebar's widget holds the value as it is


def setting(default: Any, label: str, help: str = "", *, choices: Mapping[str, str] | None = None,
            range: tuple[float, float] | None = None, widget: bool = True) -> Any:
    meta = {"meta": SettingMeta(label, help, dict(choices) if choices else None, range, widget)}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    # Each field carries its facts (label, help, choices or range): the CLI's flags, the link's
    # codec and the sidebar's widgets are all derived from them (see SETTING_META below). The
    # ranges are wide enough for every lesson and narrow enough that no value can take a
    # classroom server down (a 1002-layer net is in, a 100,000-layer one is not).
    dataset: str = setting("spirals", "Data set", "one of the data sets (python -m resnet_core presets lists them)")
    dataset_args: Mapping[str, Any] = setting({}, "Data options", "the data set's own options, KEY=VALUE")
    models: tuple[str, ...] = setting(("plain-8", "plain-56", "resnet-56"), "Models",
                                      "comma-separated, e.g. plain-20,plain-56,resnet-56")
    arch: str = setting("mlp", "Architecture", "MLP on 2D points; CNN = the paper's CIFAR net (3×3 convs, 6n+2 layers)",
                        choices={"mlp": "MLP", "cnn": "CNN"})
    width: int = setting(32, "Width", "units per layer (MLP) or filters of the first stage (CNN)", range=(2, 512))
    block: str = setting("post", "Block", "original: weight-BN-ReLU-weight-BN, add, ReLU (He et al. 2015); "
                         "pre-activation: BN-ReLU-weight twice, add, nothing after (He et al. 2016)",
                         choices={"post": "original", "pre": "pre-activation"})
    norm: str = setting("batch", "BatchNorm", "batch normalisation after every weight layer",
                        choices={"batch": "BatchNorm", "none": "none"}, widget=False)  # the sidebar shows a toggle
    # The paper's options where shapes change: pad = A (zero-padded identity, no parameters),
    # identity = B (identity where shapes match, 1x1 projection where they change),
    # projection = C (a projection on every block).
    shortcut: str = setting("identity", "Shortcut", "where the shape changes: zero-padded identity (A), "
                            "a projection (B), or a projection on every block (C)",
                            choices={"identity": "identity (B: projection where shape changes)",
                                     "projection": "projection (C: 1×1 on every block)",
                                     "pad": "identity + zero padding (A: no parameters)"})
    init: str = setting("he", "Initialisation", "how the weights start; SkipInit (De & Smith 2020): a learnable scalar "
                        "α = 0 ends each residual branch; Fixup (Zhang et al. 2019): no BatchNorm, the last layer of "
                        "each branch and the head at zero, the others scaled by L^(-1/(2m-2)), scalar biases and multipliers",
                        choices={"he": "He (Kaiming)", "default": "PyTorch default", "zero": "zero: each branch starts as 0",
                                 "skipinit": "SkipInit: y = x + α·F(x), α = 0", "fixup": "Fixup (without BatchNorm)"})
    # Depth-μP's branch multiplier (Hayou et al. 2021; Yang et al. 2023): y = x + F(x)/√L over L residual blocks.
    branch_scale: str = setting("1", "Branch scale", "each residual branch multiplied by 1 (the paper's) or by 1/√L, "
                                "L residual blocks (Hayou et al. 2021, depth-μP): the stream's variance stays bounded",
                                choices={"1": "1 (the paper's)", "invsqrt": "1/√L (depth-μP)"})
    branch_layers: int = setting(2, "Weight layers per block",
                                 "the paper uses 2; a one-layer branch is nearly linear and brings no advantage", range=(1, 3))
    stages: int = setting(1, "Stages (MLP)", "stages of doubling width", range=(1, 4))
    optimizer: str = setting("sgd", "Optimizer", "SGD with momentum, or Adam",
                             choices={"sgd": "SGD + momentum", "adam": "Adam"})
    lr: float = setting(0.05, "Learning rate", "changes apply at the next step, mid-run too", range=(1e-6, 10.0))
    momentum: float = setting(0.9, "Momentum", "SGD's momentum", range=(0.0, 0.999))
    weight_decay: float = setting(0.0, "Weight decay", "L2 penalty on the weights", range=(0.0, 0.1))
    batch_size: int = setting(128, "Batch size", "points per training step", range=(1, 4096))
    steps: int = setting(400, "Steps", "raise it mid-run to train on; lower it to stop earlier", range=(1, 100_000))
    seed: int = setting(0, "Seed", "the same seed gives the same initial weights and batches", range=(0, 2**31 - 1))
    eval_every: int = setting(10, "Evaluate every (steps)", "training and test error", range=(1, 100_000))
    probe_every: int = setting(2, "Probe layers every (steps)", "gradient norms and responses", range=(1, 100_000))
    paths_every: int = setting(50, "Path analysis every (steps)", "0 = only on request", range=(0, 100_000))
    device: str = setting("auto", "Device", "where the models train",
                          choices={"auto": "auto (GPU if any)", "cpu": "CPU", "cuda": "CUDA GPU"})

    # ---- derived -------------------------------------------------------------------
    @property
    def model_specs(self) -> tuple[ModelSpec, ...]:
        return tuple(parse_model_name(m) for m in self.models)

    @property
    def stage_count(self) -> int:
        """Stages of blocks: the paper's CIFAR net has three; the MLP as many as asked."""
        return 3 if self.arch == "cnn" else self.stages

    def for_model(self, spec: ModelSpec) -> "Settings":
        """These settings as one model sees them: its name's suffixes override the run's values."""
        return replace(self, block=spec.block or self.block, branch_layers=spec.branch_layers or self.branch_layers,
                       norm=spec.norm or self.norm, init=spec.init or self.init)

    def blocks_for(self, depth: int) -> int:
        """Residual blocks (or plain layer groups) in a net of this paper-style depth."""
        return (depth - 2) // self.branch_layers

    def blocks_per_stage(self, depth: int) -> list[int]:
        """Blocks in each stage: the CNN's three stages alike, the MLP's as even as they go."""
        total = self.blocks_for(depth)
        if self.arch == "cnn":
            return [total // 3] * 3
        base, extra = divmod(total, self.stages)
        return [base + (1 if i < extra else 0) for i in range(self.stages)]

    def stage_starts(self, model: str) -> list[int]:
        """Indices of a model's blocks that change the shape (the first of every stage after the
        first), from the settings alone: the dashboard marks them without building the model."""
        spec = parse_model_name(model)
        starts, first = [], 0
        for stage, count in enumerate(self.for_model(spec).blocks_per_stage(spec.depth)):
            if stage > 0 and count > 0:
                starts.append(first)
            first += count
        return starts

    def valid_depths(self, limit: int = MAX_DEPTH) -> list[int]:
        """Depth = layers per block x blocks + stem + head; the CNN has the same count per stage."""
        per_block = self.branch_layers * (3 if self.arch == "cnn" else 1)
        first = per_block * self.stage_count if self.arch == "mlp" else per_block
        return list(range(first + 2, limit + 1, per_block))

    # ---- validation and conversion ---------------------------------------------------
    def checked(self) -> "Settings":
        """Return a normalised copy, or raise SettingsError with one line saying what to change."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, choices in CHOICES.items():
            if values[name] not in choices:
                raise SettingsError(f"{name} must be one of {', '.join(choices)} (got {values[name]!r})")
        for name, (lo, hi) in RANGES.items():
            values[name] = _number(name, values[name], lo, hi)
        if not isinstance(values["dataset"], str) or not values["dataset"]:
            raise SettingsError("dataset must be a non-empty name")
        models = values["models"]
        if isinstance(models, str):
            models = tuple(m.strip() for m in models.split(",") if m.strip())
        models = tuple(models)
        if not models:
            raise SettingsError("models: give at least one, e.g. plain-8,plain-56,resnet-56")
        if len(models) > MAX_MODELS:
            raise SettingsError(f"models: at most {MAX_MODELS} at once (got {len(models)})")
        if len(set(models)) != len(models):
            raise SettingsError("models: each name may appear once")
        values["models"] = models
        values["dataset_args"] = dict(values["dataset_args"] or {})
        result = replace(self, **values)
        for spec in result.model_specs:
            check_depth(result.for_model(spec), spec.depth)
            check_branch_options(result, spec)
        if not any(spec.residual for spec in result.model_specs):
            for name, value in (("init", result.init if result.init in BRANCH_INITS else None),
                                ("branch_scale", result.branch_scale if result.branch_scale != "1" else None)):
                if value is not None:
                    flag = name.replace("_", "-")
                    raise SettingsError(f"--{flag} {value} changes residual branches and no model here has one: "
                                        "add a resnet model or leave it at its default")
        return result

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = list(self.models)
        d["dataset_args"] = dict(self.dataset_args)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Settings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        values = dict(data)
        if "models" in values and not isinstance(values["models"], str):
            values["models"] = tuple(values["models"])
        return replace(cls(), **values).checked()

    def with_changes(self, **changes: Any) -> "Settings":
        return replace(self, **changes).checked()



SETTING_META: dict[str, SettingMeta] = {f.name: f.metadata["meta"] for f in fields(Settings)}
CHOICES: dict[str, tuple[str, ...]] = {n: tuple(m.choices) for n, m in SETTING_META.items() if m.choices}


def add_block_choice(name: str, label: str) -> None:
    """A block variant of one's own (``nets.models.register_block``) as a value of ``block`` that the
    settings, the command line and a link accept. Called as the variant's module is imported
    (``RESIDUAL_LAB_PLUGINS``), before any parser or widget is made."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in ("post", "pre"):
        raise SettingsError(f"a block variant's name must be a new lowercase word (got {name!r})")
    SETTING_META["block"].choices[name] = label
    CHOICES["block"] = tuple(SETTING_META["block"].choices)
RANGES: dict[str, tuple[float, float]] = {n: m.range for n, m in SETTING_META.items() if m.range}
DEFAULTS: Settings = Settings()


def _number(name: str, value: Any, lo: float, hi: float) -> float | int:
    kind = type(getattr(DEFAULTS, name))  # int or float, as the field's default is
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a number from {_fmt(lo)} to {_fmt(hi)} (got {value!r})") from None
    if not math.isfinite(number):
        raise SettingsError(f"{name} must be a finite number from {_fmt(lo)} to {_fmt(hi)} (got {value!r})")
    if kind is int and number != int(number):
        raise SettingsError(f"{name} must be a whole number from {_fmt(lo)} to {_fmt(hi)} (got {value!r})")
    if not lo <= number <= hi:
        bound = "greater than 0" if name == "lr" and number <= 0 else f"from {_fmt(lo)} to {_fmt(hi)}"
        raise SettingsError(f"{name} must be {bound} (got {value!r})")
    return kind(number)


def _fmt(x: float) -> str:
    return f"{x:g}"


def parse_model_name(name: str) -> ModelSpec:
    match = _MODEL_NAME.match(str(name).strip())
    if not match:
        raise SettingsError(f"model name {name!r} must look like plain-D or resnet-D, e.g. resnet-56, optionally "
                            "followed by -b1/-b2/-b3 (layers per branch), -pre/-post (block layout), -bn/-nobn, in that order")
    family, depth, layers, block, norm, init = match.groups()
    return ModelSpec(family, int(depth), block, int(layers) if layers else None, _NORM_SUFFIX.get(norm), init)


def check_branch_options(settings: Settings, spec: ModelSpec) -> None:
    """Refuse what a model cannot be: a branch initialisation named on a plain net, Fixup beside BatchNorm."""
    own = settings.for_model(spec)
    if spec.init in BRANCH_INITS and not spec.residual:
        raise SettingsError(f"{spec.name}: a plain net has no residual branch for -{spec.init}; drop the suffix "
                            "or make it a resnet")
    if spec.residual and own.init == "fixup" and own.norm == "batch":
        raise SettingsError(f"{spec.name}: Fixup replaces BatchNorm; use --norm none (or the model's -nobn suffix)")


def check_depth(settings: Settings, depth: int) -> None:
    valid = settings.valid_depths()
    if depth in valid:
        return
    rule = (f"{3 * settings.branch_layers}n+2" if settings.arch == "cnn" else f"{settings.branch_layers}n+2")
    if depth > valid[-1]:
        raise SettingsError(f"depth {depth} is too deep: at most {valid[-1]} for the {settings.arch.upper()}")
    below = [d for d in valid if d < depth][-1:]
    above = [d for d in valid if d > depth][:1]
    nearest = " or ".join(str(d) for d in below + above)
    raise SettingsError(f"depth {depth} is not valid for the {settings.arch.upper()} ({rule}"
                        f"{f', at least {settings.stage_count} blocks' if settings.stage_count > 1 and settings.arch == 'mlp' else ''}): try {nearest}")
