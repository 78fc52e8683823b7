"""Residual Lab's trained nets, in plain PyTorch: nothing here imports Residual Lab.

    import numpy as np, torch, model
    net = model.load("resnet-20")                  # the architecture below, the weights beside this file
    data = np.load("data.npz")                     # the points the run measured its errors on
    x, y = torch.from_numpy(data["x_test"]), torch.from_numpy(data["y_test"])
    print(model.error(net, x, y))                  # the run's last test error

A net is a stem (one weighted layer), a stack of blocks and a head (one linear layer). A residual
block computes y = F(x) + s(x), as drawn in He et al. (2015), Fig. 2; its plain twin y = F(x) is the
same block with the shortcut s taken out:

    post-activation (the original):    x ─┬─ weight ─ BN ─ ReLU ─ weight ─ BN ─(+)─ ReLU ─▶ y
                                          └──────────── s(x) ───────────────────┘
    pre-activation (He et al. 2016):   x ─┬─ BN ─ ReLU ─ weight ─ BN ─ ReLU ─ weight ─(+)─▶ y
                                          └──────────── s(x) ─────────────────────────┘

s is the identity, or where the block changes shape a projection (a 1x1 weight, with its BN) or
the identity subsampled and zero-padded ("pad"). A weight is a 3x3 convolution (CNN) or a linear
layer (MLP). ``ARCHITECTURES`` at the end lists every layer of every saved net; ``load`` builds one
from it and reads its weights from NAME.safetensors.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent


def weight_layer(layer: dict) -> nn.Module:
    """A 3x3 (or 1x1) convolution or a linear layer, as ``ARCHITECTURES`` describes it."""
    if layer["kind"] == "conv":
        return nn.Conv2d(layer["in"], layer["out"], layer["kernel"], stride=layer["stride"],
                         padding=layer["kernel"] // 2, bias=layer["bias"])
    return nn.Linear(layer["in"], layer["out"], bias=layer["bias"])


def batch_norm(norm: dict | None) -> nn.Module | None:
    """BatchNorm over a CNN's channels (2d) or an MLP's features (1d); None where there is none."""
    if norm is None:
        return None
    kind = nn.BatchNorm2d if norm["dims"] == 2 else nn.BatchNorm1d
    return kind(norm["features"], eps=norm["eps"], momentum=norm["momentum"])


class Unit(nn.Module):
    """One weighted layer and its batch norm: post-activation weight -> BN; pre-activation
    BN -> ReLU -> weight. ``reshape`` flattens an image before an MLP's stem, or pools a CNN's
    feature maps before the head."""

    def __init__(self, layer: dict):
        super().__init__()
        self.weight_layer = weight_layer(layer)
        self.norm = batch_norm(layer["norm"])
        self.pre = layer["pre"]
        self.reshape = {None: None, "flatten": nn.Flatten(),
                        "pool": nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())}[layer["reshape"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre:
            if self.norm is not None:
                x = self.norm(x)
            x = F.relu(x)
        if self.reshape is not None:
            x = self.reshape(x)
        x = self.weight_layer(x)
        if not self.pre and self.norm is not None:
            x = self.norm(x)
        return x


class PadShortcut(nn.Module):
    """Shortcut option A: the identity, subsampled and zero-padded to the block's new width."""

    def __init__(self, stride: int, extra: int):
        super().__init__()
        self.stride, self.extra = stride, extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x[:, :, :: self.stride, :: self.stride]
            return F.pad(x, (0, 0, 0, 0, 0, self.extra))
        return F.pad(x, (0, self.extra))


def shortcut(spec: dict | None) -> nn.Module | None:
    """s(x): None is the identity."""
    if spec is None:
        return None
    if spec["kind"] == "pad":
        return PadShortcut(spec["stride"], spec["extra"])
    projection = weight_layer(spec["weight"])
    norm = batch_norm(spec["norm"])
    return projection if norm is None else nn.Sequential(projection, norm)


class Block(nn.Module):
    """y = s(x) + F(x) (residual) or y = F(x) (plain); post-activation puts a ReLU after the sum."""

    def __init__(self, spec: dict, pre: bool):
        super().__init__()
        self.units = nn.ModuleList(Unit(layer) for layer in spec["units"])
        self.shortcut = shortcut(spec["shortcut"])
        self.residual = spec["residual"]
        self.pre = pre

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(x): the weighted layers, with a ReLU between them in the post-activation layout."""
        last = len(self.units) - 1
        for i, unit in enumerate(self.units):
            x = unit(x)
            if not self.pre and i < last:
                x = F.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.residual:
            skip = x if self.shortcut is None else self.shortcut(x)
            out = skip + out
        return out if self.pre else F.relu(out)


class Net(nn.Module):
    def __init__(self, spec: dict):
        super().__init__()
        self.stem = Unit(spec["stem"])
        self.blocks = nn.ModuleList(Block(block, spec["pre"]) for block in spec["blocks"])
        self.head = Unit(spec["head"])
        self.pre = spec["pre"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if not self.pre:
            x = F.relu(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def load(name: str, folder: str | Path = HERE) -> Net:
    """The trained net ``name`` (e.g. "resnet-20"): its architecture from ``ARCHITECTURES``, its
    weights and batch-norm statistics from ``folder/NAME.safetensors``, in evaluation mode."""
    from safetensors.torch import load_file

    net = Net(ARCHITECTURES[name])
    net.load_state_dict(load_file(str(Path(folder) / f"{name}.safetensors")))
    return net.eval()


@torch.no_grad()
def error(net: Net, x: torch.Tensor, y: torch.Tensor, batch_stats: bool = False) -> float:
    """The fraction of points misclassified, as the run measured it. ``batch_stats=False`` (the test
    error): batch norm uses its running statistics. ``batch_stats=True`` (the training error):
    batch norm normalises with the batch's own statistics, as in a training step, and its running
    statistics are left as they are."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    net.train(batch_stats)
    for m in norms:
        m.momentum = 0.0  # running = 1 * running + 0 * batch: unchanged
    wrong = sum(int((net(x[i:i + EVAL_BATCH]).argmax(1) != y[i:i + EVAL_BATCH]).sum())
                for i in range(0, len(x), EVAL_BATCH))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    net.eval()
    return wrong / max(len(x), 1)


EVAL_BATCH = 2048  # the run evaluated in chunks of this many points (batch statistics are per chunk)


def main() -> None:
    """``python model.py``: every saved net's training and test error on data.npz, as the run measured them."""
    import numpy as np

    data = np.load(HERE / "data.npz")
    x_train, y_train = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    x_test, y_test = torch.from_numpy(data["x_test"]), torch.from_numpy(data["y_test"])
    for name in ARCHITECTURES:
        net = load(name)
        print(f"{name}: training error {error(net, x_train, y_train, batch_stats=True):.2%}, "
              f"test error {error(net, x_test, y_test):.2%}")

# Every saved net, layer by layer (written by Residual Lab's export from the nets it trained).
ARCHITECTURES: dict[str, dict] = {}


if __name__ == "__main__":
    main()
