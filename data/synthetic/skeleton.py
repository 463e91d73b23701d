"""Skeleton geometry of the demo signer: body frame, hands by forward kinematics, the face mesh.

Body frame: origin at the shoulder midpoint, x to image right (the signer's left), y down, z
towards the camera negative; unit = shoulder width ("body units"). A hand's "lateral" frame
mirrors x so that +x points outward on that hand's own side: the same gloss definition serves
both hands and both handednesses.
"""
from __future__ import annotations

import numpy as np

from data.layout import N_FACE, N_HAND

POSE_Z_GAIN = 5.0  # MediaPipe pose depth is ~5x metric in the Kaggle data (nose z ~ -2 shoulder widths)
HAND_Z_GAIN = 1.0  # hand z relative to the wrist: Kaggle 5-95% range is -0.42..+0.03 shoulder widths
SHOULDER_Z = -0.1
HEAD_CENTER = np.array([0.0, -0.42, -0.2])  # nose tip position relative to the shoulder midpoint
FACE_WIDTH = 0.54  # face oval width / shoulder width (Kaggle: 0.29 / 0.54)
REST = np.array([0.42, 1.3, -0.12])  # hands hanging by the hips, below the frame edge
READY = np.array([0.3, 0.78, -0.38])  # non-dominant hand held low in front, between two-handed signs

UP, DOWN = np.array([0.0, -1.0, 0.0]), np.array([0.0, 1.0, 0.0])
IN = np.array([-1.0, 0.0, 0.0])  # towards the body midline
FWD, BACK = np.array([0.0, 0.0, -1.0]), np.array([0.0, 0.0, 1.0])

# ============================================================================ hands
# Handshape vector: curl of thumb, index, middle, ring, pinky (0 straight .. 1 fist), finger
# spread, thumb abduction (rad, from the index direction), thumb opposition (rad, towards the palm).
HANDSHAPES = {
    "flat": (0.1, 0.05, 0.05, 0.05, 0.05, 0.1, 0.35, 0.2),
    "open5": (0.0, 0.0, 0.0, 0.0, 0.0, 1.3, 0.9, 0.1),
    "fist": (0.6, 0.95, 0.95, 0.95, 0.95, 0.2, 0.3, 0.5),
    "index": (0.6, 0.0, 0.95, 0.95, 0.95, 0.2, 0.3, 0.5),
    "V": (0.6, 0.0, 0.0, 0.95, 0.95, 1.4, 0.3, 0.5),
    "L": (0.0, 0.0, 0.95, 0.95, 0.95, 0.3, 1.3, 0.0),
    "claw": (0.35, 0.5, 0.5, 0.5, 0.5, 1.2, 0.8, 0.3),
    "C": (0.3, 0.35, 0.35, 0.35, 0.35, 0.2, 0.9, 0.6),
    "relaxed": (0.3, 0.3, 0.35, 0.4, 0.45, 0.4, 0.5, 0.3),
}
# Per finger (index, middle, ring, pinky): MCP position in the palm (thumb-side, finger-direction)
# in hand units (wrist -> middle MCP = 1), base spread direction (rad), bone lengths.
_FINGER_MCP = ((0.28, 0.95), (0.05, 1.0), (-0.16, 0.93), (-0.34, 0.8))
_FINGER_SPREAD = (0.2, 0.05, -0.1, -0.25)
_FINGER_BONES = ((0.42, 0.25, 0.2), (0.46, 0.28, 0.21), (0.43, 0.27, 0.2), (0.34, 0.2, 0.18))
_JOINT_GAIN = (1.4, 1.7, 1.2)  # full curl bends MCP ~80, PIP ~100, DIP ~70 degrees
_THUMB_CMC = (0.22, 0.25)
_THUMB_BONES = (0.32, 0.28, 0.24)
HAND_SIZE = 0.3  # wrist -> middle MCP in shoulder widths (Kaggle: 0.15-0.18 / 0.54)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def hand_points(shape: np.ndarray, fdir: np.ndarray, ndir: np.ndarray) -> np.ndarray:
    """Hand joints relative to the wrist, in hand units and the hand's lateral frame.

    shape [T, 8] handshape vectors; fdir [T, 3] finger direction; ndir [T, 3] palm normal (the
    direction the palm faces; re-orthogonalised to fdir). Returns float64 [T, 21, 3] in MediaPipe
    hand order: 0 wrist, 1-4 thumb (CMC, MCP, IP, tip), then index, middle, ring, pinky (MCP, PIP,
    DIP, tip).
    """
    f = unit(fdir)
    n = unit(ndir - np.sum(ndir * f, axis=-1, keepdims=True) * f)
    t = np.cross(f, n)  # thumb side: outward when the palm faces the camera with fingers up
    T = shape.shape[0]
    out = np.zeros((T, N_HAND, 3))
    curls, spread, abd, opp = shape[:, :5], shape[:, 5:6], shape[:, 6:7], shape[:, 7:8]
    for i, ((bt, bf), s0, bones) in enumerate(zip(_FINGER_MCP, _FINGER_SPREAD, _FINGER_BONES)):
        alpha = s0 * spread
        along = np.sin(alpha) * t + np.cos(alpha) * f
        p = bt * t + bf * f
        k = 5 + 4 * i
        out[:, k] = p
        phi = np.zeros((T, 1))
        for j, (length, gain) in enumerate(zip(bones, _JOINT_GAIN)):
            phi = phi + gain * curls[:, i + 1 : i + 2]
            p = p + length * (np.cos(phi) * along + np.sin(phi) * n)  # fingers curl towards the palm side
            out[:, k + j + 1] = p
    # Thumb: leaves the palm at `abd` from the fingers, lifted `opp` towards the palm side, and
    # curls across the palm.
    along = unit(np.cos(opp) * (np.sin(abd) * t + np.cos(abd) * f) + np.sin(opp) * n)
    across = unit(-t + 0.5 * n)
    across = unit(across - np.sum(across * along, axis=-1, keepdims=True) * along)
    p = _THUMB_CMC[0] * t + _THUMB_CMC[1] * f
    out[:, 1] = p
    phi = np.zeros((T, 1))
    for j, length in enumerate(_THUMB_BONES[:3]):
        if j:
            phi = phi + 0.9 * curls[:, :1]
        p = p + length * (np.cos(phi) * along + np.sin(phi) * across)
        out[:, 2 + j] = p
    return out


# ============================================================================ face
# 468 points in face-width units, nose tip at the origin. MediaPipe's key indices sit at their
# anatomical places (so index-based lip/eye features work); the rest fill the face evenly.
_FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
              152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
_LIPS = {  # (from corner, through the middle, to corner), y offset of the middle, inner?
    "outer_upper": ((61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291), -0.06, False),
    "outer_lower": ((61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291), 0.08, False),
    "inner_upper": ((78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308), -0.015, True),
    "inner_lower": ((78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308), 0.015, True),
}
_EYES = {  # outer corner -> inner corner; side -1 = the signer's right (image left)
    "right_upper": ((33, 246, 161, 160, 159, 158, 157, 173, 133), -1, -1),
    "right_lower": ((33, 7, 163, 144, 145, 153, 154, 155, 133), -1, 1),
    "left_upper": ((263, 466, 388, 387, 386, 385, 384, 398, 362), 1, -1),
    "left_lower": ((263, 249, 390, 373, 374, 380, 381, 382, 362), 1, 1),
}
_BROWS = {  # outer -> inner, lower line then upper line
    -1: ((46, 53, 52, 65, 55), (70, 63, 105, 66, 107)),
    1: ((276, 283, 282, 295, 285), (300, 293, 334, 296, 336)),
}
_NOSE_RIDGE = (1, 4, 5, 195, 197, 6, 168)  # tip upwards
FACE_A, FACE_B = 0.5, 0.49  # half width, half height of the face oval
MOUTH_Y, EYE_Y, BROW_Y = 0.2, -0.17, -0.31


def _face_depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Face z (face widths) on a half-ellipsoid: edges ~+0.45, nose tip ~-0.28 (Kaggle ratios)."""
    r2 = np.clip((x / FACE_A) ** 2 + ((y + 0.02) / FACE_B) ** 2, 0.0, 1.0)
    z = 0.45 - 0.62 * np.sqrt(1.0 - r2)
    z -= 0.12 * np.exp(-(x**2 + (y + 0.06) ** 2) / (2 * 0.05**2))  # nose
    z += 0.04 * np.exp(-((np.abs(x) - 0.21) ** 2 + (y - EYE_Y) ** 2) / (2 * 0.06**2))  # eye sockets
    return z


def face_template() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The fixed face mesh: float64 [468, 3] in face widths (nose tip at 0) and index groups.

    Groups: 'lower_lip', 'upper_lip', 'jaw' (with weights in 'jaw_w'), 'brows', 'upper_lids'
    (with the matching lower lid points in 'lower_lids'), used to animate expressions.
    """
    xy = np.zeros((N_FACE, 2))

    def put(idx, x, y):
        xy[idx] = (x, y)

    # Even fill of the oval first (sunflower spiral), overwritten by the named points below.
    k = np.arange(N_FACE)
    r = np.sqrt((k + 0.5) / N_FACE) * 0.97
    theta = k * np.pi * (3.0 - np.sqrt(5.0))
    xy[:, 0] = FACE_A * r * np.cos(theta)
    xy[:, 1] = FACE_B * r * np.sin(theta) - 0.02
    for i, idx in enumerate(_FACE_OVAL):  # clockwise from the top of the forehead
        ang = -np.pi / 2 + 2 * np.pi * i / len(_FACE_OVAL)
        put(idx, FACE_A * np.cos(ang), FACE_B * np.sin(ang) - 0.02)
    for ids, dy, inner in _LIPS.values():
        half = 0.15 if inner else 0.18
        for i, idx in enumerate(ids):
            s = -1 + 2 * i / (len(ids) - 1)
            put(idx, half * s, MOUTH_Y + dy * (1 - s**2))
    for ids, side, lid in _EYES.values():
        for i, idx in enumerate(ids):
            s = i / (len(ids) - 1)
            put(idx, side * (0.3 - 0.17 * s), EYE_Y + lid * 0.035 * np.sin(np.pi * s))
    for side, (lower, upper) in _BROWS.items():
        for line, dy in ((lower, 0.0), (upper, -0.04)):
            for i, idx in enumerate(line):
                put(idx, side * (0.36 - 0.26 * i / (len(line) - 1)), BROW_Y + dy - 0.02 * np.sin(np.pi * i / 4))
    for i, idx in enumerate(_NOSE_RIDGE):
        put(idx, 0.0, -0.035 * i)
    put(2, 0.0, 0.05)
    put(98, -0.06, 0.04)
    put(327, 0.06, 0.04)
    pts = np.column_stack([xy, _face_depth(xy[:, 0], xy[:, 1])])
    pts[1, 2] -= 0.04  # the nose tip sticks out of the smooth surface
    groups = {
        "lower_lip": np.array(_LIPS["outer_lower"][0][1:-1] + _LIPS["inner_lower"][0][1:-1]),
        "upper_lip": np.array(_LIPS["inner_upper"][0][1:-1]),
        "brows": np.array(sum((lo + up for lo, up in _BROWS.values()), ())),
        "upper_lids": np.array(_EYES["right_upper"][0][1:-1] + _EYES["left_upper"][0][1:-1]),
        "lower_lids": np.array(_EYES["right_lower"][0][1:-1] + _EYES["left_lower"][0][1:-1]),
    }
    below = np.flatnonzero(pts[:, 1] > MOUTH_Y + 0.06)
    groups["jaw"] = below
    groups["jaw_w"] = np.clip((pts[below, 1] - MOUTH_Y) / (FACE_B - MOUTH_Y), 0.0, 1.0)
    return pts, groups


FACE_MESH, FACE_GROUPS = face_template()
# Pose head points from the face: pose id -> face ids averaged.
POSE_FROM_FACE = {0: (1,), 1: (362,), 2: (386, 374), 3: (263,), 4: (133,), 5: (159, 145), 6: (33,), 9: (291,), 10: (61,)}
EARS = np.array([[0.42, -0.05, 0.1], [-0.42, -0.05, 0.1]])  # pose 7 (left ear), 8 (right ear), face widths
