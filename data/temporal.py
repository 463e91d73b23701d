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
# frames before the first defined value of each block (velocity, acceleration, displacement)
LAGS = (1, 2, DISPLACEMENT_WINDOW)


def temporal_blocks(x: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """[T, C] float32 raw values -> [(lag, values)] for velocity, acceleration, displacement.

    `values` holds rows lag..T-1 of the block ([max(T - lag, 0), C] float32); rows before lag are
    0 by definition and not materialised. NaN where a frame the value depends on is missing
    (temporal_features turns it into 0). Used by temporal_features and by the harness scan, which
    takes statistics block by block.
    """
    k = DISPLACEMENT_WINDOW
    velocity = x[1:] - x[:-1]
    acceleration = x[1:-1] * -2.0  # (x[t] - 2 x[t-1]) + x[t-2], in that order
    acceleration += x[2:]
    acceleration += x[:-2]
    displacement = x[k:] - x[:-k]
    return [(LAGS[0], velocity), (LAGS[1], acceleration), (LAGS[2], displacement)]


def temporal_features(raw: np.ndarray) -> np.ndarray:
    """[T, 1629] raw landmarks (NaN = missing) -> [T, 4887] float32, always finite.

    Blocks in order: velocity, acceleration, displacement (see module docstring).
    """
    if raw.ndim != 2 or raw.shape[1] != RAW_DIM:
        raise ValueError(f"temporal_features expects [T, {RAW_DIM}] raw landmarks, got shape {raw.shape}")
    x = np.asarray(raw, dtype=np.float32)
    out = np.zeros((x.shape[0], TEMPORAL_DIM), dtype=np.float32)
    for i, (lag, values) in enumerate(temporal_blocks(x)):
        out[lag:, i * RAW_DIM : (i + 1) * RAW_DIM] = values
    # NaN here means "depends on a missing landmark": such a derivative is defined as 0. Only the
    # columns of a landmark that is missing somewhere can hold it (MediaPipe drops whole landmarks).
    # Inf is left alone on purpose: it is a data fault for the harness to report, not to hide.
    cols = np.flatnonzero(np.isnan(x).any(axis=0))
    if cols.size:
        cols = (cols[None, :] + RAW_DIM * np.arange(len(LAGS))[:, None]).ravel()
        block = out[:, cols]
        block[np.isnan(block)] = 0.0
        out[:, cols] = block
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
