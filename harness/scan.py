"""One streaming pass over every file of a corpus: the measurements the data checks judge.

Memory is bounded by one file at a time per worker plus O(columns) running statistics, so a
corpus larger than memory scans fine. Files are memory-mapped.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
from dataclasses import dataclass, field

import numpy as np

from data.corpus import Corpus, CorpusError, SampleRecord, load_features
from data.dataset import model_features
from data.layout import COORDS, FEATURE_DIM, LANDMARK_BLOCKS, LAYOUT, RAW_DIM
from data.normalize import RunningStats

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


def scan_file(path, rec: SampleRecord, max_abs_coordinate: float, impute_method: str, with_stats: bool, max_abs_z: float = 10.0) -> FileScan:
    s = FileScan(rec.id, rec.split, str(path))
    try:
        arr = load_features(path)
    except CorpusError as exc:
        s.error = str(exc)
        return s
    s.frames, s.width, s.dtype = int(arr.shape[0]), int(arr.shape[1]), str(arr.dtype)
    data = np.asarray(arr, dtype=np.float32)
    s.digest = hashlib.blake2b(np.ascontiguousarray(arr).tobytes(), digest_size=12).hexdigest()
    inf = np.isinf(data)
    s.n_inf = int(inf.sum())
    s.inf_at = _locate(inf) if s.n_inf else []
    raw = data[:, :RAW_DIM].reshape(s.frames, -1, COORDS)
    nan = np.isnan(raw)
    n_nan = nan.sum(axis=2)
    partial = (n_nan > 0) & (n_nan < COORDS)
    s.partial_nan_landmarks = int(partial.sum())
    if s.partial_nan_landmarks:
        f, lm = np.argwhere(partial)[0]
        s.partial_at = (int(f), int(lm) * COORDS + int(np.argmax(nan[f, lm])))
    if s.width == FEATURE_DIM:  # NaN in a given temporal block is never a 'missing landmark'
        s.partial_nan_landmarks += int(np.isnan(data[:, RAW_DIM:]).any(axis=1).sum())
    landmark_missing = n_nan == COORDS
    landmark_zero = (raw == 0).all(axis=2)
    for name, block, _ in LAYOUT.landmark_blocks:
        lo, hi = block.start // COORDS, block.stop // COORDS
        s.missing[name] = float(landmark_missing[:, lo:hi].mean())
        s.zero_filled[name] = float(landmark_zero[:, lo:hi].mean())
        step = np.abs(np.diff(raw[:, lo:hi, :2], axis=0))  # NaN where either frame misses the landmark
        s.motion[name] = float(np.nanmean(step)) if np.isfinite(step).any() else 0.0
    pose_xy = raw[:, LAYOUT.pose.start // COORDS : LAYOUT.pose.stop // COORDS, :2].reshape(-1, 2)
    pose_xy = pose_xy[np.isfinite(pose_xy).all(axis=1)]
    s.center = (float(np.median(pose_xy[:, 0])), float(np.median(pose_xy[:, 1]))) if len(pose_xy) else None
    for axes, limit in (((0, 1), max_abs_coordinate), ((2,), max_abs_z)):
        vals = np.abs(raw[:, :, list(axes)])
        present = np.isfinite(vals)
        if not present.any():
            continue
        where = np.unravel_index(int(np.argmax(np.where(present, vals, -1))), vals.shape)
        at = (int(where[0]), int(where[1]) * COORDS + axes[where[2]])
        peak, share = float(vals[present].max()), float((vals[present] > limit).mean())
        if axes == (2,):
            s.z_max_abs, s.z_fraction, s.z_at = peak, share, at
        else:
            s.max_abs, s.pixel_fraction, s.max_at = peak, share, at
    if with_stats and not s.n_inf:
        feats, _ = model_features(arr, impute_method)
        rs = RunningStats(FEATURE_DIM)
        rs.update(feats)
        s.stats = (rs.n, rs.mean, rs.m2)
    return s


def _scan_one(args):
    return scan_file(*args)


@dataclass
class CorpusScan:
    files: list  # FileScan, manifest order
    train_stats: object | None  # data.normalize.FeatureStats over train frames (None if none usable)

    def by_split(self, split: str) -> list:
        return [f for f in self.files if f.split == split]


def scan_corpus(corpus: Corpus, max_abs_coordinate: float = 4.0, impute_method: str = "ffill", workers: int = 0, max_abs_z: float = 10.0) -> CorpusScan:
    """Scan every file (worker processes if workers > 1); merge train statistics as results stream in."""
    jobs = [(corpus.file(r), r, max_abs_coordinate, impute_method, r.split == "train", max_abs_z) for r in corpus.records]
    running = RunningStats(FEATURE_DIM)
    files = []

    def absorb(s: FileScan):
        if s.stats is not None:
            n, mean, m2 = s.stats
            other = RunningStats(FEATURE_DIM)
            other.n, other.mean, other.m2 = n, mean, m2
            running.merge(other)
            s.stats = None  # keep memory O(files), not O(files x columns)
        files.append(s)

    if workers and workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for s in pool.imap(_scan_one, jobs, chunksize=max(1, min(8, len(jobs) // (workers * 8)))):
                absorb(s)
    else:
        for job in jobs:
            absorb(_scan_one(job))
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
