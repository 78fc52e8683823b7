"""How a net's weights start: from (seed, depth, layer) alone, so that a plain net and its residual
twin of the same depth start from the very same weights, in this process or another; He
(Kaiming) or PyTorch's default, and the residual-specific starts (zero-initialised branches,
SkipInit's α = 0, Fixup's rules)."""
from __future__ import annotations

import zlib

import torch
from torch import nn

from resnet_core.settings import Settings

def model_seed(seed: int, depth: int, layer: int) -> int:
    """Initial weights depend on (seed, depth, layer) only, so a plain net and its residual twin
    of the same depth start from the very same weights."""
    return zlib.crc32(f"{seed}:{depth}:{layer}".encode())


def initialise(net: nn.Module, settings: Settings) -> None:
    """``net``: a ``models.Net``. Every weight from (seed, depth, layer); SkipInit's and Fixup's scalars start as ``build_model``
    made them (α = 0; multipliers 1, biases 0). Fixup also zeroes a residual net's head."""
    for i, unit in enumerate(net.units()):
        w = unit.weight_layer
        gen = torch.Generator().manual_seed(model_seed(settings.seed, net.spec.depth, i))
        if settings.init == "default":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(model_seed(settings.seed, net.spec.depth, i))
                w.reset_parameters()
        else:
            nn.init.kaiming_normal_(w.weight, mode="fan_in", nonlinearity="relu", generator=gen)
            if w.bias is not None:
                nn.init.zeros_(w.bias)
    for j, block in enumerate(net.blocks):
        # A projection shortcut is seeded like the units: its weights (and its bias, where there is no
        # BN) never come from torch's global generator, so two runs of one setting start alike.
        for m in (block.shortcut.modules() if block.shortcut is not None else ()):
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                seed = model_seed(settings.seed, net.spec.depth, 10_000 + j)
                if settings.init == "default":
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(seed)
                        m.reset_parameters()
                    continue
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="linear",
                                        generator=torch.Generator().manual_seed(seed))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if settings.init == "fixup" and block.residual:
            fixup_branch(block, len(net.blocks))
        if settings.init == "zero" and block.residual:
            # Each branch starts at zero, so each block starts as the identity (Goyal et al. 2017;
            # Fixup). With a BN at the end of the branch its scale is zeroed; otherwise the last weight.
            last = block.units[-1]
            if not last.pre and last.norm is not None:
                nn.init.zeros_(last.norm.weight)
            else:
                nn.init.zeros_(last.weight_layer.weight)
    if settings.init == "fixup" and net.residual:
        nn.init.zeros_(net.head.weight_layer.weight)
        nn.init.zeros_(net.head.weight_layer.bias)


def fixup_branch(block: nn.Module, n_blocks: int) -> None:
    """Fixup's rules (Zhang, Dauphin & Ma 2019) on one He-initialised branch of m layers in a net of
    L branches: the layers before the last scaled by L^(-1/(2m-2)), the last one at zero (its bias
    too, where there is no BN). ``initialise`` zeroes the head."""
    m = len(block.units)
    with torch.no_grad():
        if m > 1:
            factor = n_blocks ** (-1.0 / (2 * m - 2))
            for unit in block.units[:-1]:
                unit.weight_layer.weight.mul_(factor)
        last = block.units[-1].weight_layer
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)
