"""The per-frame feature layout: one definition imported by data, model and harness.

A frame is 6516 float features:

    raw block (1629) = pose 33 | left hand 21 | right hand 21 | face 468 landmarks, each (x, y, z)
    temporal block (4887) = velocity | acceleration | displacement, each 1629 wide (see data/temporal.py)

Landmark coordinates are MediaPipe's: x, y normalised to the image (0..1), z relative depth.
"""
from __future__ import annotations

import numpy as np

N_POSE = 33
N_HAND = 21
N_FACE = 468  # no iris refinement (478 with it; the 10 iris points are dropped on import)
COORDS = 3
RAW_DIM = (N_POSE + 2 * N_HAND + N_FACE) * COORDS  # 1629
TEMPORAL_SETS = ("velocity", "acceleration", "displacement")
TEMPORAL_DIM = len(TEMPORAL_SETS) * RAW_DIM  # 4887
FEATURE_DIM = RAW_DIM + TEMPORAL_DIM  # 6516

# Pose landmark ids used for body-centred normalisation (MediaPipe Pose topology).
LEFT_SHOULDER = 11
RIGHT_SHOULDER = 12


class FeatureLayout:
    """Named column slices of the 6516-wide frame (read-only class attributes)."""

    pose = slice(0, 99)
    left_hand = slice(99, 162)
    right_hand = slice(162, 225)
    hands = slice(99, 225)
    face = slice(225, RAW_DIM)
    raw = slice(0, RAW_DIM)
    temporal = slice(RAW_DIM, FEATURE_DIM)

    # landmark blocks inside the raw block, in file order: (name, first landmark column, count)
    @property
    def landmark_blocks(self) -> tuple[tuple[str, slice, int], ...]:
        return (
            ("pose", self.pose, N_POSE),
            ("left_hand", self.left_hand, N_HAND),
            ("right_hand", self.right_hand, N_HAND),
            ("face", self.face, N_FACE),
        )

    def __getitem__(self, name: str) -> slice:
        if name not in MODALITIES + ("left_hand", "right_hand", "raw"):
            raise KeyError(f"unknown feature block {name!r}; known: {MODALITIES + ('left_hand', 'right_hand', 'raw')}")
        return getattr(self, name)


LAYOUT = FeatureLayout()
# Modalities the model fuses, in input order. "temporal" is the derived block over all landmarks.
MODALITIES = ("pose", "hands", "face", "temporal")


def parse_modalities(modalities) -> tuple[str, ...]:
    """Normalise a modality selection ("pose,hands", ["face"], None -> all) to layout order."""
    if modalities is None or modalities == "all":
        return MODALITIES
    if isinstance(modalities, str):
        modalities = [m for m in modalities.replace(",", " ").split() if m]
    chosen = set(modalities)
    unknown = chosen - set(MODALITIES)
    if unknown or not chosen:
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {sorted(modalities)}")
    return tuple(m for m in MODALITIES if m in chosen)


def modality_columns(modalities=None) -> np.ndarray:
    """Column indices into the 6516-wide frame for the chosen modalities, in layout order."""
    return np.concatenate([np.arange(LAYOUT[m].start, LAYOUT[m].stop) for m in parse_modalities(modalities)])


def modality_widths(modalities=None) -> dict[str, int]:
    return {m: LAYOUT[m].stop - LAYOUT[m].start for m in parse_modalities(modalities)}


def input_dim(modalities=None) -> int:
    return sum(modality_widths(modalities).values())


def describe_column(col: int) -> str:
    """Human name of a column of the 6516-wide frame, e.g. 'temporal/velocity/left_hand[4].y'."""
    if not 0 <= col < FEATURE_DIM:
        raise IndexError(f"feature column {col} outside 0..{FEATURE_DIM - 1}")
    prefix = ""
    if col >= RAW_DIM:
        prefix = f"temporal/{TEMPORAL_SETS[(col - RAW_DIM) // RAW_DIM]}/"
        col = (col - RAW_DIM) % RAW_DIM
    for name, block, _ in LAYOUT.landmark_blocks:
        if block.start <= col < block.stop:
            lm, coord = divmod(col - block.start, COORDS)
            return f"{prefix}{name}[{lm}].{'xyz'[coord]}"
    raise AssertionError("unreachable")


def modality_of_column(col: int) -> str:
    if col >= RAW_DIM:
        return "temporal"
    for m in ("pose", "hands", "face"):
        if LAYOUT[m].start <= col < LAYOUT[m].stop:
            return m
    raise IndexError(col)
