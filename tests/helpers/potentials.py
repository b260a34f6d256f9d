"""Water-like CG potentials of both three-body variants and random bead boxes (potential and
export tests)."""

from __future__ import annotations

import math

import numpy as np

from advcg.potential import AngleTableThreeBody, CGPotential, PairSpline, SWThreeBody

DENSITY = 0.03334  # beads / Å³ (water at ~1 g/cm³)


def random_box(n: int, min_distance: float, seed: int) -> tuple[np.ndarray, float]:
    """Random sequential insertion of ``n`` beads at water density with a minimum distance."""
    rng = np.random.default_rng(seed)
    length = (n / DENSITY) ** (1.0 / 3.0)
    x = np.empty((n, 3))
    count = 0
    while count < n:
        trial = rng.uniform(0.0, length, 3)
        d = x[:count] - trial
        d -= length * np.round(d / length)
        if count == 0 or (d * d).sum(1).min() >= min_distance ** 2:
            x[count] = trial
            count += 1
    return x, length


def water_like_pair() -> PairSpline:
    """A smooth water-like pair potential (LJ core + a well at 4.5 Å, tapered from 7 Å)."""
    r = np.linspace(2.3, 10.0, 500)
    taper = np.where(r < 7.0, 1.0, np.cos(0.5 * np.pi * (r - 7.0) / 3.0) ** 2)
    phi = (1.4 * ((2.9 / r) ** 12 - (2.9 / r) ** 6) - 0.6 * np.exp(-(r - 4.5) ** 2 / 0.3)) * taper
    return PairSpline.fit(r, phi)


def model(variant: str, pair: PairSpline | None = None) -> CGPotential:
    """The water-like pair with an ``sw`` or a two-peaked ``sw/angle/table`` three-body term."""
    pair = pair if pair is not None else water_like_pair()
    if variant == "sw":
        return CGPotential(pair, SWThreeBody(strength=12.0, cos_theta0=-0.3))
    theta = np.linspace(0.0, math.pi, 181)
    g = 8.0 * (np.cos(theta) + 0.3) ** 2 + 1.5 * np.exp(-(theta - 1.0) ** 2 / 0.05)
    return CGPotential(pair, AngleTableThreeBody.fit(theta, g))
