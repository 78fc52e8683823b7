"""Presets: one small TOML file each under ``presets/``, a title, one line of description and the
settings it overrides. Presets are data; adding a lesson's setting never adds a code path."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from resnet_core.settings import Settings, SettingsError

PRESET_DIR = Path(__file__).with_name("presets")


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    description: str
    overrides: dict

    def settings(self, **changes) -> Settings:
        """The preset's settings, with ``changes`` (e.g. explicit CLI flags) on top."""
        return Settings.from_dict({**self.overrides, **changes})


@lru_cache(maxsize=1)
def presets() -> dict[str, Preset]:
    out = {}
    for path in sorted(PRESET_DIR.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        out[path.stem] = Preset(path.stem, data["title"], data["description"], dict(data.get("settings", {})))
    return out


def get_preset(name: str) -> Preset:
    try:
        return presets()[name]
    except KeyError:
        raise SettingsError(f"unknown preset {name!r}; choose one of {', '.join(presets())}") from None
