"""The demo corpus generator (data/synthetic/): format, determinism, realism, learnability."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from data import synthetic
from data.corpus import CorpusError, load_features, read_manifest
from data.layout import RAW_DIM
from data.synthetic import (
    GLOSSES,
    SIZES,
    demo_corpus,
    generate_corpus,
    gloss_motion,
    missing_fractions,
)
from data.synthetic.__main__ import main

REPO = Path(__file__).resolve().parents[1]
KAGGLE = REPO / ".." / "shared" / "data" / "kaggle_asl_signs"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small corpus, generated once for the module, with its generation time."""
    out = tmp_path_factory.mktemp("demo_small")
    start = time.perf_counter()
    generate_corpus(out, seed=0, **SIZES["small"])
    return out, time.perf_counter() - start


@pytest.fixture(scope="module")
def loaded(small):
    out, _ = small
    records = read_manifest(out, validate=True)
    arrays = {r.id: np.asarray(load_features(out / r.path, mmap=False)) for r in records}
    meta = json.loads((out / synthetic.DEMO_META).read_text())
    left = {s["name"]: s["left_handed"] for s in meta["signers"]}
    return records, arrays, meta, left


def _landmarks(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1, 3)


# ---------------------------------------------------------------------------- format


def test_manifest_valid_and_sized(loaded):
    records, arrays, meta, _ = loaded
    counts = {s: sum(r.split == s for r in records) for s in ("train", "dev", "test")}
    assert counts == {"train": 24, "dev": 6, "test": 6}
    assert all(r.signer and r.fps == synthetic.FPS for r in records)
    assert meta["version"] == synthetic.GENERATOR_VERSION and meta["glosses"] == list(GLOSSES)
    for r in records:
        a = arrays[r.id]
        assert a.dtype == np.float32 and a.ndim == 2 and a.shape[1] == RAW_DIM, r.id
        assert 30 <= a.shape[0] <= 130, (r.id, a.shape)
        assert 2 <= len(r.glosses) <= 4 and set(r.glosses) <= set(GLOSSES)
        assert all(x != y for x, y in zip(r.glosses, r.glosses[1:])), f"{r.id}: immediate repeat"


def test_segments_cover_each_gloss(loaded):
    records, arrays, _, _ = loaded
    for r in records:
        segs = [tuple(map(int, s.split("-"))) for s in r.extra["segments"].split()]
        assert len(segs) == len(r.glosses), r.id
        ends = [0] + [e for _, e in segs]
        for (start, end), prev_end in zip(segs, ends):
            assert prev_end < start < end <= arrays[r.id].shape[0], (r.id, segs)  # a transition before each sign
            assert 8 <= end - start <= 20


def test_nan_only_for_whole_landmarks(loaded):
    _, arrays, _, _ = loaded
    for sid, a in arrays.items():
        nan = np.isnan(_landmarks(a))
        assert np.array_equal(nan.any(axis=2), nan.all(axis=2)), f"{sid}: a landmark with some but not all coords NaN"
        assert np.isfinite(a[~np.isnan(a)]).all()


def test_splits_glosses_and_signers(loaded):
    records, _, meta, _ = loaded
    by_split = {s: [r for r in records if r.split == s] for s in ("train", "dev", "test")}
    train_glosses = {g for r in by_split["train"] for g in r.glosses}
    assert train_glosses == set(GLOSSES)  # the small corpus still covers the vocabulary
    for split in ("dev", "test"):
        assert {g for r in by_split[split] for g in r.glosses} <= train_glosses
    train_signers = {r.signer for r in by_split["train"]}
    assert {r.signer for r in by_split["dev"]} <= train_signers
    unseen = {r.signer for r in by_split["test"]} - train_signers
    assert unseen, "the test split must hold at least one signer never seen in training"
    assert any(meta_s["left_handed"] for meta_s in meta["signers"] if meta_s["name"] in train_signers)


# ---------------------------------------------------------------------------- determinism, caching


def test_same_seed_same_bytes_other_seed_differs(small, tmp_path):
    out, _ = small
    again = generate_corpus(tmp_path / "again", seed=0, **SIZES["small"])
    other = generate_corpus(tmp_path / "other", seed=1, **SIZES["small"])
    assert (again / "manifest.csv").read_bytes() == (out / "manifest.csv").read_bytes()
    files = sorted(p.name for p in (out / "features").glob("*.npy"))
    assert files and files == sorted(p.name for p in (again / "features").glob("*.npy"))
    for name in files:
        assert (again / "features" / name).read_bytes() == (out / "features" / name).read_bytes(), name
    first = np.load(out / "features" / files[0])
    differ = np.load(other / "features" / files[0])
    assert first.shape != differ.shape or not np.array_equal(first, differ, equal_nan=True)
    assert (other / "manifest.csv").read_bytes() != (out / "manifest.csv").read_bytes()


def test_identical_corpus_is_not_rewritten_changed_one_is(tmp_path):
    out = generate_corpus(tmp_path / "c", seed=3, n_train=4, n_dev=1, n_test=1)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".demo.lock"}
    generate_corpus(out, seed=3, n_train=4, n_dev=1, n_test=1)
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".demo.lock"}
    generate_corpus(out, seed=3, n_train=3, n_dev=1, n_test=1)  # other parameters: regenerated, stale files gone
    recs = read_manifest(out)
    assert len(recs) == 5
    assert sorted(p.name for p in (out / "features").glob("*.npy")) == sorted(Path(r.path).name for r in recs)
    assert json.loads((out / "demo.json").read_text())["params"]["n_train"] == 3


def test_interrupted_corpus_is_regenerated(tmp_path):
    out = generate_corpus(tmp_path / "c", seed=0, n_train=3, n_dev=1, n_test=1)
    victim = out / read_manifest(out)[0].path
    before = victim.read_bytes()
    victim.unlink()
    generate_corpus(out, seed=0, n_train=3, n_dev=1, n_test=1)
    assert victim.read_bytes() == before


def test_refuses_foreign_corpus_and_bad_arguments(tmp_path):
    foreign = tmp_path / "real"
    foreign.mkdir()
    (foreign / "manifest.csv").write_text("id,split,glosses,path\n")
    with pytest.raises(CorpusError, match="did not write"):
        generate_corpus(foreign, n_train=2, n_dev=1, n_test=1)
    assert (foreign / "manifest.csv").read_text() == "id,split,glosses,path\n"
    with pytest.raises(ValueError, match="n_train"):
        generate_corpus(tmp_path / "x", n_train=0)
    with pytest.raises(ValueError, match="max_glosses"):
        generate_corpus(tmp_path / "x", min_glosses=3, max_glosses=2)


def test_demo_corpus_generates_once_into_cache(tmp_path, monkeypatch):
    monkeypatch.setitem(synthetic.SIZES, "default", {"n_train": 4, "n_dev": 1, "n_test": 1})
    path = demo_corpus(cache_dir=tmp_path)
    assert path == tmp_path / synthetic.DEMO_DIR_NAME
    assert len(read_manifest(path)) == 6
    mtime = (path / "manifest.csv").stat().st_mtime_ns
    monkeypatch.setenv("CSLR_CACHE", str(tmp_path))
    assert demo_corpus() == path
    assert (path / "manifest.csv").stat().st_mtime_ns == mtime


def test_cli_writes_corpus(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "c"), "--size", "6", "--seed", "2"]) == 0
    assert "missing frames" in capsys.readouterr().out
    assert [r.split for r in read_manifest(tmp_path / "c")].count("train") == 6
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "d"), "--size", "huge"])
    assert main(["--out", str(tmp_path / "e"), "--size", "small", "--n-train", "0"]) == 2
    assert "n_train" in capsys.readouterr().err


def test_small_corpus_generation_is_fast(small):
    _, seconds = small
    assert seconds < 10.0, f"small demo corpus took {seconds:.1f} s"


# ---------------------------------------------------------------------------- realism


def test_coordinates_in_frame_and_plausible(loaded):
    _, arrays, _, _ = loaded
    lm = np.concatenate([_landmarks(a) for a in arrays.values()])
    hands_face = lm[:, 33:]
    xy = hands_face[..., :2][~np.isnan(hands_face[..., 0])]
    assert np.mean(((xy >= 0) & (xy <= 1)).all(axis=1)) > 0.99
    head_arms = lm[:, :15, :2].reshape(-1, 2)  # head, shoulders, elbows (resting wrists may leave the frame)
    assert np.mean(((head_arms >= 0) & (head_arms <= 1)).all(axis=1)) > 0.97
    assert np.mean(lm[:, 25:33, 1] > 1.0) > 0.95  # knees and feet below the frame, as in upper-body video
    nose, shoulders, hips = lm[:, 0], lm[:, 11:13], lm[:, 23:25]
    assert (nose[:, 1] < shoulders[..., 1].min(axis=1)).all() and (shoulders[..., 1].max(axis=1) < hips[..., 1].min(axis=1)).all()
    assert (lm[:, 11, 0] > lm[:, 12, 0]).all()  # the signer's left shoulder on the image right
    assert np.all(np.abs(lm[:, 33:, 2][~np.isnan(lm[:, 33:, 2])]) < 0.5)  # hand and face z are small relative depths
    for o, wrist in ((33, 15), (54, 16)):  # hand wrists sit on the pose wrists, z relative to the wrist
        seen = ~np.isnan(lm[:, o, 0])
        assert np.abs(lm[seen, o, :2] - lm[seen, wrist, :2]).max() < 0.05
        assert np.all(lm[seen, o, 2] == 0.0)


def test_motion_is_continuous(loaded):
    """Transitions are interpolated: no wrist jumps more than a shoulder width between frames."""
    _, arrays, _, _ = loaded
    for sid, a in arrays.items():
        lm = _landmarks(a)
        width = np.linalg.norm(lm[:, 11, :2] - lm[:, 12, :2], axis=1)
        step = np.linalg.norm(np.diff(lm[:, 15:17, :2], axis=0), axis=2) / width[1:, None]
        assert step.max() < 1.0, f"{sid}: wrist jumps {step.max():.2f} shoulder widths in one frame"


def test_missing_rates_realistic(loaded):
    records, arrays, _, left = loaded
    miss = missing_fractions([arrays[r.id] for r in records], [left[r.signer] for r in records])
    assert miss["pose"] == 0.0 and miss["face"] <= 0.05
    assert 0.1 <= miss["dominant_hand"] <= 0.5, miss
    assert 0.4 <= miss["non_dominant_hand"] <= 0.95, miss
    assert miss["dominant_hand"] < miss["non_dominant_hand"]
    assert 0.15 <= min(miss["left_hand"], miss["right_hand"]) and max(miss["left_hand"], miss["right_hand"]) <= 0.9


def test_hands_drop_out_in_runs_mostly_when_low(loaded):
    _, arrays, _, _ = loaded
    runs, low, high = [], [], []
    for a in arrays.values():
        lm = _landmarks(a)
        torso = (lm[:, 23:25, 1].mean(axis=1) - lm[:, 11:13, 1].mean(axis=1))
        for o, wrist in ((33, 15), (54, 16)):
            missing = np.isnan(lm[:, o, 0])
            edges = np.flatnonzero(np.diff(np.r_[0, missing.astype(int), 0]))
            runs += list(edges[1::2] - edges[::2])
            height = (lm[:, wrist, 1] - lm[:, 11:13, 1].mean(axis=1)) / torso  # 0 shoulders, 1 hips
            low += list(missing[height > 0.7])
            high += list(missing[height < 0.3])
    assert np.mean(runs) >= 3.0, "hands should vanish in runs of frames, not frame by frame"
    assert np.mean(low) > 0.7 and np.mean(high) < 0.25, (np.mean(low), np.mean(high))


# ---------------------------------------------------------------------------- learnability


def test_canonical_gloss_motions_are_distinct():
    paths = {}
    for g in GLOSSES:
        m = gloss_motion(g, n=16)
        non = m["N"][0] if m["N"] is not None else np.tile(synthetic.REST, (16, 1))
        paths[g] = np.concatenate([m["D"][0], non], axis=1)
    for i, a in enumerate(GLOSSES):
        for b in GLOSSES[i + 1 :]:
            rms = np.sqrt(np.mean((paths[a] - paths[b]) ** 2))
            assert rms > 0.08, f"{a} and {b} move too alike (rms {rms:.3f} shoulder widths)"
    with pytest.raises(KeyError, match="demo vocabulary"):
        gloss_motion("PIZZA")


def test_glosses_separable_from_wrist_trajectories(loaded):
    """Gloss occurrences (by their segments) are told apart by nearest mean wrist trajectory."""
    records, arrays, _, left = loaded
    occ = {}
    for r in records:
        lm = _landmarks(arrays[r.id])
        centre = lm[:, 11:13, :2].mean(axis=1)
        width = np.linalg.norm(lm[:, 11, :2] - lm[:, 12, :2], axis=1)[:, None]
        lw, rw = (lm[:, 15, :2] - centre) / width, (lm[:, 16, :2] - centre) / width
        dom, non = (lw, rw * [-1, 1]) if left[r.signer] else (rw * [-1, 1], lw)  # outward = +x for both
        for g, seg in zip(r.glosses, r.extra["segments"].split()):
            s, e = map(int, seg.split("-"))
            idx = np.linspace(s, e - 1, 10).round().astype(int)
            occ.setdefault(g, []).append(np.concatenate([dom[idx], non[idx]], axis=1))
    means = {g: np.mean(v, axis=0) for g, v in occ.items()}
    correct = total = 0
    for g, items in occ.items():
        for x in items:
            guess = min(means, key=lambda h: np.mean((x - means[h]) ** 2))
            correct += guess == g
            total += 1
    assert correct / total >= 0.7, f"nearest-mean accuracy {correct / total:.2f} over {total} occurrences"
    names = sorted(means)
    gaps = [np.sqrt(np.mean((means[a] - means[b]) ** 2)) for i, a in enumerate(names) for b in names[i + 1 :]]
    assert min(gaps) > 0.05


# ---------------------------------------------------------------------------- against real data


def _kaggle_frames(path: Path) -> np.ndarray:
    import pandas as pd

    df = pd.read_parquet(path)
    n = df["frame"].nunique()
    parts = []
    for kind, count in (("pose", 33), ("left_hand", 21), ("right_hand", 21), ("face", 468)):
        d = df[df["type"] == kind].sort_values(["frame", "landmark_index"])
        parts.append(d[["x", "y", "z"]].to_numpy(dtype=np.float32).reshape(n, count, 3))
    return np.concatenate(parts, axis=1).reshape(n, RAW_DIM)


@pytest.mark.real_data
def test_geometry_and_dropouts_resemble_kaggle(loaded):
    """Body proportions and missing-part rates are of the same kind as real MediaPipe output."""
    if not (KAGGLE / "train.csv").is_file():
        pytest.skip(f"real data not found at {KAGGLE} (shared/data is not part of a fresh clone)")
    pytest.importorskip("pyarrow", reason="reading the Kaggle parquet files needs a working pyarrow")
    import pandas as pd

    paths = pd.read_csv(KAGGLE / "train.csv")["path"]
    real = [_kaggle_frames(KAGGLE / p) for p in paths]
    _, arrays, _, _ = loaded
    synth = list(arrays.values())

    def ratios(arrs):
        lm = np.concatenate([_landmarks(a) for a in arrs])
        sw = np.abs(lm[:, 11, 0] - lm[:, 12, 0])
        hand = np.concatenate([np.linalg.norm(lm[:, o + 9, :2] - lm[:, o, :2], axis=1) / sw for o in (33, 54)])
        seen = ~np.isnan(lm[:, 75, 0])
        face_w = (lm[seen, 75:, 0].max(axis=1) - lm[seen, 75:, 0].min(axis=1)) / sw[seen]
        nose_up = (lm[:, 11:13, 1].mean(axis=1) - lm[:, 0, 1]) / sw
        return {"hand": np.nanmedian(hand), "face": np.nanmedian(face_w), "nose": np.median(nose_up)}

    r, s = ratios(real), ratios(synth)
    for key in r:
        assert 0.7 < s[key] / r[key] < 1.4, f"{key}/shoulder width: synthetic {s[key]:.3f}, Kaggle {r[key]:.3f}"
    mr, ms = missing_fractions(real), missing_fractions(synth)
    assert mr["pose"] == ms["pose"] == 0.0
    assert mr["face"] < 0.05 and ms["face"] < 0.05
    for hand in ("left_hand", "right_hand"):
        assert abs(mr[hand] - ms[hand]) < 0.35, (hand, mr[hand], ms[hand])
