"""Plain and residual networks from one description.

A net is a stem, a stack of blocks and a head; every weighted layer is a ``Unit``. The plain
twin of ``resnet-D`` is the very same stack with the shortcuts taken out, built from the same
initial weights, so the two differ in nothing but the ``+ x``.

Depth counts every weighted layer, stem and head included (He et al. 2015):
MLP depth = branch_layers * blocks + 2, CNN depth = 3 * branch_layers * blocks_per_stage + 2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.nets.initialise import initialise
from resnet_core.settings import ModelSpec, Settings, SettingsError, add_block_choice, parse_model_name


@dataclass
class Probe:
    """Filled during one forward pass: every layer's response and each block's branch/skip norms."""

    responses: list[torch.Tensor] = field(default_factory=list)
    branches: list[torch.Tensor] = field(default_factory=list)  # F(x) of each residual block
    skips: list[torch.Tensor] = field(default_factory=list)     # s(x) of each residual block


def _scalar(value: float) -> nn.Parameter:
    return nn.Parameter(torch.full((), float(value)))


class Unit(nn.Module):
    """One weighted layer with its normalisation, ordered as the block layout asks:
    post-activation: weight -> BN;  pre-activation: BN -> ReLU -> weight.

    Fixup (Zhang et al. 2019) adds a learnable scalar bias right before the weight layer
    (``shift_in``) and right before the ReLU that goes with the unit (``shift_act``: after the
    weight in a post unit, before the ReLU in a pre unit); None elsewhere."""

    def __init__(self, weight: nn.Module, norm: nn.Module | None, pre: bool, reshape: nn.Module | None = None,
                 shift_in: bool = False, shift_act: bool = False):
        super().__init__()
        self.weight_layer = weight
        self.norm = norm
        self.pre = pre
        self.reshape = reshape  # global pooling / flattening before a head or an MLP stem
        self.shift_in = _scalar(0.0) if shift_in else None
        self.shift_act = _scalar(0.0) if shift_act else None

    @property
    def bare(self) -> bool:
        """Nothing but the weight layer and its BN (no Fixup scalars, no subclass of one's own): what
        the written-out passes know."""
        return type(self) is Unit and self.shift_in is None and self.shift_act is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre:
            if self.norm is not None:
                x = self.norm(x)
            if self.shift_act is not None:
                x = x + self.shift_act
            x = F.relu(x)
        if self.reshape is not None:
            x = self.reshape(x)
        if self.shift_in is not None:
            x = x + self.shift_in
        x = self.weight_layer(x)
        if not self.pre and self.norm is not None:
            x = self.norm(x)
        if not self.pre and self.shift_act is not None:
            x = x + self.shift_act
        return x


class PadShortcut(nn.Module):
    """Option A: the identity, subsampled and zero-padded where the block changes shape."""

    def __init__(self, stride: int, extra: int):
        super().__init__()
        self.stride, self.extra = stride, extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x[:, :, :: self.stride, :: self.stride]
            return F.pad(x, (0, 0, 0, 0, 0, self.extra))
        return F.pad(x, (0, self.extra))


class Block(nn.Module):
    """A residual block y = s(x) + F(x) (``residual=True``) or its plain twin y = F(x).

    Original layout: F = weight-BN-ReLU-...-weight-BN, then ReLU after the addition.
    Full pre-activation: F = BN-ReLU-weight-...-BN-ReLU-weight, nothing after the addition.

    A residual branch may end in scalars (``branch_end``): F(x) = scale · gain · F'(x) + shift_out,
    with ``gain`` learnable (SkipInit's α, starting at 0; Fixup's multiplier, starting at 1), ``scale`` a
    constant (1/√L for depth-μP's branch scale) and ``shift_out`` Fixup's bias before the ReLU after the addition.
    """

    layout = ""  # a variant's layout, "post" or "pre" (``register_block``); this block follows the settings'

    def __init__(self, units: list[Unit], shortcut: nn.Module | None, residual: bool, pre: bool, changes_shape: bool,
                 gain: float | None = None, scale: float = 1.0, shift_out: bool = False):
        super().__init__()
        self.units = nn.ModuleList(units)
        self.shortcut = shortcut  # None: the identity
        self.residual = residual
        self.pre = pre
        self.changes_shape = changes_shape
        self.removed = False  # lesion: the block's output becomes its (shortcut-mapped) input
        self.gain = None if gain is None else _scalar(gain)
        self.scale = float(scale)
        self.shift_out = _scalar(0.0) if shift_out else None

    @property
    def bare(self) -> bool:
        """y = s(x) + F(x) with F its units alone, no scalar at the branch's end nor in its units, and
        this very class (not a variant): the block ``mlp_stack``'s and ``mlp_stacked``'s written-out
        passes and the path maps know. Anything else goes through the modules and autograd (and
        ``torch.func`` for the path maps), with the same numbers."""
        return (type(self) is Block and self.gain is None and self.scale == 1.0 and self.shift_out is None
                and all(u.bare for u in self.units))

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.shortcut is None else self.shortcut(x)

    def branch(self, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
        last = len(self.units) - 1
        for i, unit in enumerate(self.units):
            x = unit(x)
            if probe is not None:
                probe.responses.append(x)
            if not self.pre and i < last:
                x = F.relu(x)
        return self.branch_end(x)

    def branch_end(self, x: torch.Tensor) -> torch.Tensor:
        """The scalars that end a branch (the identity for a bare block)."""
        if self.gain is not None:
            x = x * self.gain
        if self.scale != 1.0:
            x = x * self.scale
        if self.shift_out is not None:
            x = x + self.shift_out
        return x

    def branch_factor(self) -> torch.Tensor | float:
        """What the branch's Jacobian is multiplied by at its end: scale · gain (1 for a bare block)."""
        return self.scale if self.gain is None else self.gain.detach() * self.scale

    def combine(self, skip: torch.Tensor | None, branch: torch.Tensor) -> torch.Tensor:
        out = branch if skip is None else skip + branch
        return out if self.pre else F.relu(out)

    def forward(self, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
        if self.removed:
            if self.residual:
                return self.combine(None, self.skip(x))
            return x  # a plain block can only be removed where its shape does not change
        h = self.branch(x, probe)
        if not self.residual:
            return self.combine(None, h)
        s = self.skip(x)
        if probe is not None:
            probe.branches.append(h.detach())
            probe.skips.append(s.detach())
        return self.combine(s, h)


class Net(nn.Module):
    def __init__(self, spec: ModelSpec, stem: Unit, blocks: list[Block], head: Unit, pre: bool):
        super().__init__()
        self.spec = spec
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.pre = pre

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def residual(self) -> bool:
        return self.spec.residual

    def train(self, mode: bool = True) -> "Net":
        """``nn.Module.train``: the mode of every module set, as by the recursive walk it replaces,
        which costs 10 ms for resnet-1002 (its 4,007 modules' ``__setattr__``); every evaluation
        and analysis switches twice. A net's modules are fixed once it is built."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        modules = self.__dict__.get("_every_module")
        if modules is None:
            modules = self.__dict__["_every_module"] = list(self.modules())
        for module in modules:
            module.__dict__["training"] = mode
        return self

    def units(self) -> list[Unit]:
        """Every weighted layer in depth order: len(units()) == depth."""
        return [self.stem, *(u for b in self.blocks for u in b.units), self.head]

    def weights(self) -> list[torch.Tensor]:
        """The weight tensor of every weighted layer, depth order (cached: asked every step)."""
        if getattr(self, "_weights", None) is None:
            self._weights = [u.weight_layer.weight for u in self.units()]
        return self._weights

    def block_ends(self) -> np.ndarray:
        """Index, among the weighted layers, of the last layer of each block."""
        return np.cumsum([len(b.units) for b in self.blocks])

    def layer_names(self) -> list[str]:
        names = ["stem"]
        for i, block in enumerate(self.blocks):
            names += [f"block{i + 1}.{j + 1}" for j in range(len(block.units))]
        return names + ["head"]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem's output: the input of the block stack (where the unrolled view starts)."""
        x = self.stem(x)
        return x if self.pre else F.relu(x)

    def forward(self, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
        x = self.stem(x)
        if probe is not None:
            probe.responses.append(x)
        if not self.pre:
            x = F.relu(x)
        for block in self.blocks:
            x = block(x, probe)
        x = self.head(x)
        if probe is not None:
            probe.responses.append(x)
        return x


# Block variants of one's own, by the value of ``Settings.block`` that selects them (``register_block``).
BLOCK_VARIANTS: dict[str, type[Block]] = {}


def register_block(name: str, label: str, layout: str = "post"):
    """Class decorator: a block variant, a subclass of ``Block`` that overrides ``branch`` (the
    residual function F; ``skip`` and ``combine`` are the paper's), selected by
    ``Settings(block=name)``, ``--block name`` or ``?block=name``, on the ``layout`` ("post" or "pre")
    whose units it keeps. That is the whole edit: the fast paths do not know it and fall back to
    the modules and autograd by themselves, the path maps to ``torch.func``. A process learns of
    it by importing its module: ``RESIDUAL_LAB_PLUGINS`` names it for the command line and the workers.
    """
    if layout not in ("post", "pre"):
        raise SettingsError(f"a block variant's layout is post or pre (got {layout!r})")

    def add(cls: type[Block]) -> type[Block]:
        if not (isinstance(cls, type) and issubclass(cls, Block)):
            raise TypeError(f"a block variant subclasses Block (got {cls!r})")
        add_block_choice(name, label)
        cls.layout = layout
        BLOCK_VARIANTS[name] = cls
        return cls
    return add


def build_model(name: str | ModelSpec, settings: Settings, input_shape: tuple[int, ...], n_classes: int) -> Net:
    spec = parse_model_name(name) if isinstance(name, str) else name
    settings = settings.for_model(spec)  # the model's own suffixes (-b1, -pre, -nobn) win
    block_class = BLOCK_VARIANTS.get(settings.block, Block)
    pre = (block_class.layout or settings.block) == "pre"
    use_bn = settings.norm == "batch"
    image = len(input_shape) == 3
    if settings.arch == "cnn" and not image:
        raise SettingsError("the CNN needs image data (digits or cifar10); use the MLP for points")
    cnn = settings.arch == "cnn"

    def weight(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Module:
        if cnn:
            return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=not use_bn)
        return nn.Linear(c_in, c_out, bias=not use_bn)

    def norm(c: int) -> nn.Module | None:
        if not use_bn:
            return None
        return nn.BatchNorm2d(c) if cnn else nn.BatchNorm1d(c)

    in_features = input_shape[0] if cnn else _prod(input_shape)
    width = settings.width
    # Fixup's scalars (residual nets only: a plain net has no branch and starts as with He init):
    # a bias before every weight layer but the stem's and before every ReLU, a multiplier per branch.
    fixup = spec.residual and settings.init == "fixup"
    stem = Unit(weight(in_features, width), None if pre else norm(width), pre=False,
                reshape=nn.Flatten() if image and not cnn else None, shift_act=fixup and not pre)

    per_stage = settings.blocks_per_stage(spec.depth)
    branch_scale = 1.0 / math.sqrt(sum(per_stage)) if spec.residual and settings.branch_scale == "invsqrt" else 1.0
    gain = {"skipinit": 0.0, "fixup": 1.0}.get(settings.init) if spec.residual else None
    blocks: list[Block] = []
    c_in = width
    for stage, count in enumerate(per_stage):
        c_out = width * 2**stage
        for b in range(count):
            changes = b == 0 and stage > 0
            stride = 2 if changes and cnn else 1
            units = []
            for j in range(settings.branch_layers):
                last = j == settings.branch_layers - 1
                units.append(Unit(weight(c_in if j == 0 else c_out, c_out, stride if j == 0 else 1), norm(c_in if pre and j == 0 else c_out), pre,
                                  shift_in=fixup, shift_act=fixup and (pre or not last)))
            shortcut = None
            if spec.residual:
                if settings.shortcut == "projection" or (changes and settings.shortcut == "identity"):
                    proj = weight(c_in, c_out, stride, kernel=1)
                    shortcut = proj if not use_bn else nn.Sequential(proj, norm(c_out))
                elif changes:
                    shortcut = PadShortcut(stride, c_out - c_in)
            blocks.append(block_class(units, shortcut, spec.residual, pre, changes, gain=gain, scale=branch_scale,
                                shift_out=fixup and not pre))
            c_in = c_out
    head = Unit(nn.Linear(c_in, n_classes), norm(c_in) if pre else None, pre=pre,
                reshape=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()) if cnn else None,
                shift_in=fixup, shift_act=fixup and pre)
    net = Net(spec, stem, blocks, head, pre)
    initialise(net, settings)
    return net


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def lesionable(block: Block) -> bool:
    """A residual block can always be removed (its shortcut remains); a plain one only where
    its input and output have the same shape."""
    return block.residual or not block.changes_shape
