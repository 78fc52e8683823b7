"""Generators for the 2D point datasets (spirals, circles, moons, xor, blobs).

Each returns raw coordinates (float64, shape (n, 2), roughly within the unit disc) and labels with
the classes as balanced as n allows; resnet_core.data splits and scales them.

`noise` means the same thing everywhere: the standard deviation of Gaussian jitter, as a fraction
of the gap between neighbouring classes in that picture. So noise=0 is clean, noise=0.2 lets a
good classifier reach about 1% error, noise=1 smears the classes into each other - whatever the
arms, turns, factor or number of centres. (Absolute jitter would make, say, 8 arms x 4 turns
unlearnable at a noise that is barely visible on 3 arms x 1.5 turns, and the lesson would be
about noise rather than depth.)
"""
from __future__ import annotations

import numpy as np

# Spiral arms start this far from the centre: at radius 0 all arms meet, and points there could
# not be told apart by any classifier, which would put a floor under the error that depth can't fix.
SPIRAL_INNER_RADIUS = 0.1
# XOR quadrants are squares [MARGIN, 1] away from the axes, so the classes have a gap to be noisy in.
XOR_MARGIN = 0.15


def balanced_labels(n: int, n_classes: int) -> np.ndarray:
    """0, 1, ..., k-1, 0, 1, ...: class sizes differ by at most one (the split shuffles them)."""
    return np.arange(n, dtype=np.int64) % n_classes


def _jitter(rng: np.random.Generator, n: int, noise: float, gap: float) -> np.ndarray:
    return rng.normal(0.0, noise * gap, size=(n, 2))


def _polar(radius: np.ndarray, angle: np.ndarray) -> np.ndarray:
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def spirals(n: int, arms: int, turns: float, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`arms` interleaved Archimedean spirals, each winding `turns` times around the centre."""
    y = balanced_labels(n, arms)
    t = rng.uniform(0.0, 1.0, n)
    radius = SPIRAL_INNER_RADIUS + (1.0 - SPIRAL_INNER_RADIUS) * t
    angle = 2 * np.pi * turns * t + 2 * np.pi * y / arms
    # Neighbouring arms are this far apart along a radius; with less than a turn they don't wrap
    # around each other, and the distance across the angle between arms (at half radius) is the gap.
    gap = min((1.0 - SPIRAL_INNER_RADIUS) / (turns * arms), np.sin(np.pi / arms))
    return _polar(radius, angle) + _jitter(rng, n, noise, gap), y


def circles(n: int, factor: float, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class 0 on the unit circle, class 1 on a circle of radius `factor` inside it."""
    y = balanced_labels(n, 2)
    angle = rng.uniform(0.0, 2 * np.pi, n)
    radius = np.where(y == 0, 1.0, factor)
    return _polar(radius, angle) + _jitter(rng, n, noise, 1.0 - factor), y


def moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (the usual 'moons' picture); their tips are 0.5 from the other moon."""
    y = balanced_labels(n, 2)
    angle = rng.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    lower = np.stack([1.0 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    x = np.where((y == 0)[:, None], upper, lower)
    return x + _jitter(rng, n, noise, 0.5), y


def xor(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Four quadrant squares: class 0 where x1 and x2 have the same sign, class 1 where they differ."""
    y = balanced_labels(n, 2)
    sign1 = rng.choice([-1.0, 1.0], size=n)
    sign2 = np.where(y == 0, sign1, -sign1)
    magnitude = rng.uniform(XOR_MARGIN, 1.0, size=(n, 2))
    x = magnitude * np.stack([sign1, sign2], axis=1)
    return x + _jitter(rng, n, noise, 2 * XOR_MARGIN), y


def blobs(n: int, centers: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs centred evenly on the unit circle (fixed places, so only data_seed moves points)."""
    y = balanced_labels(n, centers)
    centre = _polar(np.ones(n), 2 * np.pi * y / centers)
    gap = 2 * np.sin(np.pi / centers)  # distance between neighbouring centres
    return centre + _jitter(rng, n, noise, gap), y
