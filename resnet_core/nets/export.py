"""A trained net out of the app: its weights as ``NAME.safetensors``, its architecture described
layer by layer from the ``Net`` itself (``describe``), for the standalone ``model.py``
(``nets/standalone.py``, no import of this project) to rebuild.

The description is read off the built modules, not re-derived from the settings, so it says what
``build_model`` made. Saving checks it at once: the standalone net is built from the description,
must take the state dict with every key (``strict``), and must give the very same logits as the
net on a few points. A module or parameter the description does not know (a new init option's
scalar, say) fails that check with its name, never silently: to export it, describe it here
(``_block``: a field per extra parameter) and give ``standalone.Block`` the same attribute and its
line in ``forward``.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from resnet_core.nets import standalone
from resnet_core.nets.models import Block, Net, PadShortcut, Unit
from resnet_core.records.exported_models import METADATA_KEY  # the description, in each file's header


class ExportError(RuntimeError):
    """The net holds something the standalone model cannot rebuild: a fault of ours, not the user's."""


def describe(net: Net, input_shape: tuple[int, ...]) -> dict:
    """The architecture of ``net`` as plain data (JSON), what ``standalone.Net`` is built from."""
    return {"name": net.name, "family": net.spec.family, "depth": net.spec.depth, "input_shape": list(input_shape),
            "classes": net.head.weight_layer.out_features, "pre": net.pre,
            "stem": _unit(net.stem), "blocks": [_block(b) for b in net.blocks], "head": _unit(net.head)}


def _weight(layer: nn.Module) -> dict:
    if isinstance(layer, nn.Conv2d):
        return {"kind": "conv", "in": layer.in_channels, "out": layer.out_channels,
                "kernel": layer.kernel_size[0], "stride": layer.stride[0], "bias": layer.bias is not None}
    if isinstance(layer, nn.Linear):
        return {"kind": "linear", "in": layer.in_features, "out": layer.out_features, "bias": layer.bias is not None}
    raise ExportError(f"cannot export a weighted layer of type {type(layer).__name__}")


def _norm(norm: nn.Module | None) -> dict | None:
    if norm is None:
        return None
    if not isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d)):
        raise ExportError(f"cannot export a normalisation of type {type(norm).__name__}")
    return {"dims": 2 if isinstance(norm, nn.BatchNorm2d) else 1, "features": norm.num_features,
            "eps": norm.eps, "momentum": norm.momentum}


def _reshape(module: nn.Module | None) -> str | None:
    if module is None:
        return None
    if isinstance(module, nn.Flatten):
        return "flatten"
    if isinstance(module, nn.Sequential) and [type(m) for m in module] == [nn.AdaptiveAvgPool2d, nn.Flatten]:
        return "pool"
    raise ExportError(f"cannot export a reshape of type {type(module).__name__}")


def _unit(unit: Unit) -> dict:
    return {**_weight(unit.weight_layer), "norm": _norm(unit.norm), "pre": unit.pre, "reshape": _reshape(unit.reshape)}


def _block(block: Block) -> dict:
    s = block.shortcut
    if s is None:
        shortcut = None
    elif isinstance(s, PadShortcut):
        shortcut = {"kind": "pad", "stride": s.stride, "extra": s.extra}
    elif isinstance(s, (nn.Linear, nn.Conv2d)):
        shortcut = {"kind": "projection", "weight": _weight(s), "norm": None}
    elif isinstance(s, nn.Sequential) and len(s) == 2:
        shortcut = {"kind": "projection", "weight": _weight(s[0]), "norm": _norm(s[1])}
    else:
        raise ExportError(f"cannot export a shortcut of type {type(s).__name__}")
    return {"residual": block.residual, "units": [_unit(u) for u in block.units], "shortcut": shortcut}


def check_rebuilds(net: Net, architecture: dict, state: dict[str, torch.Tensor]) -> None:
    """The standalone net built from ``architecture`` takes ``state`` whole and computes what ``net``
    computes, bit for bit, on a few points (evaluation mode; the net's mode is put back)."""
    rebuilt = standalone.Net(architecture)
    try:
        rebuilt.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"{net.name}: the standalone model does not rebuild it: {exc}") from None
    x = torch.randn((4, *architecture["input_shape"]), generator=torch.Generator().manual_seed(0))
    was = net.training
    with torch.no_grad():
        net.eval()
        expected = net(x)
        net.train(was)
        got = rebuilt.eval()(x)
    if not torch.equal(expected, got):
        raise ExportError(f"{net.name}: the standalone model computes something else than the net")


def save_model(net: Net, folder: str | os.PathLike, input_shape: tuple[int, ...]) -> Path:
    """``folder/NAME.safetensors``: every parameter and batch-norm statistic, with the architecture
    in its header; checked to rebuild (``check_rebuilds``) before it is written."""
    from safetensors.torch import save_file

    architecture = describe(net, input_shape)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    check_rebuilds(net, architecture, state)
    path = Path(folder) / f"{net.name}.safetensors"
    _atomic(path, lambda tmp: save_file(state, tmp, metadata={METADATA_KEY: json.dumps(architecture)}))
    return path


def save_data(folder: str | os.PathLike, x_train: torch.Tensor, y_train: torch.Tensor,
              x_test: torch.Tensor, y_test: torch.Tensor) -> Path:
    """``folder/data.npz``: the points the run measured its training and test errors on."""
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    path = Path(folder) / "data.npz"
    _atomic(path, lambda tmp: np.savez_compressed(tmp, **{k: v.cpu().numpy() for k, v in arrays.items()}))
    return path


def _atomic(path: Path, write) -> None:
    """Written beside ``path`` and renamed: two workers writing the same data file never mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's file is the owner's alone; these are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
