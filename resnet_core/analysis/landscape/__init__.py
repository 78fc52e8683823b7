"""What a loss landscape is computed on (resnet_core.analysis.landscape.compute), decided without torch: the grid
sizes and which depth's plain and residual twins. The dashboard's server plans a landscape from
these and a worker process computes it.
"""
from __future__ import annotations

from resnet_core.settings import Settings

COARSE, FINE = 11, 21  # grid sides: a first look, then "Refine"
LINE_POINTS = 41
SPAN = 1.0  # the paper's [-1, 1]


def twin_depth(settings: Settings) -> int:
    """The deepest plain model of the settings (the one that degrades), else the deepest model."""
    specs = settings.model_specs
    plain = [s.depth for s in specs if not s.residual]
    return max(plain or [s.depth for s in specs])
