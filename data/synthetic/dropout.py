"""Detection dropouts: hands (and, rarely, the face) lost in runs of frames, calibrated on Kaggle ASL Signs."""
from __future__ import annotations

import numpy as np

from data.layout import LANDMARK_BLOCKS, LAYOUT, N_HAND, N_POSE
from data.synthetic.signers import Signer
from data.synthetic.skeleton import HEAD_CENTER

# Measured on shared/data/kaggle_asl_signs (42 sequences, 612 frames, 21 signers): pose missing
# 0.0%, face 0.5%, left hand 68.0%, right hand 60.0%; per sequence the dominant hand is missing
# in 26% of frames (median 17%), the other hand (resting, these two signs are one-handed) in 100%.
# Missing runs last 6-7 frames (median), up to 29; missing rate by wrist height between
# shoulders (0) and hips (1): 17% above 0.3, 84% at 0.3-0.6, 98% at 0.6-0.9, 100% below.
MEASURED_KAGGLE_MISSING = {"pose": 0.0, "face": 0.005, "left_hand": 0.68, "right_hand": 0.60,
                           "dominant_hand": 0.26, "non_dominant_hand": 1.0}


def drop_out(out: np.ndarray, hands: dict, signer: Signer, rng: np.random.Generator) -> None:
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
        for name in LANDMARK_BLOCKS:
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
