"""How big a net is, from its description alone: no torch, nothing built.

``layout`` walks the same stem, stages, blocks and head as ``models.build_model`` and says, for
every weighted layer (and every projection shortcut), its channels in and out, its kernel and the
spatial size of its output. From that follow the exact parameter count (``parameter_count``, checked
against the built nets for every architecture, stage count, shortcut, branch length and layout in
``tests/test_models.py``) and the number of values each layer puts out per example
(``unit_outputs``), which is what the activations held for the backward pass grow with.

The dashboard's server uses it to refuse a run before a worker is asked to build it (the server
never imports torch); the trainer uses the same numbers, so both say the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass

from resnet_core.settings import ModelSpec, Settings, parse_model_name


@dataclass(frozen=True)
class Layer:
    c_in: int
    c_out: int
    kernel: int          # 1 for a dense layer
    bias: bool
    norm: int            # channels of the batch norm that goes with it (0: none)
    out_spatial: int     # height x width of its output (1 for a dense layer)
    shortcut: bool = False  # a projection on a shortcut, not one of the depth's weighted layers

    @property
    def parameters(self) -> int:
        return self.c_in * self.c_out * self.kernel ** 2 + (self.c_out if self.bias else 0) + 2 * self.norm

    @property
    def outputs(self) -> int:
        """Values this layer puts out per example."""
        return self.c_out * self.out_spatial


def layout(spec: ModelSpec | str, settings: Settings, input_shape: tuple[int, ...], n_classes: int) -> list[Layer]:
    """Every weighted layer of the net ``build_model(spec, settings, input_shape, n_classes)`` would
    build, in depth order, each projection shortcut right after its block's layers."""
    spec = parse_model_name(spec) if isinstance(spec, str) else spec
    s = settings.for_model(spec)
    pre, bn = s.block == "pre", s.norm == "batch"
    image = len(input_shape) == 3
    cnn = s.arch == "cnn" and image
    kernel = 3 if cnn else 1
    h, w = (input_shape[1], input_shape[2]) if cnn else (1, 1)
    in_features = input_shape[0] if cnn else _prod(input_shape)
    width = s.width
    layers = [Layer(in_features, width, kernel, not bn, 0 if pre or not bn else width, h * w)]
    c_in = width
    for stage, count in enumerate(s.blocks_per_stage(spec.depth)):
        c_out = width * 2 ** stage
        for b in range(count):
            changes = b == 0 and stage > 0
            if changes and cnn:
                h, w = (h + 1) // 2, (w + 1) // 2  # a 3x3 convolution with stride 2 and padding 1
            for j in range(s.branch_layers):
                first = j == 0
                norm = (c_in if pre and first else c_out) if bn else 0
                layers.append(Layer(c_in if first else c_out, c_out, kernel, not bn, norm, h * w))
            if spec.residual and (s.shortcut == "projection" or (changes and s.shortcut == "identity")):
                layers.append(Layer(c_in, c_out, 1, not bn, c_out if bn else 0, h * w, shortcut=True))
            c_in = c_out
    layers.append(Layer(c_in, n_classes, 1, True, c_in if pre and bn else 0, 1))
    return layers


def parameter_count(spec: ModelSpec | str, settings: Settings, input_shape: tuple[int, ...], n_classes: int) -> int:
    """What ``models.parameter_count(build_model(...))`` returns, without building anything."""
    return (sum(layer.parameters for layer in layout(spec, settings, input_shape, n_classes))
            + scalar_count(spec, settings))


def scalar_count(spec: ModelSpec | str, settings: Settings) -> int:
    """The learnable scalars of a residual net's branches: SkipInit's α per block; Fixup's multiplier
    and 2m biases per block of m layers, and two more around the stem and head (either layout)."""
    spec = parse_model_name(spec) if isinstance(spec, str) else spec
    s = settings.for_model(spec)
    if not spec.residual:
        return 0
    blocks = s.blocks_for(spec.depth)
    return {"skipinit": blocks, "fixup": blocks * (2 * s.branch_layers + 1) + 2}.get(s.init, 0)


def unit_outputs(spec: ModelSpec | str, settings: Settings, input_shape: tuple[int, ...], n_classes: int) -> int:
    """Values put out per example by all the net's weighted layers together."""
    return sum(layer.outputs for layer in layout(spec, settings, input_shape, n_classes))


def widest_output(spec: ModelSpec | str, settings: Settings, input_shape: tuple[int, ...], n_classes: int) -> int:
    """The largest single layer output per example (what an evaluation in chunks holds at a time)."""
    return max(layer.outputs for layer in layout(spec, settings, input_shape, n_classes))


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for v in shape:
        out *= int(v)
    return out
