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

# ---------------------------------------------------------------------------- left/right mirror pairs
# A horizontal mirror (x -> 1 - x) turns a left-handed signer into a right-handed one only if
# every left landmark also trades places with its right twin. The pairs are defined here once;
# data/augment.py's mirror and anything else that flips uses MIRROR_LANDMARKS.

# MediaPipe Pose: 0 nose is on the midline, every other landmark has a twin
# (eyes 1-3 / 4-6, ears 7/8, mouth 9/10, shoulders 11/12 ... feet 31/32).
POSE_MIRROR_PAIRS = (
    (1, 4), (2, 5), (3, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
    (17, 18), (19, 20), (21, 22), (23, 24), (25, 26), (27, 28), (29, 30), (31, 32),
)
# Hands: the left-hand block and the right-hand block trade places landmark for landmark (both
# use the same 21-point hand topology, wrist 0 ... pinky tip 20).
# Face mesh (468 points): the face is mirrored too, not left as it is, so that after a flip the
# face still sits where the mirrored body puts it and its left eye is still an eye on the left.
# MediaPipe's canonical face model (mediapipe/modules/face_geometry/data/canonical_face_model.obj)
# is exactly symmetric and ordered so that the twins follow from one list: the 28 points on the
# midline (x = 0) are their own mirror; the other 220 of the first 248 points, in index order,
# are mirrored by points 248..467 in index order (33 <-> 263 eye corners, 61 <-> 291 mouth
# corners, 234 <-> 454 cheeks). tests/test_augment.py checks it against MediaPipe's own
# FACEMESH_* connection sets (left eye/brow onto right, lips and face oval onto themselves).
FACE_MIDLINE = (0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 94, 151, 152, 164, 168, 175, 195, 197, 199, 200)
_FACE_FIRST_HALF = 248


def _face_mirror() -> np.ndarray:
    perm = np.arange(N_FACE)
    left = [i for i in range(_FACE_FIRST_HALF) if i not in set(FACE_MIDLINE)]
    assert len(left) == N_FACE - _FACE_FIRST_HALF
    for k, i in enumerate(left):
        perm[i], perm[_FACE_FIRST_HALF + k] = _FACE_FIRST_HALF + k, i
    return perm


def _mirror_landmarks() -> np.ndarray:
    """Permutation of the 543 raw landmarks: landmark j of a mirrored frame is landmark perm[j] of the original."""
    pose = np.arange(N_POSE)
    for a, b in POSE_MIRROR_PAIRS:
        pose[a], pose[b] = b, a
    left, right = N_POSE, N_POSE + N_HAND
    hands = np.concatenate([np.arange(right, right + N_HAND), np.arange(left, left + N_HAND)])
    face = N_POSE + 2 * N_HAND + _face_mirror()
    perm = np.concatenate([pose, hands, face])
    assert np.array_equal(perm[perm], np.arange(perm.size)), "a mirror must be its own inverse"
    return perm


MIRROR_LANDMARKS = _mirror_landmarks()  # [543] landmark permutation (an involution)
# the same permutation over the 1629 raw columns (x, y, z of each landmark stay together)
MIRROR_COLUMNS = (MIRROR_LANDMARKS[:, None] * COORDS + np.arange(COORDS)).reshape(-1)


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
LANDMARK_BLOCKS = tuple(name for name, _, _ in LAYOUT.landmark_blocks)  # ('pose', 'left_hand', 'right_hand', 'face')
# Modalities the model fuses, in input order: "all" of them read the 6516 features. "temporal" is
# the derived block over all landmarks.
MODALITIES = ("pose", "hands", "face", "temporal")
# "motion": the temporal block of the pose and hand landmarks alone (velocity, acceleration and
# displacement of 75 landmarks, 675 features; the face mesh's 4212 left out), in place of "temporal"
MOTION_LANDMARKS = slice(0, LAYOUT.hands.stop)  # raw columns of the pose and both hands
KNOWN_MODALITIES = MODALITIES + ("motion",)


def parse_modalities(modalities) -> tuple[str, ...]:
    """Normalise a modality selection ("pose,hands", ["face"], None -> all) to layout order."""
    if modalities is None or modalities == "all" or list(modalities) == ["all"]:
        return MODALITIES
    if isinstance(modalities, str):
        modalities = [m for m in modalities.replace(",", " ").split() if m]
    chosen = set(modalities)
    unknown = chosen - set(KNOWN_MODALITIES)
    if unknown or not chosen:
        raise ValueError(f"modalities must be a non-empty subset of {KNOWN_MODALITIES} (or all), got {sorted(modalities)}")
    if {"temporal", "motion"} <= chosen:
        raise ValueError("modalities: motion is the pose and hand part of temporal; choose one of them")
    return tuple(m for m in KNOWN_MODALITIES if m in chosen)


def _columns(modality: str) -> np.ndarray:
    if modality == "motion":
        return np.concatenate([RAW_DIM * (1 + k) + np.arange(MOTION_LANDMARKS.start, MOTION_LANDMARKS.stop) for k in range(len(TEMPORAL_SETS))])
    return np.arange(LAYOUT[modality].start, LAYOUT[modality].stop)


def modality_columns(modalities=None) -> np.ndarray:
    """Column indices into the 6516-wide frame for the chosen modalities, in layout order."""
    return np.concatenate([_columns(m) for m in parse_modalities(modalities)])


def modality_widths(modalities=None) -> dict[str, int]:
    return {m: len(_columns(m)) for m in parse_modalities(modalities)}


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
