"""What the shattered-gradients study (resnet_core.analysis.shattered.compute) runs on, decided without torch: the
line of inputs, the depths, and the settings of its scalar-in, scalar-out nets. The dashboard's
server checks a request with these and a worker process computes it.
"""
from __future__ import annotations

from resnet_core.settings import Settings, SettingsError, check_depth

POINTS = 256
X_RANGE = (-2.0, 2.0)  # the paper's inputs
DEFAULT_DEPTHS = (4, 8, 14, 20, 32, 50)
DEFAULT_WIDTH = 128
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_BRANCH_LAYERS = 1


def scalar_settings(width: int = DEFAULT_WIDTH, norm: str = "batch", block: str = "post",
                    branch_layers: int = DEFAULT_BRANCH_LAYERS, seed: int = 0) -> Settings:
    """Settings for the scalar-in, scalar-out MLPs: He init, identity shortcuts, one stage."""
    return Settings(models=("plain-4",), arch="mlp", width=width, norm=norm, block=block, shortcut="identity",
                    init="he", branch_layers=branch_layers, stages=1, seed=seed).checked()


def check_depths(depths, settings: Settings) -> tuple[int, ...]:
    depths = tuple(sorted(set(int(d) for d in depths)))
    if not depths:
        raise SettingsError("depths: give at least one")
    for d in depths:
        check_depth(settings, d)
    return depths


def check_memory(depths, width: int = DEFAULT_WIDTH, norm: str = "batch", block: str = "post",
                 branch_layers: int = DEFAULT_BRANCH_LAYERS, points: int = POINTS) -> None:
    """The run budget (``resnet_core.sizing.budget``) for the deepest plain and residual nets of a
    study: its nets are built and differentiated one pair at a time."""
    from resnet_core.sizing.budget import DataShape, check_fits

    base = scalar_settings(width, norm, block, branch_layers)
    deepest = max(check_depths(depths, base))
    nets = base.with_changes(models=(f"plain-{deepest}", f"resnet-{deepest}"), batch_size=min(points, 4096),
                             momentum=0.0, paths_every=0)
    check_fits(nets, DataShape((1,), 1, points, 0))
