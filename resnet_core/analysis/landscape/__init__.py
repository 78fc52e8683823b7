"""What a loss landscape is computed on (resnet_core.analysis.landscape.compute), decided without torch: the grid
sizes and which depth's plain and residual twins. The dashboard's server plans a landscape from
these and a worker process computes it.
"""
from __future__ import annotations

from resnet_core.settings import RANGES, Settings

COARSE, FINE = 11, 21  # grid sides: a first look, then "Refine"
LINE_POINTS = 41
SPAN = 1.0  # the paper's [-1, 1]


def twin_depth(settings: Settings) -> int:
    """The deepest plain model of the settings (the one that degrades), else the deepest model."""
    specs = settings.model_specs
    plain = [s.depth for s in specs if not s.residual]
    return max(plain or [s.depth for s in specs])


def twin_settings(settings: Settings, depth: int, steps: int) -> Settings:
    """What the twins train with: plain-D and resnet-D together, no per-layer probes, no path
    analysis (only the trained weights are wanted)."""
    return settings.with_changes(models=(f"plain-{depth}", f"resnet-{depth}"), steps=max(int(steps), 1),
                                 probe_every=RANGES["probe_every"][1], paths_every=0)
