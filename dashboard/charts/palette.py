"""The one palette of every chart: Okabe & Ito's eight colours, chosen to stay apart for the common
colour-vision deficiencies (tests/test_palette.py simulates deuteranopia, protanopia and
tritanopia with colorspacious and checks every pair of series on a chart), and a marker per
model, so that colour is never the only cue.

Plain nets are drawn warm (orange, then vermillion: the degradation lesson's deep plain net is the red
one, then reddish purple) and residual nets cool (blue, sky blue, bluish green); a family with more models than its three colours takes the spare ones (black,
then yellow, which is pale on a light background and so comes last), then the other family's that
no model on the chart uses, so up to eight models on one chart all differ. Within a family the
shallower net comes first: the same model has the same colour in every panel.
"""
from __future__ import annotations

from resnet_core.settings import SettingsError, parse_model_name

OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7"}
PLAIN_COLORS = (OKABE_ITO["orange"], OKABE_ITO["vermillion"], OKABE_ITO["reddish purple"])
RESNET_COLORS = (OKABE_ITO["blue"], OKABE_ITO["sky blue"], OKABE_ITO["bluish green"])
OTHER_COLORS = (OKABE_ITO["black"], OKABE_ITO["yellow"])
# A model's marker, in the same order: a different shape for each model of a chart.
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "star", "triangle-down", "hexagon")


def _ordered(models: list[str]) -> dict[str, list[str]]:
    """The models by family ("plain", "resnet", "other"), shallowest first."""
    def key(name: str) -> tuple[str, int, str]:
        try:
            spec = parse_model_name(name)
            return spec.family, spec.depth, name
        except SettingsError:
            return "other", 0, name

    by_family: dict[str, list[str]] = {}
    for name in sorted(dict.fromkeys(models), key=key):
        by_family.setdefault(key(name)[0], []).append(name)
    return by_family


def model_colors(models: list[str]) -> dict[str, str]:
    """A colour per model, every one different while there are eight or fewer (see the module)."""
    by_family = _ordered(models)
    own = {"plain": PLAIN_COLORS, "resnet": RESNET_COLORS, "other": OTHER_COLORS}
    taken: set[str] = set()
    colors: dict[str, str] = {}
    for family, names in by_family.items():  # first each family's own colours ...
        for name, color in zip(names, own[family]):
            colors[name] = color
            taken.add(color)
    spare = [c for c in (*OTHER_COLORS, *PLAIN_COLORS, *RESNET_COLORS) if c not in taken]
    for names in by_family.values():  # ... then what no model on the chart has
        for i, name in enumerate(n for n in names if n not in colors):
            colors[name] = spare.pop(0) if spare else tuple(OKABE_ITO.values())[i % len(OKABE_ITO)]
    return colors


def model_symbols(models: list[str]) -> dict[str, str]:
    """A marker shape per model, in the order of ``model_colors``."""
    ordered = [name for names in _ordered(models).values() for name in names]
    return {name: SYMBOLS[i % len(SYMBOLS)] for i, name in enumerate(ordered)}
