"""Temporal features: three time-derived versions of the 1629 raw landmark values.

For raw landmarks x[t] (NaN where not detected), per column:

    velocity[t]     = x[t] - x[t-1]                      (t >= 1, else 0)
    acceleration[t] = x[t] - 2 x[t-1] + x[t-2]           (t >= 2, else 0)
    displacement[t] = x[t] - x[t-K],  K = DISPLACEMENT_WINDOW   (t >= K, else 0)

A derived value is 0 wherever any frame it depends on is missing: a hand that reappears after
being undetected must not produce a velocity spike from an imputed position. This is why the
temporal block is computed from the raw landmarks *before* imputation.
"""
from __future__ import annotations

import numpy as np

from data.layout import FEATURE_DIM, RAW_DIM, TEMPORAL_DIM

DISPLACEMENT_WINDOW = 4


def _lagged_difference(x: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """sum_k c_k * x[t-k]; rows with t < len(coefficients)-1 are 0. NaN propagates."""
    out = np.zeros_like(x)
    span = len(coefficients) - 1
    if x.shape[0] <= span:
        return out
    acc = coefficients[0] * x[span:]
    for k, c in enumerate(coefficients[1:], start=1):
        if c:
            acc = acc + c * x[span - k : x.shape[0] - k]
    out[span:] = acc
    return out


def temporal_features(raw: np.ndarray) -> np.ndarray:
    """[T, 1629] raw landmarks (NaN = missing) -> [T, 4887] float32, always finite.

    Blocks in order: velocity, acceleration, displacement (see module docstring).
    """
    if raw.ndim != 2 or raw.shape[1] != RAW_DIM:
        raise ValueError(f"temporal_features expects [T, {RAW_DIM}] raw landmarks, got shape {raw.shape}")
    x = np.asarray(raw, dtype=np.float32)
    window = (1.0,) + (0.0,) * (DISPLACEMENT_WINDOW - 1) + (-1.0,)
    blocks = [
        _lagged_difference(x, (1.0, -1.0)),
        _lagged_difference(x, (1.0, -2.0, 1.0)),
        _lagged_difference(x, window),
    ]
    out = np.concatenate(blocks, axis=1)
    # NaN here means "depends on a missing landmark": such a derivative is defined as 0.
    # Inf is left alone on purpose: it is a data fault for the harness to report, not to hide.
    np.nan_to_num(out, copy=False, nan=0.0, posinf=np.inf, neginf=-np.inf)
    assert out.shape[1] == TEMPORAL_DIM
    return out


def full_features(raw_or_full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a feature file into (raw [T,1629] with NaN, temporal [T,4887]).

    A [T, 1629] file gets its temporal block derived here; a [T, 6516] file (the incident
    report's format) brings its own.
    """
    arr = np.asarray(raw_or_full, dtype=np.float32)
    if arr.shape[1] == FEATURE_DIM:
        return arr[:, :RAW_DIM], np.nan_to_num(arr[:, RAW_DIM:], nan=0.0, posinf=np.inf, neginf=-np.inf)
    return arr, temporal_features(arr)
