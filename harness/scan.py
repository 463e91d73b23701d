"""One streaming pass over every file of a corpus: the measurements the data checks judge.

Memory is bounded by one file at a time per worker plus O(columns) running statistics, so a
corpus larger than memory scans fine. Files are memory-mapped.
"""
from __future__ import annotations

import ctypes
import hashlib
import multiprocessing as mp
from dataclasses import dataclass, field

import numpy as np

from data.corpus import Corpus, CorpusError, SampleRecord, load_features
from data.layout import COORDS, FEATURE_DIM, LANDMARK_BLOCKS, LAYOUT, RAW_DIM
from data.normalize import IMPUTATIONS, RunningStats, column_moments, impute
from data.temporal import temporal_blocks

BLOCKS = LANDMARK_BLOCKS


@dataclass
class FileScan:
    id: str
    split: str
    path: str
    frames: int = 0
    width: int = 0
    dtype: str = ""
    error: str = ""
    n_inf: int = 0
    partial_nan_landmarks: int = 0  # landmarks with some but not all of x/y/z NaN
    missing: dict = field(default_factory=dict)  # block -> fraction of (frame, landmark) missing
    zero_filled: dict = field(default_factory=dict)  # block -> fraction stored as exact (0,0,0)
    pixel_fraction: float = 0.0  # share of present x/y beyond max_abs_coordinate
    max_abs: float = 0.0
    max_at: tuple | None = None  # (frame, column) of max_abs
    z_fraction: float = 0.0  # share of present z beyond max_abs_z
    z_max_abs: float = 0.0
    z_at: tuple | None = None  # (frame, column) of z_max_abs
    inf_at: list = field(default_factory=list)  # (frame, column) of the first Inf values
    motion: dict = field(default_factory=dict)  # block -> mean |x/y step| of its landmarks between consecutive frames where seen
    center: tuple | None = None  # median (x, y) of the pose landmarks seen: where the signer stands in the frame
    partial_at: tuple | None = None  # (frame, column) of the first landmark with some but not all coordinates NaN
    digest: str = ""
    stats: tuple | None = None  # (n, mean, m2) of model features, train split only


def _locate(mask: np.ndarray, k: int = 5) -> list[tuple[int, int]]:
    """(frame, column) of the first k True entries of a [T, columns] mask."""
    return [(int(f), int(c)) for f, c in np.argwhere(mask)[:k]]


_F16_SCALE = np.float32(2.0**112)  # float16 -> float32 exponent bias difference (127 - 15)
_F16_INF_SCALED = np.float32(2.0**16)  # what the scaling makes of float16 Inf; no finite float16 reaches it


def as_float32(arr: np.ndarray) -> np.ndarray:
    """A [T, C] feature array as C-contiguous float32 (a float32 file is not copied).

    float16 is widened bit by bit, exactly: the sign, exponent and mantissa bits are moved to
    float32's places and the value scaled by 2**112 (the difference of the exponent biases), which
    is exact for every finite float16, zero and subnormals included; Inf and NaN (exponent bits
    all 1) are set afterwards. numpy's own float16 cast converts one value at a time, several
    times slower on a [T, 1629] file.
    """
    if arr.dtype != np.float16:
        return np.ascontiguousarray(arr, dtype=np.float32)
    half = np.ascontiguousarray(arr).view(np.int16)
    special = (half & 0x7C00) == 0x7C00
    bits = half.astype(np.int32)  # sign-extended: bit 31 is the sign
    bits <<= 13
    bits &= np.int32(-0x70000001)  # 0x8FFFFFFF: sign, exponent (5 bits) and mantissa; sign copies cleared
    out = bits.view(np.float32)
    out *= _F16_SCALE
    at = np.flatnonzero(special)
    if len(at):  # scaled, an Inf pattern (no mantissa bits) is exactly +-65536, a NaN pattern beyond
        flat = out.reshape(-1)
        scaled = flat[at]
        flat[at] = np.where(np.abs(scaled) == _F16_INF_SCALED, np.copysign(np.float32(np.inf), scaled), np.float32(np.nan))
    return out


# raw columns of the x and y coordinates, and of z
_XY_COLUMNS = np.flatnonzero(np.arange(RAW_DIM) % COORDS < 2)
_Z_COLUMNS = np.flatnonzero(np.arange(RAW_DIM) % COORDS == 2)


def _extreme(present: np.ndarray, high: np.ndarray, low: np.ndarray, absent: np.ndarray, cols: np.ndarray, limit: float):
    """Largest |value| in columns `cols` of [T, 1629] landmarks `present` (NaN where not present),
    its (frame, column) (the first in frame, then column order) and the share of present values
    beyond `limit`; None if no value is present. high/low: per-column max/min ignoring NaN;
    absent: per column, whether it holds a NaN."""
    peaks = np.fmax(high[cols], -low[cols])  # NaN: the column has no value present
    if np.isnan(peaks).all():
        return None
    peak = np.nanmax(peaks)
    at_peak = cols[peaks == peak]
    f, j = np.argwhere(np.abs(present[:, at_peak]) == peak)[0]
    share = 0.0
    over = cols[peaks > limit]
    if len(over):
        n_over = np.count_nonzero(np.abs(present[:, over]) > limit)
        gaps = cols[absent[cols]]
        n_present = present.shape[0] * len(cols) - np.count_nonzero(np.isnan(present[:, gaps]))
        share = n_over / n_present
    return float(peak), float(share), (int(f), int(at_peak[j]))


def _xy(values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Contiguous [rows, hi - lo, 2] float32 copy of the x, y values of landmarks lo..hi-1 of a
    C-contiguous [rows, 1629] float32 array. A landmark's x and y are adjacent, so each pair is
    copied as one 8-byte item (a [:, :, :2] slice copies them one by one, several times slower)."""
    rows, width = values.shape[0], hi - lo
    if rows == 0:
        return np.zeros((0, width, 2), dtype=np.float32)
    item = 4 * COORDS
    pairs = np.ndarray((rows, width), dtype="V8", buffer=values, offset=lo * item, strides=(values.strides[0], item))
    return pairs.copy().view(np.float32).reshape(rows, width, 2)


def _mean_step(step: np.ndarray, gaps: bool, inf: bool) -> float:
    """np.nanmean of a [T-1, landmarks, 2] |step| array (the same float32 sum), 0.0 when no step
    is finite. gaps: the array may hold NaN; inf: it may hold Inf. `step` is overwritten."""
    n = step.size
    if gaps:
        missing = np.isnan(step)
        n -= int(np.count_nonzero(missing))
        step[missing] = 0.0
    if n == 0 or (inf and not np.isfinite(step).any()):
        return 0.0
    return float(np.float32(float(step.sum()) / n))


def feature_moments(data: np.ndarray, raw: np.ndarray, temporal, nan_cols: np.ndarray, impute_method: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (mean, m2) over the frames of one file of the [T, 6516] features
    data.dataset.model_features gives (raw landmarks imputed, temporal block 0 where it depends on a
    missing frame), taken block by block without building that array.

    data: the file as float32; raw: its [T, 1629] landmarks (NaN = missing; no Inf); nan_cols:
    the raw columns holding a NaN; temporal: temporal_blocks(raw), whose NaN are set to 0 here (in
    place), or None for a [T, 6516] file, whose own temporal block is used.
    """
    frames = data.shape[0]
    mean, m2 = np.empty(FEATURE_DIM), np.empty(FEATURE_DIM)
    mean[:RAW_DIM], m2[:RAW_DIM] = column_moments(raw, frames)
    if len(nan_cols):  # imputed, column by column: only the columns with a gap change
        mean[nan_cols], m2[nan_cols] = column_moments(impute(raw[:, nan_cols], impute_method), frames)
    if temporal is None:
        own = np.nan_to_num(data[:, RAW_DIM:], nan=0.0, posinf=np.inf, neginf=-np.inf)
        mean[RAW_DIM:], m2[RAW_DIM:] = column_moments(own, frames)
        return mean, m2
    for i, (_, values) in enumerate(temporal):
        if len(nan_cols):  # NaN only where raw has one: a derivative of a missing frame is 0
            gaps = values[:, nan_cols]
            gaps[np.isnan(gaps)] = 0.0
            values[:, nan_cols] = gaps
        cols = slice(RAW_DIM * (i + 1), RAW_DIM * (i + 2))
        mean[cols], m2[cols] = column_moments(values, frames)
    return mean, m2


def scan_file(path, rec: SampleRecord, max_abs_coordinate: float, impute_method: str, with_stats: bool, max_abs_z: float = 10.0) -> FileScan:
    s = FileScan(rec.id, rec.split, str(path))
    try:
        arr = load_features(path)
    except CorpusError as exc:
        s.error = str(exc)
        return s
    frames, landmarks = int(arr.shape[0]), RAW_DIM // COORDS
    s.frames, s.width, s.dtype = frames, int(arr.shape[1]), str(arr.dtype)
    arr = np.ascontiguousarray(arr)
    s.digest = hashlib.blake2b(arr, digest_size=12).hexdigest()
    data = as_float32(arr)
    raw = data[:, :RAW_DIM]
    pose = raw[:, LAYOUT.pose]
    # [2, 33, T]: a landmark's values over time side by side (smooth runs: the median's
    # partition is several times faster than on frame-major order)
    pose_xy = np.stack([pose[:, 0::COORDS].T, pose[:, 1::COORDS].T])
    seen = np.isfinite(pose_xy).all(axis=0)  # the pose landmarks seen: x and y both present
    if not seen.all():
        pose_xy = pose_xy[:, seen]
    if pose_xy.size:
        cx, cy = np.median(pose_xy.reshape(2, -1), axis=1)
        s.center = (float(cx), float(cy))
    # per-column extremes, NaN ignored: where Inf is, and where values can exceed a limit or be 0
    high, low = np.fmax.reduce(data, axis=0), np.fmin.reduce(data, axis=0)
    present = raw  # landmark values with NaN where not present (Inf is not present either)
    if np.isinf(high).any() or np.isinf(low).any():
        inf = np.isinf(data)
        s.n_inf = int(np.count_nonzero(inf))
        s.inf_at = _locate(inf)
        present = np.where(np.isinf(raw), np.float32(np.nan), raw)
        high, low = np.fmax.reduce(present, axis=0), np.fmin.reduce(present, axis=0)
    high, low = high[:RAW_DIM], low[:RAW_DIM]

    # NaN by landmark, looked at only for the landmarks that have a NaN coordinate somewhere
    nan = np.isnan(raw)
    has_nan = nan.any(axis=0)
    absent = has_nan if present is raw else np.isnan(present).any(axis=0)  # columns with a value not present
    nan_cols = np.flatnonzero(has_nan)
    gap_landmarks = np.unique(nan_cols // COORDS)
    missing_by_landmark = np.zeros(landmarks, dtype=np.int64)
    if len(gap_landmarks):
        cols = (gap_landmarks[:, None] * COORDS + np.arange(COORDS)).ravel()
        per_coord = nan[:, cols].view(np.uint8).reshape(frames, len(gap_landmarks), COORDS)
        n_nan = per_coord[:, :, 0] + per_coord[:, :, 1] + per_coord[:, :, 2]
        missing = n_nan == COORDS
        partial = (n_nan > 0) & ~missing
        s.partial_nan_landmarks = int(np.count_nonzero(partial))
        if s.partial_nan_landmarks:
            f, j = np.argwhere(partial)[0]
            lm = int(gap_landmarks[j])
            s.partial_at = (int(f), lm * COORDS + int(np.argmax(nan[f, lm * COORDS : (lm + 1) * COORDS])))
        missing_by_landmark[gap_landmarks] = np.count_nonzero(missing, axis=0)
    if s.width == FEATURE_DIM:  # NaN in a given temporal block is never a 'missing landmark'
        s.partial_nan_landmarks += int(np.count_nonzero(np.isnan(data[:, RAW_DIM:]).any(axis=1)))

    # (0, 0, 0) landmarks: only a landmark whose three columns each reach 0 can have one
    zero_by_landmark = np.zeros(landmarks, dtype=np.int64)
    reaches_zero = ((low <= 0) & (high >= 0)).reshape(landmarks, COORDS).all(axis=1)
    if reaches_zero.any():
        lms = np.flatnonzero(reaches_zero)
        cols = (lms[:, None] * COORDS + np.arange(COORDS)).ravel()
        zeros = (raw[:, cols] == 0).reshape(frames, len(lms), COORDS).all(axis=2)
        zero_by_landmark[lms] = np.count_nonzero(zeros, axis=0)

    temporal = temporal_blocks(raw) if s.width == RAW_DIM else None
    velocity = temporal[0][1] if temporal is not None else raw[1:] - raw[:-1]
    for name, block, _ in LAYOUT.landmark_blocks:
        lo, hi = block.start // COORDS, block.stop // COORDS
        size = frames * (hi - lo)
        s.missing[name] = int(missing_by_landmark[lo:hi].sum()) / size
        s.zero_filled[name] = int(zero_by_landmark[lo:hi].sum()) / size
        step = _xy(velocity, lo, hi)  # NaN where either frame misses the landmark
        np.abs(step, out=step)
        s.motion[name] = _mean_step(step, bool(has_nan[block].any()), bool(s.n_inf))

    xy = _extreme(present, high, low, absent, _XY_COLUMNS, max_abs_coordinate)
    if xy is not None:
        s.max_abs, s.pixel_fraction, s.max_at = xy
    z = _extreme(present, high, low, absent, _Z_COLUMNS, max_abs_z)
    if z is not None:
        s.z_max_abs, s.z_fraction, s.z_at = z
    if with_stats and not s.n_inf:
        if impute_method not in IMPUTATIONS:
            raise ValueError(f"unknown imputation {impute_method!r}; use one of {IMPUTATIONS}")
        s.stats = (frames, *feature_moments(data, raw, temporal, nan_cols, impute_method))
    return s


# files a worker task scans; their train statistics are merged in the worker and sent once
FILES_PER_TASK = 8
# glibc mallopt parameters (malloc.h) and the values a scan worker sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_FREED_BYTES, _HEAP_UP_TO_BYTES = 128 << 20, 32 << 20


def _init_worker() -> None:
    """Set-up of a scan worker process: keep the memory a file's arrays free for the next file.

    Each file allocates and frees the same few MB of arrays. By default glibc serves arrays that
    large with fresh memory maps, or returns the freed heap top to the system, so every file
    faults its pages in again (a third of a worker's time, in the kernel). Arrays up to
    _HEAP_UP_TO_BYTES come from the heap and up to _KEEP_FREED_BYTES of freed heap is kept. Only
    the workers this module starts are tuned, never the calling process. Without glibc's
    mallopt there is nothing to set.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _HEAP_UP_TO_BYTES)
    mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED_BYTES)


def _scan_files(jobs: list) -> tuple[list, tuple | None]:
    """scan_file over a few files: their FileScans (stats cleared) and their train statistics merged."""
    running = RunningStats(FEATURE_DIM)
    files = []
    for job in jobs:
        s = scan_file(*job)
        if s.stats is not None:
            running.merge(RunningStats.from_moments(*s.stats))
            s.stats = None
        files.append(s)
    return files, ((running.n, running.mean, running.m2) if running.n else None)


@dataclass
class CorpusScan:
    files: list  # FileScan, manifest order
    train_stats: object | None  # data.normalize.FeatureStats over train frames (None if none usable)

    def by_split(self, split: str) -> list:
        return [f for f in self.files if f.split == split]


def scan_corpus(corpus: Corpus, max_abs_coordinate: float = 4.0, impute_method: str = "ffill", workers: int = 0, max_abs_z: float = 10.0) -> CorpusScan:
    """Scan every file (worker processes if workers > 1); merge train statistics as results stream in.

    Files go to workers FILES_PER_TASK at a time, in manifest order, whatever the number of
    workers, so the statistics (merged task by task in that order) do not depend on it.
    """
    jobs = [(corpus.file(r), r, max_abs_coordinate, impute_method, r.split == "train", max_abs_z) for r in corpus.records]
    tasks = [jobs[i : i + FILES_PER_TASK] for i in range(0, len(jobs), FILES_PER_TASK)]
    running = RunningStats(FEATURE_DIM)
    files = []

    def absorb(result):
        scans, stats = result
        if stats is not None:
            running.merge(RunningStats.from_moments(*stats))
        files.extend(scans)

    if workers and workers > 1 and len(tasks) > 1:
        with mp.get_context("spawn").Pool(min(workers, len(tasks)), initializer=_init_worker) as pool:
            for result in pool.imap(_scan_files, tasks):
                absorb(result)
    else:
        for task in tasks:
            absorb(_scan_files(task))
    return CorpusScan(files, running.stats() if running.n else None)



# ----------------------------------------------------------------------------- a user dataset


def scan_dataset(splits: dict, spec: str) -> tuple[CorpusScan, list[SampleRecord]]:
    """One pass over every item of a user's dataset (model.components.ExternalDataset a split):
    the same measurements a corpus scan makes, taken on the dataset's output, plus the records
    (id, split, glosses) the labels and CTC checks read, one per item in index order. An item
    that breaks the item contract becomes that entry's `error`; the scan never raises on one."""
    from model.components import ComponentError

    files, records, running, width = [], [], None, None
    for split, ds in splits.items():
        for i in range(len(ds)):
            s = FileScan(id=f"{split}[{i}]", split=split, path=f"{spec} ({split} item {i})")
            try:
                s.id, x, glosses = ds.item(i)
            except ComponentError as exc:
                s.error = str(exc)
                files.append(s)
                records.append(SampleRecord(s.id, split, (), ""))
                continue
            arr = x.numpy()
            s.frames, s.width, s.dtype = int(arr.shape[0]), int(arr.shape[1]), str(arr.dtype)
            if width is None:
                width = s.width
            elif s.width != width:
                s.error = f"dataset = {spec!r}, split {split!r}, item {i} (id {s.id!r}): features have F={s.width} per frame, earlier items {width}; every item needs the same width"
                files.append(s)
                records.append(SampleRecord(s.id, split, glosses, ""))
                continue
            finite = np.isfinite(arr)
            s.n_inf = int(np.isinf(arr).sum())
            s.missing = {"non-finite": float(1 - finite.mean())}
            s.max_abs = float(np.abs(arr[finite]).max()) if finite.any() else 0.0
            s.digest = hashlib.blake2b(np.ascontiguousarray(arr).tobytes(), digest_size=12).hexdigest()
            if split == "train":
                running = running or RunningStats(width)
                running.update(np.where(finite, arr, 0.0))
            files.append(s)
            records.append(SampleRecord(s.id, split, glosses, ""))
    return CorpusScan(files, running.stats() if running is not None and running.n else None), records
