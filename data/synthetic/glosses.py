"""The demo vocabulary: each gloss a wrist trajectory, handshape and palm orientation, plus non-manuals.

A gloss maps its phase u in [0, 1] (array [n]) to tracks of the dominant hand "D" and, for
two-handed signs, the non-dominant hand "N": (wrist position [n, 3], handshape [n, 8], finger
direction [n, 3], palm normal [n, 3]) in the lateral frame of data/synthetic/skeleton.py, plus
non-manual channels in [0, 1]: mouth opening, brow raise, head nod, head shake (signed).
"""
from __future__ import annotations

import numpy as np

from data.synthetic.skeleton import BACK, DOWN, FWD, HANDSHAPES, IN, UP, unit

GLOSSES = ("HELLO", "THANKYOU", "YES", "NO", "WHERE", "HOUSE", "WANT", "GO", "WHAT", "NAME", "BIG", "DRINK")


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
    f = _keys(u, [0, 1], [UP, unit(UP + FWD)])
    n = _keys(u, [0, 1], [BACK, unit(UP + BACK)])
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
    f = _keys(u, [0, 0.45, 0.55, 1], [unit(IN + UP), unit(IN + UP), UP, UP])
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
    f = _keys(u, [0, 0.7, 1], [UP, UP, unit(UP + IN)])
    return {"D": (pos, _shape(u, "C"), f, _const(u, IN)), "mouth": np.clip((u - 0.6) * 2.5, 0, 1)}


GLOSS_FUNCS = {
    "HELLO": _g_hello, "THANKYOU": _g_thankyou, "YES": _g_yes, "NO": _g_no, "WHERE": _g_where,
    "HOUSE": _g_house, "WANT": _g_want, "GO": _g_go, "WHAT": _g_what, "NAME": _g_name, "BIG": _g_big,
    "DRINK": _g_drink,
}
# Typical duration in frames at 25 fps (each occurrence is warped to 8-20 frames).
GLOSS_FRAMES = {"HELLO": 12, "THANKYOU": 13, "YES": 14, "NO": 14, "WHERE": 16, "HOUSE": 16, "WANT": 13,
                 "GO": 12, "WHAT": 14, "NAME": 14, "BIG": 12, "DRINK": 14}
assert tuple(GLOSS_FUNCS) == GLOSSES


def gloss_motion(gloss: str, n: int = 16) -> dict:
    """The canonical (unwarped, unjittered) motion of one gloss sampled at n phases.

    Returns {"D": (pos, shape, fdir, ndir), "N": same or None, "mouth", "brow", "nod", "shake": [n]}
    with float64 arrays in the lateral body frame (shoulder widths, origin shoulder midpoint).
    """
    if gloss not in GLOSS_FUNCS:
        raise KeyError(f"unknown demo gloss {gloss!r}; the demo vocabulary is {GLOSSES}")
    u = np.linspace(0.0, 1.0, n)
    m = GLOSS_FUNCS[gloss](u)
    zero = np.zeros(n)
    return {"D": m["D"], "N": m.get("N"), **{k: np.asarray(m.get(k, zero), dtype=float) for k in ("mouth", "brow", "nod", "shake")}}
