"""Imputation and normalization of features: the dataset is their one owner.

Methods (select by name):
  none          features as they are (after imputation)
  global        z-score per column with mean/std of the train split (streaming, see FeatureStats)
  per_sample    z-score per column over the frames of one sample
  per_modality  z-score per sample and per modality block (one mean/std per block)
  body          centre landmark x/y on the shoulder midpoint and divide everything by the
                shoulder width (per sample), as pose-based sign language toolkits do

Every std (and the shoulder width) is floored at `std_floor`, so a constant channel, an
all-missing hand or a one-frame sample can never divide by ~0; a second, absolute `clip`
bounds the output. The harness reports how often either took effect.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.corpus import atomic_write
from data.layout import COORDS, FEATURE_DIM, LAYOUT, LEFT_SHOULDER, MODALITIES, RAW_DIM, RIGHT_SHOULDER

METHODS = ("none", "global", "per_sample", "per_modality", "body")
IMPUTATIONS = ("ffill", "zero")
# Coordinates live in 0..1 and temporal differences are ~1e-3..1e-2 per frame: a std below
# 1e-3 carries no signal, only a division that would blow noise up by > 1000x.
STD_FLOOR = 1e-3
CLIP = 20.0


class DoubleNormalizationError(RuntimeError):
    """Raised when features that were already normalized are normalized again."""


# ---------------------------------------------------------------------------- imputation


def impute(raw: np.ndarray, method: str = "ffill") -> np.ndarray:
    """Replace NaN landmarks in a [T, 1629] array; the result is finite (float32).

    ffill: carry the last seen position forward (and the first seen one backward); a landmark
           never seen in the sample becomes 0.
    zero:  every missing value becomes 0 (the incident report's convention).
    """
    if method not in IMPUTATIONS:
        raise ValueError(f"unknown imputation {method!r}; use one of {IMPUTATIONS}")
    x = np.array(raw, dtype=np.float32, copy=True)
    if method == "ffill":
        missing = np.isnan(x)
        cols = np.flatnonzero(missing.any(axis=0))  # MediaPipe drops whole landmarks: few columns hold NaN
        if cols.size:  # a column never seen in the sample stays NaN here: 0 below
            x[:, cols] = np.nan_to_num(_ffill(x[:, cols], missing[:, cols]), nan=0.0, posinf=np.inf, neginf=-np.inf)
        return x
    x[np.isnan(x)] = 0.0
    return x


def _ffill(x: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Columns of x with NaN at `missing`: the last seen value carried forward, the first seen one
    backward over a leading gap; a column never seen stays NaN."""
    t = np.arange(x.shape[0])[:, None]
    last_seen = np.where(missing, 0, t)
    np.maximum.accumulate(last_seen, axis=0, out=last_seen)
    filled = np.take_along_axis(x, last_seen, axis=0)
    first_seen = np.where(missing, x.shape[0] - 1, t)
    first_seen = np.minimum.accumulate(first_seen[::-1], axis=0)[::-1]
    lead = np.isnan(filled)
    filled[lead] = np.take_along_axis(x, first_seen, axis=0)[lead]
    return filled


# ---------------------------------------------------------------------------- global statistics


@dataclass
class FeatureStats:
    """Per-column mean/std of model-input features over a set of frames (float64)."""

    mean: np.ndarray
    std: np.ndarray
    n_frames: int

    def save(self, path) -> None:
        path = Path(path)

        def write(f):
            np.savez(f, mean=self.mean, std=self.std, n_frames=np.int64(self.n_frames))

        atomic_write(path, write)

    @classmethod
    def load(cls, path) -> "FeatureStats":
        with np.load(path, allow_pickle=False) as z:
            return cls(mean=z["mean"], std=z["std"], n_frames=int(z["n_frames"]))

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "n_frames": self.n_frames}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureStats":
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64), int(d["n_frames"]))


class RunningStats:
    """Streaming mean/variance (Chan et al. parallel update): memory is O(columns), not O(frames)."""

    def __init__(self, width: int = FEATURE_DIM):
        self.n = 0
        self.mean = np.zeros(width, dtype=np.float64)
        self.m2 = np.zeros(width, dtype=np.float64)

    @classmethod
    def from_moments(cls, n: int, mean: np.ndarray, m2: np.ndarray) -> "RunningStats":
        """Statistics of n frames with these per-column means and sums of squared deviations."""
        rs = cls(len(mean))
        rs.n, rs.mean, rs.m2 = int(n), np.asarray(mean, dtype=np.float64), np.asarray(m2, dtype=np.float64)
        return rs

    def update(self, x: np.ndarray) -> None:
        if x.shape[0] == 0:
            return
        x = np.asarray(x, dtype=np.float64)
        chunk = RunningStats(x.shape[1])
        chunk.n, chunk.mean = x.shape[0], x.mean(axis=0)
        chunk.m2 = ((x - chunk.mean) ** 2).sum(axis=0)
        self.merge(chunk)

    def merge(self, other: "RunningStats") -> None:
        if other.n == 0:
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * (other.n / n)
        self.m2 += other.m2 + delta**2 * (self.n * other.n / n)
        self.n = n

    def stats(self) -> FeatureStats:
        if self.n == 0:
            raise ValueError("no frames to compute statistics from (is the train split empty?)")
        return FeatureStats(mean=self.mean.copy(), std=np.sqrt(self.m2 / self.n), n_frames=self.n)


# rows summed in the input's precision before the float64 total: a float32 sum's rounding error
# then grows with this group size, not with the number of frames
_GROUP_ROWS = 8
# rows (evenly spaced) whose mean is the reference the deviations are taken from
_REFERENCE_ROWS = 16


def _deviation_sums(dev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column sums of dev and of dev**2 ([rows, C] -> two float64 [C]), over groups of _GROUP_ROWS
    rows in dev's precision, then in float64."""
    rows, width = dev.shape
    whole = rows - rows % _GROUP_ROWS
    groups = dev[:whole].reshape(-1, _GROUP_ROWS, width)
    s1 = np.einsum("gkc->gc", groups).astype(np.float64, copy=False).sum(axis=0)
    s2 = np.einsum("gkc,gkc->gc", groups, groups).astype(np.float64, copy=False).sum(axis=0)
    if whole < rows:
        rest = dev[whole:].astype(np.float64)
        s1 += rest.sum(axis=0)
        s2 += np.einsum("ij,ij->j", rest, rest)
    return s1, s2


def column_moments(x: np.ndarray, frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and sum of squared deviations (float64) of `frames` frames: `frames - len(x)`
    frames of 0 (the frames before a temporal block's first value) followed by the rows of x.

    RunningStats.from_moments(frames, *column_moments(x, frames)) holds the statistics of those
    frames. A float32 x stays float32 (no float64 copy): the sums are taken over the deviations
    from a reference near each column's mean (the mean of a few evenly spaced rows), which keeps
    float32's relative precision (~1e-7) on the std and gives a column constant over x an m2 of
    exactly 0. NaN in a column makes its moments NaN.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"column_moments expects a [frames, columns] array, got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    rows, width = x.shape
    frames = rows if frames is None else int(frames)
    if frames < rows:
        raise ValueError(f"column_moments: {rows} rows given for {frames} frames")
    if rows == 0:
        return np.zeros(width), np.zeros(width)
    ref = x[:: max(1, rows // _REFERENCE_ROWS)].mean(axis=0, dtype=np.float64).astype(x.dtype)
    s1, s2 = _deviation_sums(x - ref)
    ref = ref.astype(np.float64)
    zeros = frames - rows
    if zeros:  # each frame of 0 deviates by -ref
        s1 -= zeros * ref
        s2 += zeros * ref * ref
    mean = ref + s1 / frames
    m2 = np.maximum(s2 - s1 * s1 / frames, 0.0)
    return mean, m2


# ---------------------------------------------------------------------------- normalizers


def _body_frame(raw: np.ndarray) -> tuple[np.ndarray, float]:
    """Shoulder midpoint (x, y) and shoulder width of one sample, from frames where both are seen."""
    ls = raw[:, LEFT_SHOULDER * COORDS : LEFT_SHOULDER * COORDS + 2]
    rs = raw[:, RIGHT_SHOULDER * COORDS : RIGHT_SHOULDER * COORDS + 2]
    seen = np.isfinite(ls).all(axis=1) & np.isfinite(rs).all(axis=1)
    if not seen.any():
        return np.array([0.5, 0.5]), 1.0  # no shoulders anywhere: leave coordinates in image units
    centre = np.median((ls[seen] + rs[seen]) / 2, axis=0)
    width = float(np.median(np.linalg.norm(ls[seen] - rs[seen], axis=1)))
    return centre, width


class Normalizer:
    """Applies one normalization method to [T, 6516] features (already imputed, finite).

    `body` also needs the raw landmarks (with NaN) to find the shoulders: pass `raw=`.
    """

    def __init__(self, method: str = "global", stats: FeatureStats | None = None, std_floor: float = STD_FLOOR, clip: float = CLIP):
        if method not in METHODS:
            raise ValueError(f"unknown normalization {method!r}; use one of {METHODS}")
        if method == "global" and stats is None:
            raise ValueError("global normalization needs FeatureStats from the train split (see FeatureStats / RunningStats)")
        if std_floor <= 0:
            raise ValueError(f"std_floor must be > 0, got {std_floor}: a zero floor lets constant channels divide by 0")
        self.method, self.stats, self.std_floor, self.clip = method, stats, float(std_floor), float(clip)

    def __call__(self, x: np.ndarray, raw: np.ndarray | None = None) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != FEATURE_DIM:
            raise ValueError(f"Normalizer expects [T, {FEATURE_DIM}] features, got {x.shape}")
        x = x.astype(np.float32, copy=True)
        m = self.method
        if m == "global":
            x -= self.stats.mean.astype(np.float32)
            x /= np.maximum(self.stats.std, self.std_floor).astype(np.float32)
        elif m == "per_sample":
            x -= x.mean(axis=0)
            x /= np.maximum(x.std(axis=0), self.std_floor)
        elif m == "per_modality":
            for name in MODALITIES:
                block = x[:, LAYOUT[name]]
                block -= block.mean()
                block /= max(float(block.std()), self.std_floor)
        elif m == "body":
            centre, width = _body_frame(raw if raw is not None else x[:, :RAW_DIM])
            width = max(width, self.std_floor)
            xy = x[:, :RAW_DIM].reshape(x.shape[0], -1, COORDS)
            xy[:, :, :2] -= centre.astype(np.float32)
            x /= width
        if self.clip:
            np.clip(x, -self.clip, self.clip, out=x)
        return x

    def floored_columns(self) -> np.ndarray:
        """Columns whose train std was below the floor (global only): candidates for divide-by-~0."""
        if self.method != "global":
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.stats.std < self.std_floor)
