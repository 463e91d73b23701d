"""The demo signers: per-signer body, placement in the frame and signing style, drawn from a seed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Signer:
    """Per-signer body, placement in the frame and signing style."""

    name: str
    left_handed: bool
    scale: float  # shoulder width in image widths
    cx: float  # shoulder midpoint in the image
    cy: float
    arm: float  # arm length factor
    torso: float  # shoulder -> hip length factor
    hand: float  # hand size factor
    face: float  # face size factor
    style: tuple[float, float, float]  # offset of the signing space (shoulder widths)
    amplitude: float  # movement size factor
    speed: float  # duration factor (> 1 slower)
    idle_low: bool  # non-dominant hand idles at rest (True) or held at waist height
    detect: float  # hand-tracking difficulty factor (lighting, contrast)
    mesh_seed: int  # seed of the signer's small face-shape difference


def make_signers(seed: int, n: int) -> list[Signer]:
    """n signers S01.. drawn from the seed; every fourth (S04, S08, ...) is left-handed."""
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, 7001, i])
        out.append(Signer(
            name=f"S{i + 1:02d}",
            left_handed=(i % 4 == 3),
            scale=float(rng.uniform(0.30, 0.40)),
            cx=float(rng.uniform(0.45, 0.55)),
            cy=float(rng.uniform(0.55, 0.62)),
            arm=float(rng.uniform(0.95, 1.05)),
            torso=float(rng.uniform(0.93, 1.07)),
            hand=float(rng.uniform(0.92, 1.08)),
            face=float(rng.uniform(0.94, 1.06)),
            style=tuple(float(v) for v in rng.uniform(-0.05, 0.05, size=3)),
            amplitude=float(rng.uniform(0.9, 1.1)),
            speed=float(rng.uniform(0.85, 1.15)),
            idle_low=bool(rng.random() < 0.6),
            detect=float(rng.uniform(0.6, 1.6)),
            mesh_seed=int(rng.integers(2**31)),
        ))
    return out
