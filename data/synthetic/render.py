"""One signed sentence as raw landmarks: gloss motions strung with transitions, posed and put into the image.

A sentence strings its glosses with interpolated transitions, starting and ending at rest, with a
per-occurrence time warp, size and place jitter, and the signer's body, placement and style; the
elbows follow the wrists by two-bone inverse kinematics, the face moves with head rotation, mouth
opening, brow raise and blinks; sensor jitter goes on every landmark, and hands drop out
(data/synthetic/dropout.py).
"""
from __future__ import annotations

import numpy as np

from data.layout import N_HAND, N_POSE, RAW_DIM
from data.synthetic.dropout import drop_out
from data.synthetic.glosses import GLOSS_FRAMES, GLOSS_FUNCS
from data.synthetic.signers import Signer
from data.synthetic.skeleton import (
    DOWN,
    EARS,
    FACE_GROUPS,
    FACE_MESH,
    FACE_WIDTH,
    FWD,
    HAND_SIZE,
    HAND_Z_GAIN,
    HANDSHAPES,
    HEAD_CENTER,
    IN,
    POSE_FROM_FACE,
    POSE_Z_GAIN,
    READY,
    REST,
    SHOULDER_Z,
    hand_points,
    unit,
)

FPS = 25


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
    return _state(where + rng.normal(0, 0.02, 3), HANDSHAPES["relaxed"], unit(DOWN + 0.3 * FWD), IN)


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
        if np.dot(unit(a[sl]), unit(b[sl])) < -0.5:
            out[:, sl] += np.sin(np.pi * s) * 1.5 * unit(np.cross(pivot, a[sl]))
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
        n = int(np.clip(round(GLOSS_FRAMES[g] * signer.speed * rng.uniform(0.8, 1.25)), 8, 20))
        u = _time_warp(rng, n)
        m = GLOSS_FUNCS[g](u)
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
    u = unit(wrist - shoulder)
    a = (upper**2 - fore**2 + d**2) / (2 * d)
    h = np.sqrt(np.maximum(upper**2 - a**2, 0.0))
    perp = unit(pole - np.sum(pole * u, axis=1, keepdims=True) * u)
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
    pts = FACE_MESH.copy()
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
    face[:, FACE_GROUPS["lower_lip"], 1] += 0.07 * ch["mouth"][:, None]
    face[:, FACE_GROUPS["upper_lip"], 1] -= 0.01 * ch["mouth"][:, None]
    face[:, FACE_GROUPS["jaw"], 1] += 0.06 * ch["mouth"][:, None] * FACE_GROUPS["jaw_w"][None]
    face[:, FACE_GROUPS["brows"], 1] -= 0.045 * ch["brow"][:, None]
    blink = np.zeros(T)
    for b in np.flatnonzero(rng.random(T) < 1.0 / (3.5 * fps)):  # a blink every ~3.5 s, 3 frames long
        blink[b : b + 3] = np.maximum(blink[b : b + 3], np.array([0.6, 1.0, 0.5])[: len(blink[b : b + 3])])
    up, lo = FACE_GROUPS["upper_lids"], FACE_GROUPS["lower_lids"]
    face[:, up, 1] += blink[:, None] * (face[:, lo, 1] - face[:, up, 1]) * 0.9
    pivot = np.array([0.0, 0.6, 0.7])  # the neck, behind and below the nose (face widths)
    ears = np.repeat(EARS[None], T, axis=0)
    face_rot = _rotate(rot, face - pivot) + pivot
    ears_rot = _rotate(rot, ears - pivot) + pivot
    head_body = HEAD_CENTER + fw * face_rot  # body frame
    for p, ids in POSE_FROM_FACE.items():
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

    drop_out(out, hands, signer, rng)
    return out.reshape(T, RAW_DIM).astype(np.float32), segments
