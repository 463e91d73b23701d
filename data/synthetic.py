"""The embedded demo corpus: synthetic MediaPipe Holistic landmark sequences of signed sentences.

`generate_corpus(out_dir, ...)` writes a corpus in the format of data/corpus.py: `manifest.csv`
(id, split, glosses, path, signer, fps, plus `segments`, the frame range of each gloss) and one
`features/<id>.npy` a sentence, float32 [T, 1629] raw landmarks in data/layout.py order (pose 33,
left hand 21, right hand 21, face 468; x, y, z consecutive; NaN for all three coordinates of a
landmark MediaPipe would not have detected). `demo_corpus()` generates the default corpus once into
a cache directory and returns it; train.py and the harness use it when no corpus is given.

How a sentence is made (all lengths in "body units", 1 = the signer's shoulder width):
- a body skeleton (33 pose landmarks) placed in the image by a per-signer scale and position, the
  hips near the bottom edge and the legs below the frame, as in upper-body signing videos;
- a 468-point face cloud on a half-ellipsoid with MediaPipe's key indices (face oval, eyes, brows,
  lips, nose tip) at their places, moved by head rotation, mouth opening, brow raise and blinks;
- two 21-joint hands (wrist, four joints a finger) built by forward kinematics from a handshape
  (finger curls, spread, thumb pose) and a palm orientation, attached to the pose wrists; the
  elbows follow by two-bone inverse kinematics;
- each gloss is a wrist trajectory of one or both hands plus handshape and orientation (GLOSSES);
  a sentence strings 2-4 glosses with interpolated transitions, starting and ending at rest, with a
  per-occurrence time warp, size and place jitter, and per-signer body, placement and style;
- sensor jitter on every landmark, and hands that drop out in runs of frames (a two-state Markov
  chain whose loss rate rises when the hand is low/at rest, out of frame, far out or fast), with
  rates calibrated against the Kaggle ASL Signs landmarks in shared/data (see MEASURED_KAGGLE_MISSING).

Coordinates follow MediaPipe: x, y normalised to the image (0..1, y down); pose z relative to the
hip midpoint (MediaPipe's exaggerated pose depth, about 5x metric, as in the Kaggle data); hand z
relative to the wrist; face z relative to the face, both in units of image width.

Everything is a pure function of the seed and the size parameters: the same call writes the same
bytes. Run `python -m data.synthetic --out DIR [--seed S] [--size small|default|N]`.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from data.corpus import (
    MANIFEST,
    CorpusError,
    SampleRecord,
    atomic_save_npy,
    atomic_write_text,
    write_manifest,
)
from data.layout import LAYOUT, N_FACE, N_HAND, N_POSE, RAW_DIM

GENERATOR_VERSION = "1.0"
DEMO_META = "demo.json"
DEMO_DIR_NAME = "demo_corpus_v1"
FPS = 25

GLOSSES = ("HELLO", "THANKYOU", "YES", "NO", "WHERE", "HOUSE", "WANT", "GO", "WHAT", "NAME", "BIG", "DRINK")

SIZES = {
    "small": {"n_train": 24, "n_dev": 6, "n_test": 6},
    "default": {"n_train": 240, "n_dev": 40, "n_test": 40},
}

# ============================================================================ geometry constants
# Body frame: origin at the shoulder midpoint, x to image right (the signer's left), y down,
# z towards the camera negative; unit = shoulder width. A hand's "lateral" frame mirrors x so that
# +x points outward on that hand's own side: the same gloss definition serves both hands and both
# handednesses.

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


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def hand_points(shape: np.ndarray, fdir: np.ndarray, ndir: np.ndarray) -> np.ndarray:
    """Hand joints relative to the wrist, in hand units and the hand's lateral frame.

    shape [T, 8] handshape vectors; fdir [T, 3] finger direction; ndir [T, 3] palm normal (the
    direction the palm faces; re-orthogonalised to fdir). Returns float64 [T, 21, 3] in MediaPipe
    hand order: 0 wrist, 1-4 thumb (CMC, MCP, IP, tip), then index, middle, ring, pinky (MCP, PIP,
    DIP, tip).
    """
    f = _unit(fdir)
    n = _unit(ndir - np.sum(ndir * f, axis=-1, keepdims=True) * f)
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
    along = _unit(np.cos(opp) * (np.sin(abd) * t + np.cos(abd) * f) + np.sin(opp) * n)
    across = _unit(-t + 0.5 * n)
    across = _unit(across - np.sum(across * along, axis=-1, keepdims=True) * along)
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


_FACE, _FACE_GROUPS = face_template()
# Pose head points from the face: pose id -> face ids averaged.
_POSE_FROM_FACE = {0: (1,), 1: (362,), 2: (386, 374), 3: (263,), 4: (133,), 5: (159, 145), 6: (33,), 9: (291,), 10: (61,)}
_EARS = np.array([[0.42, -0.05, 0.1], [-0.42, -0.05, 0.1]])  # pose 7 (left ear), 8 (right ear), face widths

# ============================================================================ glosses
# A gloss maps its phase u in [0, 1] (array [n]) to tracks of the dominant hand "D" and, for
# two-handed signs, the non-dominant hand "N": (wrist position [n, 3], handshape [n, 8], finger
# direction [n, 3], palm normal [n, 3]) in the lateral frame, plus non-manual channels in [0, 1]:
# mouth opening, brow raise, head nod, head shake (signed).


def _keys(u: np.ndarray, knots, values) -> np.ndarray:
    """Piecewise-linear path through keyframes: values [k, d] at phases knots [k] -> [n, d]."""
    values = np.asarray(values, dtype=float)
    return np.stack([np.interp(u, knots, values[:, d]) for d in range(values.shape[1])], axis=1)


def _const(u: np.ndarray, v) -> np.ndarray:
    return np.broadcast_to(np.asarray(v, dtype=float), (len(u), len(v))).copy()


def _shape(u, name):
    return _const(u, HANDSHAPES[name])


def _g_hello(u):
    pos = _keys(u, [0, 1], [[0.25, -0.5, -0.3], [0.6, -0.45, -0.55]])
    return {"D": (pos, _shape(u, "flat"), _const(u, UP), _const(u, FWD)), "mouth": 0.3 * np.sin(np.pi * u)}


def _g_thankyou(u):
    pos = _keys(u, [0, 0.5, 1], [[0.05, -0.2, -0.3], [0.12, -0.02, -0.6], [0.22, 0.2, -0.85]])
    f = _keys(u, [0, 1], [UP, _unit(UP + FWD)])
    n = _keys(u, [0, 1], [BACK, _unit(UP + BACK)])
    return {"D": (pos, _shape(u, "flat"), f, n), "mouth": 0.4 * np.sin(np.pi * u)}


def _g_yes(u):
    pos = _const(u, [0.28, 0.4, -0.55])
    pos[:, 1] += 0.1 * np.sin(4 * np.pi * u)
    return {"D": (pos, _shape(u, "fist"), _const(u, UP), _const(u, IN)), "nod": np.sin(4 * np.pi * u)}


def _g_no(u):
    pos = _const(u, [0.18, 0.15, -0.6])
    pos[:, 0] += 0.14 * np.sin(4 * np.pi * u)
    return {"D": (pos, _shape(u, "index"), _const(u, UP), _const(u, FWD)), "shake": np.sin(4 * np.pi * u)}


def _g_where(u):
    ang = 2 * np.pi * u + np.pi / 2
    pos = _const(u, [0.38, -0.2, -0.6])
    pos[:, 0] += 0.13 * np.cos(ang)
    pos[:, 1] += 0.13 * np.sin(ang)
    return {"D": (pos, _shape(u, "index"), _const(u, UP), _const(u, FWD)), "brow": np.minimum(1.0, 3 * u)}


def _g_house(u):
    pos = _keys(u, [0, 0.5, 1], [[0.06, -0.45, -0.6], [0.32, -0.12, -0.6], [0.32, 0.3, -0.6]])
    f = _keys(u, [0, 0.45, 0.55, 1], [_unit(IN + UP), _unit(IN + UP), UP, UP])
    track = (pos, _shape(u, "flat"), f, _const(u, IN))
    return {"D": track, "N": track}


def _g_want(u):
    pos = _keys(u, [0, 1], [[0.35, 0.25, -1.0], [0.25, 0.45, -0.35]])
    shape = _keys(u, [0, 1], [HANDSHAPES["claw"], HANDSHAPES["C"]])
    track = (pos, shape, _const(u, FWD), _const(u, UP))
    return {"D": track, "N": track}


def _g_go(u):
    pos = _keys(u, [0, 0.5, 1], [[0.12, 0.05, -0.35], [0.3, -0.15, -0.8], [0.42, 0.0, -1.1]])
    f = _keys(u, [0, 1], [UP, FWD])
    n = _keys(u, [0, 1], [FWD, DOWN])
    track = (pos, _shape(u, "index"), f, n)
    return {"D": track, "N": track}


def _g_what(u):
    pos = _const(u, [0.35, 0.6, -0.55])
    pos[:, 0] += 0.08 * np.sin(4 * np.pi * u)
    track = (pos, _shape(u, "open5"), _const(u, FWD), _const(u, UP))
    return {"D": track, "N": track, "brow": np.ones_like(u)}


def _g_name(u):
    pos = _const(u, [0.02, 0.18, -0.62])
    pos[:, 1] += 0.08 * np.abs(np.sin(2 * np.pi * u))  # two taps onto the other hand
    dom = (pos, _shape(u, "V"), _const(u, IN), _const(u, DOWN))
    base = (_const(u, [0.08, 0.3, -0.6]), _shape(u, "V"), _const(u, IN), _const(u, BACK))
    return {"D": dom, "N": base}


def _g_big(u):
    pos = _keys(u, [0, 1], [[0.1, 0.2, -0.6], [0.55, 0.2, -0.6]])
    track = (pos, _shape(u, "L"), _const(u, UP), _const(u, IN))
    return {"D": track, "N": track, "mouth": 0.6 * np.sin(np.pi * u)}


def _g_drink(u):
    pos = _keys(u, [0, 0.7, 1], [[0.22, 0.35, -0.6], [0.06, -0.15, -0.4], [0.06, -0.2, -0.35]])
    f = _keys(u, [0, 0.7, 1], [UP, UP, _unit(UP + IN)])
    return {"D": (pos, _shape(u, "C"), f, _const(u, IN)), "mouth": np.clip((u - 0.6) * 2.5, 0, 1)}


_GLOSS_FUNCS = {
    "HELLO": _g_hello, "THANKYOU": _g_thankyou, "YES": _g_yes, "NO": _g_no, "WHERE": _g_where,
    "HOUSE": _g_house, "WANT": _g_want, "GO": _g_go, "WHAT": _g_what, "NAME": _g_name, "BIG": _g_big,
    "DRINK": _g_drink,
}
# Typical duration in frames at 25 fps (each occurrence is warped to 8-20 frames).
_GLOSS_FRAMES = {"HELLO": 12, "THANKYOU": 13, "YES": 14, "NO": 14, "WHERE": 16, "HOUSE": 16, "WANT": 13,
                 "GO": 12, "WHAT": 14, "NAME": 14, "BIG": 12, "DRINK": 14}
assert tuple(_GLOSS_FUNCS) == GLOSSES


def gloss_motion(gloss: str, n: int = 16) -> dict:
    """The canonical (unwarped, unjittered) motion of one gloss sampled at n phases.

    Returns {"D": (pos, shape, fdir, ndir), "N": same or None, "mouth", "brow", "nod", "shake": [n]}
    with float64 arrays in the lateral body frame (shoulder widths, origin shoulder midpoint).
    """
    if gloss not in _GLOSS_FUNCS:
        raise KeyError(f"unknown demo gloss {gloss!r}; the demo vocabulary is {GLOSSES}")
    u = np.linspace(0.0, 1.0, n)
    m = _GLOSS_FUNCS[gloss](u)
    zero = np.zeros(n)
    return {"D": m["D"], "N": m.get("N"), **{k: np.asarray(m.get(k, zero), dtype=float) for k in ("mouth", "brow", "nod", "shake")}}


# ============================================================================ signers


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


# ============================================================================ sentence rendering


def _smoothstep(x: np.ndarray) -> np.ndarray:
    return x * x * (3.0 - 2.0 * x)


def _smooth_noise(rng: np.random.Generator, T: int, dims: int, scale: float, fps: float) -> np.ndarray:
    """Slow random wander [T, dims]: three sinusoids a dimension at 0.15-0.8 Hz, std ~ scale."""
    t = np.arange(T)[:, None, None] / fps
    freq = rng.uniform(0.15, 0.8, size=(1, dims, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(1, dims, 3))
    amp = rng.uniform(0.5, 1.0, size=(1, dims, 3))
    return scale * np.sum(amp * np.sin(2 * np.pi * freq * t + phase), axis=2) / np.sqrt(np.sum(amp**2 / 2, axis=2))


def _time_warp(rng: np.random.Generator, n: int) -> np.ndarray:
    """Monotone phase [n] from 0 to 1 with a random ease and speed profile."""
    tau = np.linspace(0.0, 1.0, n)
    ease = rng.uniform(0.0, 0.8)
    gamma = np.exp(rng.uniform(np.log(0.75), np.log(1.33)))
    return ((1 - ease) * tau + ease * _smoothstep(tau)) ** gamma


class _Track:
    """Per-frame state of one hand: wrist [3], handshape [8], finger dir [3], palm normal [3]."""

    def __init__(self):
        self.parts: list[np.ndarray] = []

    def add(self, pos, shape, f, n):
        self.parts.append(np.concatenate([pos, shape, f, n], axis=1))

    def last(self) -> np.ndarray:
        return self.parts[-1][-1]

    def array(self) -> np.ndarray:
        return np.concatenate(self.parts, axis=0)


def _state(pos, shape, f, n) -> np.ndarray:
    return np.concatenate([np.asarray(pos, float), np.asarray(shape, float), np.asarray(f, float), np.asarray(n, float)])


def _rest_state(rng, where: np.ndarray) -> np.ndarray:
    return _state(where + rng.normal(0, 0.02, 3), HANDSHAPES["relaxed"], _unit(DOWN + 0.3 * FWD), IN)


def _transition(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """n frames strictly between states a and b, eased, with the wrist lifted on an arc."""
    if n <= 0:
        return np.zeros((0, a.shape[0]))
    s = _smoothstep(np.arange(1, n + 1) / (n + 1))[:, None]
    out = (1 - s) * a + s * b
    dist = np.linalg.norm(b[:3] - a[:3])
    out[:, 1] -= 0.08 * dist * np.sin(np.pi * s[:, 0])  # movement epenthesis arcs slightly upwards
    # Opposite directions would interpolate through zero: turn them about a perpendicular axis
    # instead (a palm that turns over rotates about the finger axis, as the forearm does).
    fa, na = a[11:14], a[14:17]
    for sl, pivot in ((slice(11, 14), na), (slice(14, 17), fa)):
        if np.dot(_unit(a[sl]), _unit(b[sl])) < -0.5:
            out[:, sl] += np.sin(np.pi * s) * 1.5 * _unit(np.cross(pivot, a[sl]))
    return out


def _plan_sentence(glosses, signer: Signer, rng: np.random.Generator):
    """Per-frame hand tracks and non-manual channels for one sentence.

    Returns (dom [T, 17], nondom [T, 17], channels {mouth, brow, nod, shake: [T]}, segments
    [(start, end)] per gloss, end exclusive).
    """
    dom, non = _Track(), _Track()
    chans = {k: [] for k in ("mouth", "brow", "nod", "shake")}
    idle = REST if signer.idle_low else READY
    motions = []
    for g in glosses:
        n = int(np.clip(round(_GLOSS_FRAMES[g] * signer.speed * rng.uniform(0.8, 1.25)), 8, 20))
        u = _time_warp(rng, n)
        m = _GLOSS_FUNCS[g](u)
        amp = signer.amplitude * rng.uniform(0.88, 1.12)
        shift = np.asarray(signer.style) + rng.normal(0, 0.025, 3)
        shape_jit = rng.normal(0, 0.04, 8)
        tracks = {}
        for hand in ("D", "N"):
            if m.get(hand) is None:
                continue
            pos, shape, f, nd = (np.array(a, dtype=float) for a in m[hand])
            centre = pos.mean(axis=0)
            pos = centre + amp * (pos - centre) + shift
            tracks[hand] = (pos, np.clip(shape + shape_jit, 0.0, 1.6), f, nd)
        motions.append((g, n, tracks, m))

    def hold(track: _Track, state: np.ndarray, n: int):
        track.parts.append(np.repeat(state[None], n, axis=0) + np.concatenate([rng.normal(0, 0.004, (n, 3)), np.zeros((n, 14))], axis=1))

    def push_chan(n, m=None):
        for k, parts in chans.items():
            parts.append(np.asarray(m[k], float) if m is not None and k in m else np.zeros(n))

    # Lead-in: both hands rest, then rise into the first sign.
    n0 = int(rng.integers(2, 7))
    hold(dom, _rest_state(rng, REST), n0)
    hold(non, _rest_state(rng, idle), n0)
    push_chan(n0)
    t = n0
    segments = []
    two_handed = ["N" in tr for _, _, tr, _ in motions]
    for k, (g, n, tracks, m) in enumerate(motions):
        n_tr = int(rng.integers(5, 9)) if k == 0 else int(rng.integers(3, 7))
        start_d = _state(*(a[0] for a in tracks["D"]))
        if "N" in tracks:
            start_n = _state(*(a[0] for a in tracks["N"]))
        else:
            # Between two two-handed signs the other hand waits in front instead of dropping.
            keep_up = k > 0 and two_handed[k - 1] and k + 1 < len(motions) and two_handed[k + 1]
            start_n = _rest_state(rng, READY if keep_up else idle)
        dom.parts.append(_transition(dom.last(), start_d, n_tr))
        non.parts.append(_transition(non.last(), start_n, n_tr))
        push_chan(n_tr)
        t += n_tr
        dom.add(*tracks["D"])
        if "N" in tracks:
            non.add(*tracks["N"])
        else:
            hold(non, start_n, n)
        push_chan(n, m)
        segments.append((t, t + n))
        t += n
    # Lead-out: back to rest.
    n_tr, n1 = int(rng.integers(5, 9)), int(rng.integers(2, 7))
    end_d, end_n = _rest_state(rng, REST), _rest_state(rng, idle)
    dom.parts.append(_transition(dom.last(), end_d, n_tr))
    non.parts.append(_transition(non.last(), end_n, n_tr))
    hold(dom, end_d, n1)
    hold(non, end_n, n1)
    push_chan(n_tr + n1)
    channels = {k: np.concatenate(v) for k, v in chans.items()}
    # Mouthing and brows are smoothed a little: faces do not switch instantly.
    kernel = np.array([0.25, 0.5, 0.25])
    for k in ("mouth", "brow"):
        channels[k] = np.convolve(np.pad(channels[k], 1, mode="edge"), kernel, mode="valid")
    return dom.array(), non.array(), channels, segments


def _arm_ik(shoulder: np.ndarray, wrist: np.ndarray, upper: float, fore: float, pole: np.ndarray):
    """Elbow [T, 3] of a two-bone arm reaching wrist [T, 3] from shoulder [3]; wrist clamped to reach."""
    d_vec = wrist - shoulder
    d = np.linalg.norm(d_vec, axis=1, keepdims=True)
    reach = 0.98 * (upper + fore)
    wrist = np.where(d > reach, shoulder + d_vec * (reach / np.maximum(d, 1e-9)), wrist)
    d = np.minimum(d, reach)
    u = _unit(wrist - shoulder)
    a = (upper**2 - fore**2 + d**2) / (2 * d)
    h = np.sqrt(np.maximum(upper**2 - a**2, 0.0))
    perp = _unit(pole - np.sum(pole * u, axis=1, keepdims=True) * u)
    return shoulder + a * u + h * perp, wrist


def _rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """[T, 3, 3] rotations (radians; yaw about y, pitch about x, roll about z)."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1), np.stack([-sy, zero, cy], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1), np.stack([zero, sp, cp], -1)], -2)
    rz = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1), np.stack([zero, zero, one], -1)], -2)
    return rz @ ry @ rx


def _rotate(rot: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Rotate points [T, n, 3] by rotations [T, 3, 3] (elementwise: batched 3x3 matmul is slow)."""
    return np.stack([sum(rot[:, None, i, j] * pts[..., j] for j in range(3)) for i in range(3)], axis=-1)


def _signer_face(signer: Signer) -> np.ndarray:
    """The face template with a small fixed per-signer shape difference, face widths [468, 3]."""
    rng = np.random.default_rng([signer.mesh_seed, 7002])
    pts = _FACE.copy()
    pts[:, :2] *= rng.uniform(0.95, 1.05, size=2)
    return pts + rng.normal(0, 0.006, pts.shape)


def render_sentence(glosses, signer: Signer, rng: np.random.Generator, fps: float = FPS):
    """One signed sentence as raw landmarks.

    Returns (features float32 [T, 1629] with NaN for undetected landmarks, segments [(start, end)]
    frame range of each gloss, end exclusive).
    """
    dom, non, ch, segments = _plan_sentence(glosses, signer, rng)
    T = dom.shape[0]
    side_dom = 1.0 if signer.left_handed else -1.0  # x sign of the dominant hand's lateral frame
    # Whole-body sway and breathing, in body units.
    sway = _smooth_noise(rng, T, 3, 0.012, fps) * np.array([1.0, 0.5, 1.0])

    pose = np.zeros((T, N_POSE, 3))  # body frame, metric-like z
    hands = {}
    for side, track in ((side_dom, dom), (-side_dom, non)):
        mirror = np.array([side, 1.0, 1.0])
        wrist_lat = track[:, :3]
        shoulder_lat = np.array([0.5, 0.0, SHOULDER_Z])
        elbow_lat, wrist_lat = _arm_ik(shoulder_lat, wrist_lat, 0.72 * signer.arm, 0.66 * signer.arm,
                                       np.array([[0.5, 1.0, 0.35]]))
        hand_lat = hand_points(track[:, 3:11], track[:, 11:14], track[:, 14:17]) * (HAND_SIZE * signer.hand)
        hand_body = (wrist_lat[:, None, :] + hand_lat) * mirror
        left = side > 0  # the signer's left arm is on the image right (+x)
        ids = (11, 13, 15, 17, 19, 21) if left else (12, 14, 16, 18, 20, 22)
        pose[:, ids[0]] = shoulder_lat * mirror
        pose[:, ids[1]] = elbow_lat * mirror
        pose[:, ids[2]] = hand_body[:, 0]
        pose[:, ids[3]] = hand_body[:, 17]  # pose "pinky" ~ pinky knuckle
        pose[:, ids[4]] = hand_body[:, 5]  # pose "index" ~ index knuckle
        pose[:, ids[5]] = hand_body[:, 2]  # pose "thumb" ~ thumb MCP
        hands["left" if left else "right"] = hand_body

    # Hips and legs: MediaPipe still estimates them below the frame edge.
    hip_y = 1.3 * signer.torso
    for lm, (x, y, z) in {23: (0.36, hip_y, 0.0), 25: (0.34, hip_y + 0.85, 0.02), 27: (0.35, hip_y + 1.63, 0.3),
                          29: (0.36, hip_y + 1.75, 0.32), 31: (0.3, hip_y + 1.83, 0.05)}.items():
        pose[:, lm] = (x, y, z)
        pose[:, lm + 1] = (-x, y, z)
    pose[:, 23:] += rng.normal(0, 0.01, (1, 10, 3))  # a fixed per-sentence guess of the hidden legs

    # Head: slow wander plus nods and shakes that go with YES / NO.
    wander = _smooth_noise(rng, T, 3, 0.03, fps)
    yaw = wander[:, 0] + 0.12 * ch["shake"]
    pitch = wander[:, 1] + 0.1 * ch["nod"] - 0.05 * ch["brow"]
    roll = wander[:, 2] * 0.7
    rot = _rotation(yaw, pitch, roll)
    fw = FACE_WIDTH * signer.face
    face = np.repeat(_signer_face(signer)[None], T, axis=0)
    face[:, _FACE_GROUPS["lower_lip"], 1] += 0.07 * ch["mouth"][:, None]
    face[:, _FACE_GROUPS["upper_lip"], 1] -= 0.01 * ch["mouth"][:, None]
    face[:, _FACE_GROUPS["jaw"], 1] += 0.06 * ch["mouth"][:, None] * _FACE_GROUPS["jaw_w"][None]
    face[:, _FACE_GROUPS["brows"], 1] -= 0.045 * ch["brow"][:, None]
    blink = np.zeros(T)
    for b in np.flatnonzero(rng.random(T) < 1.0 / (3.5 * fps)):  # a blink every ~3.5 s, 3 frames long
        blink[b : b + 3] = np.maximum(blink[b : b + 3], np.array([0.6, 1.0, 0.5])[: len(blink[b : b + 3])])
    up, lo = _FACE_GROUPS["upper_lids"], _FACE_GROUPS["lower_lids"]
    face[:, up, 1] += blink[:, None] * (face[:, lo, 1] - face[:, up, 1]) * 0.9
    pivot = np.array([0.0, 0.6, 0.7])  # the neck, behind and below the nose (face widths)
    ears = np.repeat(_EARS[None], T, axis=0)
    face_rot = _rotate(rot, face - pivot) + pivot
    ears_rot = _rotate(rot, ears - pivot) + pivot
    head_body = HEAD_CENTER + fw * face_rot  # body frame
    for p, ids in _POSE_FROM_FACE.items():
        pose[:, p] = head_body[:, list(ids)].mean(axis=1)
    pose[:, 7], pose[:, 8] = HEAD_CENTER + fw * ears_rot[:, 0], HEAD_CENTER + fw * ears_rot[:, 1]

    # To image coordinates.
    s, origin = signer.scale, np.array([signer.cx, signer.cy])
    out = np.full((T, RAW_DIM // 3, 3), np.nan)

    def body_xy(p):
        return origin + s * (p[..., :2] + sway[:, None, :2])

    hip_mid_z = (pose[:, 23, 2] + pose[:, 24, 2]) / 2
    out[:, :N_POSE, :2] = body_xy(pose)
    out[:, :N_POSE, 2] = POSE_Z_GAIN * s * (pose[..., 2] + sway[:, None, 2] - hip_mid_z[:, None])
    first = {"left": N_POSE, "right": N_POSE + N_HAND}
    for name, hb in hands.items():
        o = first[name]
        out[:, o : o + N_HAND, :2] = body_xy(hb)
        out[:, o : o + N_HAND, 2] = HAND_Z_GAIN * s * (hb[..., 2] - hb[:, :1, 2])
    fo = N_POSE + 2 * N_HAND
    out[:, fo:, :2] = body_xy(head_body)
    out[:, fo:, 2] = s * fw * (face_rot[..., 2] - face_rot[:, 1:2, 2] - 0.28)  # MediaPipe: nose tip ~ -0.28 fw

    # Sensor noise: per-landmark jitter plus a common per-part shift (detector box jitter).
    sd = np.full(out.shape[1:], 0.003)
    sd[23:N_POSE, :2] = 0.008  # the guessed legs wobble more
    sd[fo:, :2] = 0.0015
    sd[N_POSE:, 2] = 0.004
    sd[:N_POSE, 2] = 0.02 * s / 0.35  # MediaPipe pose depth is noisy
    out += rng.standard_normal(out.shape, dtype=np.float32) * sd.astype(np.float32)
    for a, b, sd in ((N_POSE, N_POSE + N_HAND, 0.002), (N_POSE + N_HAND, fo, 0.002), (fo, out.shape[1], 0.001)):
        out[:, a:b, :2] += rng.normal(0, sd, (T, 1, 2))
    out[:, N_POSE, 2] = 0.0  # MediaPipe hand z is relative to the wrist
    out[:, N_POSE + N_HAND, 2] = 0.0

    _drop_out(out, hands, signer, rng)
    return out.reshape(T, RAW_DIM).astype(np.float32), segments


# ============================================================================ detection dropouts
# Measured on shared/data/kaggle_asl_signs (42 sequences, 612 frames, 21 signers): pose missing
# 0.0%, face 0.5%, left hand 68.0%, right hand 60.0%; per sequence the dominant hand is missing
# in 26% of frames (median 17%), the other hand (resting, these two signs are one-handed) in 100%.
# Missing runs last 6-7 frames (median), up to 29; missing rate by wrist height between
# shoulders (0) and hips (1): 17% above 0.3, 84% at 0.3-0.6, 98% at 0.6-0.9, 100% below.
MEASURED_KAGGLE_MISSING = {"pose": 0.0, "face": 0.005, "left_hand": 0.68, "right_hand": 0.60,
                           "dominant_hand": 0.26, "non_dominant_hand": 1.0}


def _drop_out(out: np.ndarray, hands: dict, signer: Signer, rng: np.random.Generator) -> None:
    """Blank (NaN) whole hands and, rarely, the face in runs of frames, in place.

    out [T, 543, 3] image coordinates; hands {'left'/'right': [T, 21, 3] body frame}. A two-state
    chain a hand: lose with 0.02 k + 0.8 d (k the signer's detection difficulty), recover with
    0.35 (1 - d)^2, where the difficulty d in [0, 1] rises with a low wrist (resting), a hand out
    of the frame, far out or fast; a hand over the face also hides the face now and then.
    """
    T = out.shape[0]
    fo = N_POSE + 2 * N_HAND
    face_hit = np.zeros(T, dtype=bool)
    for name, hb in hands.items():
        o = N_POSE if name == "left" else N_POSE + N_HAND
        wrist = hb[:, 0]
        img = out[:, o : o + N_HAND, :2]
        d_low = np.clip((wrist[:, 1] - 0.6) / 0.6, 0.0, 1.0)  # waist height and below: resting, often lost
        outside = np.mean((img < 0.0) | (img > 1.0), axis=(1, 2)) * 2
        d_out = np.clip(outside, 0.0, 1.0)
        d_far = np.clip((np.linalg.norm(wrist - np.array([0.0, 0.3, 0.0]), axis=1) - 1.1) / 0.5, 0.0, 0.5)
        speed = np.r_[0.0, np.linalg.norm(np.diff(wrist, axis=0), axis=1)]
        d_fast = np.clip((speed - 0.12) / 0.2, 0.0, 0.5)  # motion blur
        d = 1 - (1 - d_low) * (1 - d_out) * (1 - d_far) * (1 - d_fast)
        p_lose = np.clip(0.02 * signer.detect + 0.8 * d, 0.0, 1.0)
        p_back = 0.35 * (1 - d) ** 2
        miss = np.zeros(T, dtype=bool)
        r = rng.random(T)
        state = r[0] < p_lose[0] / max(p_lose[0] + p_back[0], 1e-9)
        for t in range(T):
            if t:
                state = (r[t] >= p_back[t]) if state else (r[t] < p_lose[t])
            miss[t] = state
        miss |= d_out >= 1.0
        out[miss, o : o + N_HAND] = np.nan
        near_face = np.linalg.norm(wrist[:, :2] - HEAD_CENTER[:2], axis=1) < 0.3
        face_hit |= near_face & ~miss
    p_face = np.where(face_hit, 0.04, 0.003)
    r = rng.random(T)
    state = False
    for t in range(T):
        state = (r[t] >= 0.5) if state else (r[t] < p_face[t])
        if state:
            out[t, fo:] = np.nan


def missing_fractions(arrays, left_handed=None) -> dict[str, float]:
    """Fraction of frames with a whole part missing, over [T, 1629] arrays (all three coords NaN).

    With left_handed (one bool an array) also 'dominant_hand' and 'non_dominant_hand'.
    """
    counts = {k: 0 for k in ("pose", "face", "left_hand", "right_hand", "dominant_hand", "non_dominant_hand")}
    frames = 0
    for i, a in enumerate(arrays):
        parts = {}
        for name in ("pose", "left_hand", "right_hand", "face"):
            block = np.asarray(a[:, LAYOUT[name]]).reshape(a.shape[0], -1, 3)
            parts[name] = np.isnan(block).all(axis=(1, 2))
            counts[name] += int(parts[name].sum())
        if left_handed is not None:
            dom, non = ("left_hand", "right_hand") if left_handed[i] else ("right_hand", "left_hand")
            counts["dominant_hand"] += int(parts[dom].sum())
            counts["non_dominant_hand"] += int(parts[non].sum())
        frames += a.shape[0]
    keys = counts if left_handed is not None else ("pose", "face", "left_hand", "right_hand")
    return {k: counts[k] / max(frames, 1) for k in keys}


# ============================================================================ corpus


def _sample_sequences(rng, n: int, vocab, lo: int, hi: int, required=()) -> list[tuple[str, ...]]:
    """n gloss sequences of lo..hi glosses, no gloss twice in a row; `required` glosses go first."""
    todo = list(required)
    seqs = []
    for _ in range(n):
        length = int(rng.integers(lo, hi + 1))
        seq: list[str] = []
        while len(seq) < length:
            if todo and (not seq or todo[-1] != seq[-1]):
                seq.append(todo.pop())
                continue
            choices = [g for g in vocab if not seq or g != seq[-1]] or list(vocab)  # a one-gloss vocabulary must repeat
            seq.append(choices[int(rng.integers(len(choices)))])
        seqs.append(tuple(seq))
    return seqs


def _plan_corpus(params: dict):
    """[(id, split, glosses, signer)] for the whole corpus and the signer list."""
    seed = params["seed"]
    n_seen, n_unseen = params["n_signers"], params["n_unseen_signers"]
    signers = make_signers(seed, n_seen + n_unseen)
    seen, unseen = signers[:n_seen], signers[n_seen:]
    rng = np.random.default_rng([seed, 7003])
    lo, hi = params["min_glosses"], params["max_glosses"]
    required = [GLOSSES[i] for i in rng.permutation(len(GLOSSES))]
    train = _sample_sequences(rng, params["n_train"], GLOSSES, lo, hi, required)
    in_train = tuple(g for g in GLOSSES if any(g in s for s in train))  # dev/test never leave it
    plan = []
    for split, seqs in (("train", train),
                        ("dev", _sample_sequences(rng, params["n_dev"], in_train, lo, hi)),
                        ("test", _sample_sequences(rng, params["n_test"], in_train, lo, hi))):
        order = rng.permutation(len(seen))
        for i, seq in enumerate(seqs):
            # Half of the test set (rounded up) comes from signers never seen in training.
            if split == "test" and unseen and i < (len(seqs) + 1) // 2:
                who = unseen[i % len(unseen)]
            else:
                who = seen[order[i % len(seen)]]
            plan.append((f"demo-{split}-{i:04d}", split, seq, who))
    return plan, signers


def _params(seed, n_train, n_dev, n_test, min_glosses, max_glosses, n_signers, n_unseen_signers, fps) -> dict:
    checks = {"n_train": (n_train, 1), "n_dev": (n_dev, 0), "n_test": (n_test, 0), "min_glosses": (min_glosses, 1),
              "n_signers": (n_signers, 1), "n_unseen_signers": (n_unseen_signers, 0)}
    for name, (value, least) in checks.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
            raise ValueError(f"generate_corpus: {name} must be an integer >= {least}, got {value!r}")
    if not isinstance(max_glosses, (int, np.integer)) or max_glosses < min_glosses:
        raise ValueError(f"generate_corpus: max_glosses must be an integer >= min_glosses ({min_glosses}), got {max_glosses!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"generate_corpus: seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise ValueError(f"generate_corpus: fps must be a positive number, got {fps!r}")
    return {"seed": int(seed), "n_train": int(n_train), "n_dev": int(n_dev), "n_test": int(n_test),
            "min_glosses": int(min_glosses), "max_glosses": int(max_glosses), "n_signers": int(n_signers),
            "n_unseen_signers": int(n_unseen_signers), "fps": float(fps)}


def _read_meta(out: Path) -> dict | None:
    try:
        return json.loads((out / DEMO_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _source_digest() -> str:
    """Hash of this file: any edit of the generator invalidates corpora it wrote before."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _is_current(out: Path, params: dict) -> bool:
    """True if out holds a complete corpus made by this generator (version and source) with these parameters."""
    meta = _read_meta(out)
    if not meta or meta.get("params") != params:
        return False
    if meta.get("version") != GENERATOR_VERSION or meta.get("source") != _source_digest():
        return False
    if not (out / MANIFEST).is_file():
        return False
    return all((out / "features" / f"{sid}.npy").is_file() for sid, *_ in _plan_corpus(params)[0])


@contextlib.contextmanager
def _lock(out: Path):
    """Exclusive lock on out/.demo.lock, so parallel test workers generate a corpus only once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking (atomic writes still keep files whole)
        yield
        return
    with open(out / ".demo.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def generate_corpus(out_dir, seed: int = 0, n_train: int = 240, n_dev: int = 40, n_test: int = 40,
                    min_glosses: int = 2, max_glosses: int = 4, n_signers: int = 6, n_unseen_signers: int = 1,
                    fps: float = FPS, force: bool = False) -> Path:
    """Write the demo corpus into out_dir and return it as a Path.

    Train/dev sentences come from n_signers signers; half of the test sentences (rounded up) from
    n_unseen_signers further signers never seen in training. Every gloss of dev/test occurs in train.
    A directory that already holds the corpus of the same generator (version and source hash) and
    parameters, as recorded in its demo.json, is left as it is unless force=True. Features are written first, demo.json and the
    manifest last, all atomically, so an interrupted run is simply regenerated next time. A
    directory holding some other corpus (a manifest but no demo.json) is refused.
    """
    params = _params(seed, n_train, n_dev, n_test, min_glosses, max_glosses, n_signers, n_unseen_signers, fps)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out}: exists and is not a directory; pass a directory for the demo corpus")
    out.mkdir(parents=True, exist_ok=True)
    with _lock(out):
        if not force and _is_current(out, params):
            return out
        if (out / MANIFEST).exists() and _read_meta(out) is None:
            raise CorpusError(f"{out}: holds a corpus that the demo generator did not write (no {DEMO_META}); "
                              "choose an empty or new directory for the demo corpus")
        for name in (MANIFEST, DEMO_META):  # invalidate first: a crash below leaves no stale 'complete' corpus
            (out / name).unlink(missing_ok=True)
        plan, signers = _plan_corpus(params)
        records, arrays, lefties = [], [], []
        for i, (sid, split, seq, who) in enumerate(plan):
            rng = np.random.default_rng([params["seed"], 7004, i])
            feats, segments = render_sentence(seq, who, rng, fps=params["fps"])
            rel = f"features/{sid}.npy"
            atomic_save_npy(out / rel, feats)
            arrays.append(feats)
            lefties.append(who.left_handed)
            records.append(SampleRecord(sid, split, seq, rel, signer=who.name, fps=params["fps"],
                                        extra={"segments": " ".join(f"{a}-{b}" for a, b in segments)}))
        keep = {f"{sid}.npy" for sid, *_ in plan}
        for stale in (out / "features").glob("demo-*.npy"):  # left over from other sizes
            if stale.name not in keep:
                stale.unlink(missing_ok=True)
        lengths = [a.shape[0] for a in arrays]
        meta = {
            "version": GENERATOR_VERSION,
            "source": _source_digest(),
            "params": params,
            "glosses": list(GLOSSES),
            "signers": [asdict(s) for s in signers],
            "stats": {
                "samples": len(records),
                "frames": {"min": int(min(lengths)), "mean": float(np.mean(lengths)), "max": int(max(lengths))},
                "missing": missing_fractions(arrays, lefties),
                "kaggle_missing": MEASURED_KAGGLE_MISSING,
            },
        }
        atomic_write_text(out / DEMO_META, json.dumps(meta, indent=1) + "\n")
        write_manifest(out, records)
    return out


def default_cache_root() -> Path:
    """$CSLR_CACHE if set, else <repo>/.cache."""
    env = os.environ.get("CSLR_CACHE")
    return Path(env) if env else Path(__file__).resolve().parents[1] / ".cache"


def demo_corpus(cache_dir=None) -> Path:
    """The default demo corpus, generated on first use into <cache>/demo_corpus_v1.

    cache_dir defaults to $CSLR_CACHE, else <repo>/.cache. Later calls return at once.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    return generate_corpus(root / DEMO_DIR_NAME, seed=0, **SIZES["default"])


# ============================================================================ CLI


def _size(text: str) -> dict:
    if text in SIZES:
        return dict(SIZES[text])
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be one of {sorted(SIZES)} or a number of train sentences, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--size must be >= 1 train sentence, got {n}")
    return {"n_train": n, "n_dev": max(1, round(n / 6)), "n_test": max(1, round(n / 6))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.synthetic", description="Write the synthetic demo corpus.")
    ap.add_argument("--out", required=True, type=Path, help="corpus directory to write (created if needed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=_size, default=dict(SIZES["default"]),
                    help="small (24/6/6), default (240/40/40) or N train sentences (dev, test = N/6)")
    ap.add_argument("--n-train", type=int)
    ap.add_argument("--n-dev", type=int)
    ap.add_argument("--n-test", type=int)
    ap.add_argument("--min-glosses", type=int, default=2)
    ap.add_argument("--max-glosses", type=int, default=4)
    ap.add_argument("--signers", type=int, default=6, help="signers of train/dev")
    ap.add_argument("--unseen-signers", type=int, default=1, help="extra signers that appear only in test")
    ap.add_argument("--fps", type=float, default=FPS)
    ap.add_argument("--force", action="store_true", help="regenerate even if an identical corpus exists")
    args = ap.parse_args(argv)
    sizes = args.size
    for key in ("n_train", "n_dev", "n_test"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    start = time.perf_counter()
    try:
        out = generate_corpus(args.out, seed=args.seed, min_glosses=args.min_glosses, max_glosses=args.max_glosses,
                              n_signers=args.signers, n_unseen_signers=args.unseen_signers, fps=args.fps,
                              force=args.force, **sizes)
    except (ValueError, CorpusError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = _read_meta(out) or {}
    st = meta.get("stats", {})
    print(f"demo corpus: {out} ({time.perf_counter() - start:.1f} s)")
    if st:
        p = meta["params"]
        print(f"  {p['n_train']}/{p['n_dev']}/{p['n_test']} train/dev/test sentences, {len(GLOSSES)} glosses, "
              f"frames {st['frames']['min']}-{st['frames']['max']} (mean {st['frames']['mean']:.1f})")
        miss = ", ".join(f"{k} {v:.1%}" for k, v in st["missing"].items())
        print(f"  missing frames: {miss}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
