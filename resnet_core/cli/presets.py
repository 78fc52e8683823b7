"""``presets``: the preset list, one line each."""
from __future__ import annotations

import argparse

from resnet_core.presets import presets


def run(args: argparse.Namespace) -> int:
    for preset in presets().values():
        print(f"{preset.name:16} {preset.description}")
    return 0
