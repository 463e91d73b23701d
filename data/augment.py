"""Augmentation of raw landmarks, for the train split only, seeded per sample and draw.

It works on what a feature file holds, [T, 1629] raw landmarks with NaN where MediaPipe found
nothing, *before* the temporal block and imputation are computed from them, so velocities,
imputed positions and normalization all describe the augmented motion (data/dataset.py:
load -> augment -> temporal -> impute -> normalize). NaN stays NaN: nothing here invents a
landmark the source did not have, except `hand_dropout`, which removes some on purpose.

Augmentations, applied in this order, each with its own probability `p`:

  speed         time resampling by a factor in [min, max] (1.2 = 20% faster, fewer frames);
                linear between two frames where both have the landmark, else the nearer frame
  frame_drop    each frame dropped with probability `rate`
  mirror        x -> 1 - x with every left landmark swapped with its right twin (hands, pose
                pairs and the face mesh's symmetric pairs, data/layout.py: MIRROR_COLUMNS):
                a left-handed signer becomes a right-handed one
  affine        rotation (+-rotate_deg), shear (+-shear) and scale (1 +- scale, with an
                aspect change of half that) of x/y about the body centre (shoulder midpoint,
                as the body normalization finds it); z scaled with the isotropic part. An
                isotropic scale alone would be undone by the body normalization (it divides by
                the shoulder width), the aspect change is not
  jitter        Gaussian noise of std `sigma` (image units) on every present coordinate
  hand_dropout  one hand (left or right at random) set to NaN for a stretch of up to
                `max_fraction` of the frames

Shortening never makes a sample too short for CTC: `speed` and `frame_drop` keep at least
`min_frames` frames (the dataset passes FRAMES_PER_TOKEN frames per target token and adjacent
repeat; a sample already shorter than that is not shortened at all).

A configuration (TrainConfig.augment, TOML/JSON) maps names to a probability (default strengths)
or to a table of parameters; `recipe` starts from a named recipe, the other keys override it:

    augment = { mirror = 0.5, affine = { p = 0.8, rotate_deg = 10 }, jitter = 0.5 }
    augment = { recipe = "default", hand_dropout = 0 }
"""
from __future__ import annotations

import copy
import math

import numpy as np

from data.layout import COORDS, FEATURE_DIM, LAYOUT, MIRROR_COLUMNS, RAW_DIM
from data.normalize import _body_frame
from data.profile import HAND_LEAD, sample_leading_hand

ORDER = ("speed", "frame_drop", "mirror", "affine", "jitter", "hand_dropout")
# default strength of each augmentation; `p` is the probability it is applied to a sample
PARAMETERS = {
    "speed": {"p": 0.5, "min": 0.8, "max": 1.2},
    "frame_drop": {"p": 0.5, "rate": 0.1},
    "mirror": {"p": 0.5},
    "affine": {"p": 0.5, "rotate_deg": 10.0, "shear": 0.1, "scale": 0.1},
    "jitter": {"p": 0.5, "sigma": 0.003},
    "hand_dropout": {"p": 0.3, "max_fraction": 0.3},
}
# Named recipes. "default" (what TrainConfig trains with unless `augment` says otherwise) is the
# row benchmarks/signers.py measured best on unseen signers: mirror alone beat no augmentation,
# each other augmentation alone and all of them together (the README's table); "all" turns every
# augmentation on at its default strength.
RECIPES = {
    "none": {},
    "all": {name: dict(PARAMETERS[name]) for name in ORDER},
    "default": {"mirror": {"p": 0.5}},
}
# Frames a target token needs: the default model's total temporal stride (model/i3d.py,
# TEMPORAL_STRIDE = 4), so shortening keeps CTC feasible for it.
FRAMES_PER_TOKEN = 4


def parse_augment(spec) -> dict[str, dict]:
    """A configuration's `augment` value -> {name: {"p": ..., parameters}} for the augmentations
    with p > 0, in ORDER. Raises ValueError naming an unknown augmentation, parameter or recipe,
    or a value out of range."""
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise ValueError(f"augment={spec!r}: expected a table of augmentations, e.g. {{mirror = 0.5, jitter = 0.5}} or {{recipe = 'default'}}")
    spec = dict(spec)
    recipe = spec.pop("recipe", None)
    if recipe is not None and recipe not in RECIPES:
        raise ValueError(f"augment recipe {recipe!r} unknown; use one of {sorted(RECIPES)}")
    merged = copy.deepcopy(RECIPES[recipe]) if recipe else {}
    unknown = sorted(set(spec) - set(ORDER))
    if unknown:
        raise ValueError(f"augment: unknown augmentation(s) {unknown}; known: {list(ORDER)} (and 'recipe')")
    for name, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, dict)):
            raise ValueError(f"augment.{name}={value!r}: give a probability (0..1) or a table such as {PARAMETERS[name]}")
        if isinstance(value, (int, float)):
            value = {"p": float(value)}
        bad = sorted(set(value) - set(PARAMETERS[name]))
        if bad:
            raise ValueError(f"augment.{name}: unknown parameter(s) {bad}; known: {sorted(PARAMETERS[name])}")
        merged[name] = {**merged.get(name, {}), **value}
    out = {}
    for name in ORDER:
        if name not in merged:
            continue
        params = {**PARAMETERS[name], **merged[name]}
        try:
            params = {k: float(v) for k, v in params.items()}
        except (TypeError, ValueError):
            raise ValueError(f"augment.{name}={merged[name]!r}: every parameter must be a number") from None
        _check_range(name, params)
        if params["p"] > 0:
            out[name] = params
    return out


def _check_range(name: str, params: dict) -> None:
    problems = []
    if not 0 <= params["p"] <= 1:
        problems.append(f"p={params['p']} (a probability, 0..1)")
    if name == "speed" and not 0 < params["min"] <= params["max"]:
        problems.append(f"min={params['min']}, max={params['max']} (need 0 < min <= max)")
    if name == "frame_drop" and not 0 <= params["rate"] < 1:
        problems.append(f"rate={params['rate']} (0 <= rate < 1)")
    if name == "affine" and (params["rotate_deg"] < 0 or params["shear"] < 0 or not 0 <= params["scale"] < 1):
        problems.append(f"rotate_deg={params['rotate_deg']}, shear={params['shear']}, scale={params['scale']} (non-negative; scale < 1)")
    if name == "jitter" and params["sigma"] < 0:
        problems.append(f"sigma={params['sigma']} (>= 0)")
    if name == "hand_dropout" and not 0 <= params["max_fraction"] <= 1:
        problems.append(f"max_fraction={params['max_fraction']} (0..1)")
    if problems:
        raise ValueError(f"augment.{name}: " + "; ".join(problems))


# ---------------------------------------------------------------------------- the augmentations
# Each takes raw [T, 1629] float32 (NaN = missing) and returns a new array; none changes its input.


def mirror(raw: np.ndarray) -> np.ndarray:
    """Horizontal mirror: x -> 1 - x and every left landmark swapped with its right twin."""
    out = np.array(raw[:, MIRROR_COLUMNS], dtype=np.float32)
    out[:, 0::COORDS] = 1.0 - out[:, 0::COORDS]
    return out


LEAD_HANDS = ("left_hand", "right_hand")


def lead_canonical(raw: np.ndarray, lead_hand: str, hand_lead: float = HAND_LEAD) -> np.ndarray:
    """The sample with `lead_hand` leading it: mirror(raw) when the other hand leads it (moves
    `hand_lead` x as much, or alone: data/profile.py: sample_leading_hand), else raw unchanged
    (also when neither hand leads). Deterministic, so training and evaluation agree; a mirrored
    [T, 6516] file comes back as its [T, 1629] raw block (its temporal block is recomputed)."""
    if lead_hand not in LEAD_HANDS:
        raise ValueError(f"lead_hand={lead_hand!r}: use one of {LEAD_HANDS}")
    led = sample_leading_hand(raw, hand_lead)
    if led is None or led == lead_hand:
        return raw
    return mirror(np.asarray(raw[:, :RAW_DIM], dtype=np.float32))


# The mirror of model-ready features ([T, 6516]: the raw block, then velocity, acceleration and
# displacement of it): column j of a mirrored frame is column FEATURE_MIRROR_COLUMNS[j] of the
# original, times FEATURE_MIRROR_SIGN[j] (-1 on every x column, raw and temporal: x -> 1 - x is a
# sign flip about the body centre, and of every difference of x).
FEATURE_MIRROR_COLUMNS = np.concatenate([MIRROR_COLUMNS + block * RAW_DIM for block in range(FEATURE_DIM // RAW_DIM)])
FEATURE_MIRROR_SIGN = np.where(np.arange(FEATURE_DIM) % COORDS == 0, -1.0, 1.0).astype(np.float32)


def mirror_features(feats: np.ndarray, columns: np.ndarray, sign: np.ndarray, fill_columns=None, fill_value: float = 0.0) -> np.ndarray:
    """Mirror body-normalized model-ready features directly: a new [T, C] float32 array whose column
    j is sign[j] * feats[:, columns[j]], with `fill_columns` set to `fill_value`.

    What the dataset's cache serves for the default recipe (mirror alone; body normalization, ffill
    imputation): the same values as mirror() on the raw landmarks followed by the temporal block,
    imputation and normalization, up to float32 rounding (tests/test_trainer_speed.py). `columns`
    and `sign` are FEATURE_MIRROR_COLUMNS / _SIGN restricted to the selected modalities; the fill
    columns are the x columns of landmarks never seen in the sample, which imputation sets to 0 in
    image units before the body normalization centres them (a value no sign flip gives).
    """
    out = np.asarray(feats, dtype=np.float32)[:, columns]
    out *= sign
    if fill_columns is not None and len(fill_columns):
        out[:, fill_columns] = fill_value
    return out


def body_centre(raw: np.ndarray) -> np.ndarray:
    """(x, y) the affine map turns about: the shoulder midpoint (median over frames), else (0.5, 0.5)."""
    centre, _ = _body_frame(raw)
    return np.asarray(centre, dtype=np.float64)


def affine(raw: np.ndarray, matrix: np.ndarray, centre=None, z_scale: float = 1.0) -> np.ndarray:
    """x/y of every landmark -> centre + matrix @ (xy - centre); z times z_scale. matrix [2, 2]."""
    centre = body_centre(raw) if centre is None else np.asarray(centre, dtype=np.float64)
    pts = np.array(raw, dtype=np.float32).reshape(raw.shape[0], -1, COORDS)
    xy = pts[..., :2].astype(np.float64) - centre
    pts[..., :2] = (xy @ np.asarray(matrix, dtype=np.float64).T + centre).astype(np.float32)
    pts[..., 2] *= np.float32(z_scale)
    return pts.reshape(raw.shape[0], RAW_DIM)


def affine_matrix(rotate_deg: float = 0.0, shear: float = 0.0, scale_x: float = 1.0, scale_y: float = 1.0) -> np.ndarray:
    """Rotation @ shear (x += shear * y) @ diag(scale_x, scale_y)."""
    t = math.radians(rotate_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([scale_x, scale_y])


def resample(raw: np.ndarray, frames: int) -> np.ndarray:
    """The sequence resampled to `frames` frames spanning the same first..last frame.

    A landmark is interpolated linearly between two source frames where both have it, and taken
    from the nearer source frame otherwise (so a missing landmark stays missing, never half-made).
    """
    t = raw.shape[0]
    frames = max(1, int(frames))
    if frames == t:
        return np.array(raw, dtype=np.float32)
    pos = np.linspace(0.0, t - 1, frames) if frames > 1 else np.zeros(1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, t - 1)
    w = (pos - i0).astype(np.float32)[:, None]
    x0, x1 = raw[i0], raw[i1]
    linear = (1 - w) * x0 + w * x1
    nearest = np.where(w < 0.5, x0, x1)
    return np.where(np.isnan(linear), nearest, linear).astype(np.float32)


def drop_frames(raw: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.array(raw[np.asarray(keep, dtype=bool)], dtype=np.float32)


def hand_dropout(raw: np.ndarray, hand: str, start: int, length: int) -> np.ndarray:
    out = np.array(raw, dtype=np.float32)
    out[start : start + length, LAYOUT[hand]] = np.nan
    return out


def jitter(raw: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return (np.asarray(raw, dtype=np.float32) + noise.astype(np.float32)).astype(np.float32)


# ---------------------------------------------------------------------------- the pipeline


class Augmenter:
    """Draws and applies the configured augmentations to one sample's raw landmarks.

    `augmenter(raw, rng, min_frames)` -> new [T', 1629] float32; deterministic given the rng.
    """

    def __init__(self, spec):
        self.spec = parse_augment(spec)  # idempotent: a parsed spec parses to itself

    def __bool__(self) -> bool:
        return bool(self.spec)

    @property
    def mirror_only(self) -> bool:
        """Whether mirror is the only configured augmentation (the default recipe): a sample then
        has two possible outputs, itself and its mirror image (what the dataset's cache serves)."""
        return set(self.spec) == {"mirror"}

    def plan(self, rng: np.random.Generator) -> list[tuple[str, np.random.Generator]]:
        """The augmentations that fire for this draw, in ORDER, each with the generator that draws
        its parameters: what __call__ applies, decided without touching any landmark."""
        # one generator per augmentation, drawn whether it is configured or not, so turning one
        # augmentation on or off does not reshuffle the random draws of the others
        keys = rng.integers(0, 2**63, size=len(ORDER))
        fired = []
        for name, key in zip(ORDER, keys):
            params = self.spec.get(name)
            if params is None:
                continue
            own = np.random.default_rng(int(key))
            if own.random() < params["p"]:
                fired.append((name, own))
        return fired

    def __call__(self, raw: np.ndarray, rng: np.random.Generator, min_frames: int = 1) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float32)
        if raw.ndim != 2 or raw.shape[1] != RAW_DIM:
            raise ValueError(f"augmentation expects [T, {RAW_DIM}] raw landmarks, got shape {raw.shape}")
        # never shorter than min_frames, and never shorter at all if the sample already is
        floor = min(int(min_frames), raw.shape[0])
        out = raw
        for name, own in self.plan(rng):
            out = getattr(self, f"_{name}")(out, own, self.spec[name], floor)
        return out

    @staticmethod
    def _speed(raw, rng, params, floor):
        factor = rng.uniform(params["min"], params["max"])
        frames = max(floor, int(round(raw.shape[0] / factor)), 1)
        return resample(raw, frames)

    @staticmethod
    def _frame_drop(raw, rng, params, floor):
        t = raw.shape[0]
        keep = rng.random(t) >= params["rate"]
        short = floor - int(keep.sum())
        if short > 0:  # put back randomly chosen dropped frames until the floor is met
            dropped = np.flatnonzero(~keep)
            keep[rng.choice(dropped, size=short, replace=False)] = True
        return drop_frames(raw, keep) if keep.any() else raw

    @staticmethod
    def _mirror(raw, rng, params, floor):
        return mirror(raw)

    @staticmethod
    def _affine(raw, rng, params, floor):
        s = params["scale"]
        size = rng.uniform(1 - s, 1 + s)
        aspect = rng.uniform(1 - s / 2, 1 + s / 2)
        matrix = affine_matrix(
            rotate_deg=rng.uniform(-params["rotate_deg"], params["rotate_deg"]),
            shear=rng.uniform(-params["shear"], params["shear"]),
            scale_x=size * aspect,
            scale_y=size / aspect,
        )
        return affine(raw, matrix, z_scale=size)

    @staticmethod
    def _jitter(raw, rng, params, floor):
        return jitter(raw, rng.normal(0.0, params["sigma"], size=raw.shape))

    @staticmethod
    def _hand_dropout(raw, rng, params, floor):
        t = raw.shape[0]
        hand = "left_hand" if rng.random() < 0.5 else "right_hand"
        longest = max(1, int(round(params["max_fraction"] * t)))
        length = int(rng.integers(1, longest + 1))
        start = int(rng.integers(0, t - length + 1))
        return hand_dropout(raw, hand, start, length)


def sample_rng(seed: int, draw: int, index: int) -> np.random.Generator:
    """The generator of one sample's augmentation: a function of (seed, draw or epoch, index) only,
    so a run is reproducible and every epoch sees a new draw."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(draw), int(index), 0xA06]))


def min_frames_for(targets: int, repeats: int, frames_per_token: int = FRAMES_PER_TOKEN) -> int:
    """Frames a sample needs for CTC at `frames_per_token`: one output frame per target and per adjacent repeat."""
    return frames_per_token * (int(targets) + int(repeats))
