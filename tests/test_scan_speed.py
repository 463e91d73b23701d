"""The corpus scan's fast paths (harness/scan.py) measure what the plain computation does.

Every FileScan field is checked against values worked out by hand on small crafted files; the
train statistics the scan takes block by block (data.normalize.column_moments over the
imputed landmarks and each temporal block) match data.dataset.compute_train_stats, which builds
the [T, 6516] features of every file; the float16 widening is exact on every bit pattern.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from data.corpus import Corpus, SampleRecord, atomic_save_npy, write_manifest
from data.dataset import compute_train_stats, model_features
from data.layout import COORDS, FEATURE_DIM, LAYOUT, RAW_DIM
from data.normalize import RunningStats, column_moments
from data.temporal import temporal_features
from harness.scan import as_float32, scan_corpus, scan_file
from tests.corpus_factory import make_corpus

POSE, LEFT, RIGHT, FACE = (LAYOUT[name].start // COORDS for name in ("pose", "left_hand", "right_hand", "face"))


def _scan(tmp_path, arr, split="train", impute="ffill", name="s"):
    path = tmp_path / f"{name}.npy"
    np.save(path, arr)
    return scan_file(path, SampleRecord(name, split, ("A",), path.name), 4.0, impute, split == "train", 10.0)


def _crafted() -> np.ndarray:
    """6 frames: x 0.5, y 0.25, z 0.1 everywhere; the pose moves right by 0.125 a frame; the left
    hand is missing in frames 0-2; pose landmark 2 lacks its y in frame 4; right-hand landmark 6
    is (0, 0, 0) in frame 5; face landmark 100 has x = 640 in frame 3; pose landmark 0 has
    z = -12 in frame 1."""
    raw = np.tile(np.array([0.5, 0.25, 0.1], dtype=np.float32), (6, RAW_DIM // COORDS))
    lm = raw.reshape(6, -1, COORDS)
    lm[:, POSE:LEFT, 0] = (0.25 + 0.125 * np.arange(6, dtype=np.float32))[:, None]
    lm[:3, LEFT:RIGHT] = np.nan
    lm[4, POSE + 2, 1] = np.nan
    lm[5, RIGHT + 6] = 0.0
    lm[3, FACE + 100, 0] = 640.0
    lm[1, POSE + 0, 2] = -12.0
    return raw


def test_every_field_of_a_crafted_file(tmp_path):
    arr = _crafted()
    s = _scan(tmp_path, arr)
    assert (s.frames, s.width, s.dtype, s.error) == (6, RAW_DIM, "float32", "")
    assert s.digest == hashlib.blake2b(arr.tobytes(), digest_size=12).hexdigest()
    assert (s.n_inf, s.inf_at) == (0, [])
    assert s.partial_nan_landmarks == 1 and s.partial_at == (4, (POSE + 2) * COORDS + 1)
    assert s.missing == {"pose": 0.0, "left_hand": 0.5, "right_hand": 0.0, "face": 0.0}
    assert s.zero_filled == {"pose": 0.0, "left_hand": 0.0, "right_hand": 1 / (6 * 21), "face": 0.0}
    # present x/y: all but the hand's 3 frames x 21 landmarks x 2 and the one missing y
    assert (s.max_abs, s.max_at, s.pixel_fraction) == (640.0, (3, (FACE + 100) * COORDS), 1 / (6 * 543 * 2 - 126 - 1))
    assert (s.z_max_abs, s.z_at, s.z_fraction) == (12.0, (1, 2), 1 / (6 * 543 - 63))
    # steps of 0.125 in x (33 landmarks x 5 steps), 0 in y, two y steps of landmark 2 not seen
    assert s.motion == {
        "pose": float(np.float32(33 * 5 * 0.125 / (33 * 5 * 2 - 2))),
        "left_hand": 0.0,  # seen in frames 3-5 only, without moving
        "right_hand": float(np.float32((0.5 + 0.25) / (21 * 5 * 2))),  # landmark 6 to (0, 0, 0) in the last step
        "face": float(np.float32(2 * 639.5 / (468 * 5 * 2))),  # to 640 and back
    }
    # 197 pose x seen: 33 each of 0.25, 0.375, 0.5, ... (32 of 0.75): the 99th smallest is 0.5
    assert s.center == (0.5, 0.25)
    n, mean, m2 = s.stats
    assert n == 6 and mean.shape == m2.shape == (FEATURE_DIM,)


def test_inf_nan_temporal_columns_and_float16(tmp_path):
    raw = _crafted()
    full = np.concatenate([raw, temporal_features(raw)], axis=1)
    full[1, RAW_DIM + 5] = np.nan  # NaN inside a given temporal block: partial, in two frames
    full[3, 4000] = np.nan
    s = _scan(tmp_path, full)
    assert s.width == FEATURE_DIM and s.partial_nan_landmarks == 1 + 2
    assert s.stats is not None and s.stats[0] == 6

    full[2, 10], full[3, 1700] = np.inf, -np.inf
    s = _scan(tmp_path, full)
    assert (s.n_inf, s.inf_at, s.stats) == (2, [(2, 10), (3, 1700)], None)  # no statistics from a file with Inf
    assert s.max_at == (3, (FACE + 100) * COORDS)  # Inf is not a present value
    assert s.motion["pose"] == float(np.float32((33 * 5 * 0.125 + 2 * np.inf) / (33 * 5 * 2 - 2)))  # inf

    half = _scan(tmp_path, raw.astype(np.float16), name="h")
    plain = _scan(tmp_path, raw)
    assert half.dtype == "float16" and half.digest == hashlib.blake2b(raw.astype(np.float16).tobytes(), digest_size=12).hexdigest()
    for field in ("missing", "zero_filled", "motion", "center", "max_abs", "max_at", "z_max_abs", "z_at", "partial_at"):
        assert getattr(half, field) == getattr(plain, field), field  # every crafted value is exact in float16


@pytest.mark.parametrize("impute", ["ffill", "zero"])
@pytest.mark.parametrize("form", ["raw", "full", "float16", "short"])
def test_file_statistics_are_those_of_the_model_features(tmp_path, form, impute):
    arr = _crafted()
    if form == "full":
        arr = np.concatenate([arr, temporal_features(arr)], axis=1)
        arr[1, RAW_DIM + 5] = arr[3, 4000] = np.nan
    elif form == "float16":
        arr = arr.astype(np.float16)
    elif form == "short":  # fewer frames than the displacement window
        arr = arr[:3]
    n, mean, m2 = _scan(tmp_path, arr, impute=impute).stats
    feats, _ = model_features(arr, impute)
    expected = RunningStats(FEATURE_DIM)
    expected.update(feats)
    assert n == expected.n == len(arr)
    scale = np.sqrt(expected.m2 / n) + np.abs(expected.mean)
    assert np.all(np.abs(mean - expected.mean) <= 1e-6 * scale)
    assert np.all(np.abs(np.sqrt(m2 / n) - np.sqrt(expected.m2 / n)) <= 1e-6 * scale)
    assert np.array_equal(m2 == 0, expected.m2 == 0)


def test_files_without_landmarks_or_frames_to_step(tmp_path):
    s = _scan(tmp_path, np.full((3, RAW_DIM), np.nan, np.float32), split="dev")
    assert s.missing == dict.fromkeys(("pose", "left_hand", "right_hand", "face"), 1.0)
    assert (s.center, s.max_at, s.z_at, s.max_abs, s.stats) == (None, None, None, 0.0, None)
    assert s.motion == dict.fromkeys(("pose", "left_hand", "right_hand", "face"), 0.0)
    one = _scan(tmp_path, _crafted()[:1])
    assert one.motion == dict.fromkeys(("pose", "left_hand", "right_hand", "face"), 0.0) and one.stats[0] == 1
    assert np.all(one.stats[2] == 0)  # one frame: every std 0
    bad = _scan(tmp_path, np.zeros((3, 5), np.float32), name="bad")
    assert "shape (3, 5)" in bad.error and bad.frames == 0


def _stats_corpus(root):
    """make_corpus (left hand NaN in runs of frames) plus a sample whose hands are never seen, a
    [T, 6516] file (its own temporal block, NaN in it) and a float16 file, all train. Face
    landmark 0 is never seen in train: its 12 channels are constant (0)."""
    make_corpus(root, n_train=4, n_dev=1, n_test=1, seed=3)
    corpus = Corpus(root)
    for rec in corpus.split("train"):
        raw = np.array(corpus.load(rec), dtype=np.float32)
        raw[:, LAYOUT.face.start : LAYOUT.face.start + COORDS] = np.nan
        atomic_save_npy(corpus.file(rec), raw)
    rng = np.random.default_rng(7)
    records = list(corpus.records)
    extra = {}
    nohands = raw.copy()
    nohands[:, LAYOUT.hands] = np.nan
    extra["nohands"] = nohands
    full = np.concatenate([raw, temporal_features(raw)], axis=1)
    full[rng.random(full.shape) < 0.01] = np.nan
    extra["full"] = full
    extra["half"] = (raw + rng.normal(0, 0.01, raw.shape)).astype(np.float16)
    for sid, arr in extra.items():
        atomic_save_npy(root / "features" / f"{sid}.npy", arr)
        records.append(SampleRecord(sid, "train", ("A",), f"features/{sid}.npy", signer="s0", fps=25.0))
    write_manifest(root, records)
    return Corpus(root)


@pytest.mark.parametrize("impute", ["ffill", "zero"])
def test_train_statistics_match_the_dataset(tmp_path, impute):
    corpus = _stats_corpus(tmp_path)
    expected = compute_train_stats(corpus, impute)
    got = scan_corpus(corpus, impute_method=impute).train_stats
    assert got.n_frames == expected.n_frames == sum(corpus.load(r).shape[0] for r in corpus.split("train"))
    scale = expected.std + np.abs(expected.mean)
    assert np.all(np.abs(got.mean - expected.mean) <= 1e-6 * scale)
    assert np.all(np.abs(got.std - expected.std) <= 1e-6 * scale)
    never_seen = [c + k * RAW_DIM for k in range(4) for c in range(LAYOUT.face.start, LAYOUT.face.start + COORDS)]
    assert np.flatnonzero(got.std == 0).tolist() == np.flatnonzero(expected.std == 0).tolist() == never_seen


def test_worker_processes_give_the_same_statistics(tmp_path):
    corpus = _stats_corpus(tmp_path)
    one, two = scan_corpus(corpus), scan_corpus(corpus, workers=2)
    assert [f.id for f in one.files] == [f.id for f in two.files] == [r.id for r in corpus.records]
    assert np.array_equal(one.train_stats.mean, two.train_stats.mean) and np.array_equal(one.train_stats.std, two.train_stats.std)
    assert [f.digest for f in one.files] == [f.digest for f in two.files]


def test_float16_widening_is_exact_on_every_bit_pattern():
    half = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(256, 256)
    got, want = as_float32(half), half.astype(np.float32)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    finite = np.isfinite(want)
    assert np.array_equal(got[finite].view(np.uint32), want[finite].view(np.uint32))  # -0.0 and subnormals too
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(got[np.isinf(want)], want[np.isinf(want)])


def _reference(x, frames):
    full = np.concatenate([np.zeros((frames - len(x), x.shape[1])), x.astype(np.float64)])
    return full.mean(axis=0), ((full - full.mean(axis=0)) ** 2).sum(axis=0)


@pytest.mark.parametrize("rows,zeros", [(1, 0), (5, 0), (7, 3), (200, 1), (3001, 4)])
def test_column_moments_match_float64(rows, zeros):
    rng = np.random.default_rng(rows)
    x = (0.5 + np.cumsum(rng.normal(0, 0.01, (rows, 6)), axis=0)).astype(np.float32)
    x[:, 1] = 0.3  # constant
    x[0, 2] = 40.0  # an outlier first row
    x[: rows // 2, 3] = 0.0  # a zero-filled run
    x[:, 4] *= 1e4
    mean, m2 = column_moments(x, rows + zeros)
    ref_mean, ref_m2 = _reference(x, rows + zeros)
    scale = np.sqrt(ref_m2 / (rows + zeros)) + np.abs(ref_mean)
    assert np.all(np.abs(mean - ref_mean) <= 2e-7 * scale)
    assert np.all(np.abs(np.sqrt(m2) - np.sqrt(ref_m2)) <= 1e-6 * np.sqrt(rows + zeros) * scale)
    if not zeros:
        assert m2[1] == 0.0 and mean[1] == np.float32(0.3)
    rs = RunningStats.from_moments(rows + zeros, mean, m2)
    assert rs.n == rows + zeros and rs.stats().std.shape == (6,)
