"""Importers (Kaggle ISLR parquet, pose-format .pose, PHOENIX frame folders), .pose export, gloss statistics.

Real third-party data from ../shared/data is used wherever the format matters; those tests are
marked real_data and skip when it is absent. MediaPipe runs are kept to three short clips.
"""
import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.convert import (
    ConvertError,
    ConvertReport,
    IncompleteImportWarning,
    array_to_pose,
    export_pose,
    gloss_statistics,
    kaggle_to_corpus,
    phoenix_split_dir,
    phoenix_to_corpus,
    pose_files_to_corpus,
    pose_to_array,
    read_kaggle_parquet,
    read_phoenix_corpus,
    signer_splits,
)
from data.convert.__main__ import main
from data.corpus import SPLITS, Corpus, SampleRecord, load_features, read_manifest, write_manifest
from data.layout import LAYOUT, RAW_DIM

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
KAGGLE = SHARED / "kaggle_asl_signs"
PHOENIX = SHARED / "phoenix2014"
PHOENIX_T = SHARED / "phoenix2014-T"
VIDEOS = SHARED / "videos"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path} (see ../shared/data/README.md)")
    return path


def kaggle_rows() -> list[dict]:
    with open(need(KAGGLE) / "train.csv", newline="") as f:
        return list(csv.DictReader(f))


def parquet(rel: str):
    import pandas as pd

    return pd.read_parquet(KAGGLE / rel)


def write_pose(pose, path: Path) -> Path:
    buf = io.BytesIO()
    pose.write(buf)
    path.write_bytes(buf.getvalue())
    return path


def video_frames(name: str, start: int = 0, stop: int | None = None, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """RGB frames of a real clip, optionally resized to size=(width, height)."""
    import cv2

    cap = cv2.VideoCapture(str(need(VIDEOS / name)))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    frames = frames[start:stop]
    if size:
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    return [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]


# ----------------------------------------------------------------------------- splits by signer


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.lists(st.floats(0.05, 1.0), min_size=3, max_size=3), st.integers(0, 10**6))
def test_signer_splits_partition_signers(n, fractions, seed):
    signers = [f"s{i}" for i in range(n)]
    split_of = signer_splits(signers * 2, seed=seed, fractions=fractions)  # repeats collapse to one signer
    assert sorted(split_of) == sorted(signers)
    assert set(split_of.values()) <= set(SPLITS)
    used = set(split_of.values())
    assert "train" in used
    if n >= 3:
        assert used == set(SPLITS)
    elif n == 2:
        assert used == {"train", "dev"}
    assert split_of == signer_splits(list(reversed(signers)), seed=seed, fractions=fractions)  # order-free, seeded


def test_signer_splits_follow_fractions_and_seed():
    signers = [str(i) for i in range(100)]
    split_of = signer_splits(signers, seed=1, fractions=(70, 15, 15))  # percentages are normalised
    counts = {s: list(split_of.values()).count(s) for s in SPLITS}
    assert counts == {"train": 70, "dev": 15, "test": 15}
    assert split_of != signer_splits(signers, seed=2)
    with pytest.raises(ConvertError, match="train > 0"):
        signer_splits(signers, fractions=(0, 0.5, 0.5))
    with pytest.raises(ConvertError, match="three"):
        signer_splits(signers, fractions=(0.5, 0.5))


# ----------------------------------------------------------------------------- Kaggle ISLR


@pytest.fixture(scope="module")
def kaggle_corpus(tmp_path_factory):
    need(KAGGLE)
    return kaggle_to_corpus(KAGGLE, tmp_path_factory.mktemp("kaggle"))


@pytest.mark.real_data
def test_kaggle_acceptance(kaggle_corpus):
    rows = {f"{r['participant_id']}-{r['sequence_id']}": r for r in kaggle_rows()}
    records = read_manifest(kaggle_corpus, validate=True)
    assert len(records) == len(rows) == 42
    splits_of_signer = {}
    for rec in records:
        splits_of_signer.setdefault(rec.signer, set()).add(rec.split)
        row = rows[rec.id]
        assert rec.signer == row["participant_id"]
        assert rec.glosses == (row["sign"].upper(),)
        arr = load_features(kaggle_corpus / rec.path)
        assert arr.dtype == np.float32 and arr.shape == (parquet(row["path"])["frame"].nunique(), RAW_DIM)
    assert all(len(s) == 1 for s in splits_of_signer.values()), "a participant is in two splits"
    assert {r.split for r in records} == set(SPLITS)
    hands = np.concatenate([np.asarray(load_features(kaggle_corpus / r.path))[:, LAYOUT.hands] for r in records])
    assert np.isnan(hands).any() and np.isfinite(hands).any()  # real MediaPipe output: hands partly missing
    info = json.loads((kaggle_corpus / "corpus.json").read_text())
    assert info["dataset"] == "kaggle_islr" and info["import"]["converted"] == 42 and not info["import"]["failed"]


@pytest.mark.real_data
def test_kaggle_values_match_parquet_by_type_and_index(kaggle_corpus):
    rng = np.random.default_rng(0)
    checked_nan = 0
    for row in kaggle_rows()[::7]:
        df = parquet(row["path"])
        arr = np.load(kaggle_corpus / "features" / f"{row['participant_id']}-{row['sequence_id']}.npy")
        frames = sorted(df["frame"].unique())
        for kind in ("pose", "left_hand", "right_hand", "face"):
            sub = df[df["type"] == kind]
            for i in rng.choice(len(sub), size=5, replace=False):
                frame, idx = int(sub["frame"].iloc[i]), int(sub["landmark_index"].iloc[i])
                hit = df[(df["frame"] == frame) & (df["type"] == kind) & (df["landmark_index"] == idx)]
                expected = hit[["x", "y", "z"]].to_numpy(np.float32)[0]
                col = LAYOUT[kind].start + 3 * idx
                got = arr[frames.index(frame), col : col + 3]
                np.testing.assert_array_equal(got, expected)
                checked_nan += int(np.isnan(expected).all())
    assert checked_nan > 0  # the sample included undetected landmarks, kept as NaN


@pytest.mark.real_data
def test_kaggle_row_order_does_not_matter(tmp_path):
    row = kaggle_rows()[0]
    df = parquet(row["path"])
    shuffled = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    shuffled.to_parquet(tmp_path / "shuffled.parquet")
    np.testing.assert_array_equal(read_kaggle_parquet(tmp_path / "shuffled.parquet"), read_kaggle_parquet(KAGGLE / row["path"]))


@pytest.fixture
def small_kaggle_dir(tmp_path):
    """A Kaggle-shaped directory with 4 real sequences from 4 participants."""
    rows = kaggle_rows()[:8:2]
    root = tmp_path / "kaggle"
    for r in rows:
        (root / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(KAGGLE / r["path"], root / r["path"])
    with open(root / "train.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root, rows


@pytest.mark.real_data
def test_kaggle_bad_files_are_reported_and_the_rest_imported(small_kaggle_dir, tmp_path, capsys):
    root, rows = small_kaggle_dir
    no_type = root / rows[1]["path"]
    parquet(rows[1]["path"]).drop(columns=["type"]).to_parquet(no_type)
    (root / rows[2]["path"]).write_bytes(b"not a parquet file")
    out = tmp_path / "corpus"
    report = ConvertReport()
    with pytest.warns(IncompleteImportWarning, match="failed 2"):
        kaggle_to_corpus(root, out, report=report)
    bad_ids = {f"{r['participant_id']}-{r['sequence_id']}": r for r in rows[1:3]}
    assert set(report.failed) == set(bad_ids) and len(report.converted) == 2
    assert str(no_type) in report.failed[f"{rows[1]['participant_id']}-{rows[1]['sequence_id']}"]
    assert "missing column(s) ['type']" in "".join(report.failed.values())
    assert len(read_manifest(out)) == 2
    assert set(json.loads((out / "corpus.json").read_text())["import"]["failed"]) == set(bad_ids)

    assert main(["kaggle", str(root), "--out", str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "not a readable parquet" in err and "missing column" in err


def test_kaggle_nothing_importable_raises(tmp_path):
    (tmp_path / "train.csv").write_text("path,participant_id,sequence_id,sign\nnope.parquet,1,2,hello\n")
    with pytest.raises(ConvertError, match="nothing imported"):
        kaggle_to_corpus(tmp_path, tmp_path / "out")
    (tmp_path / "train.csv").write_text("path,sign\nnope.parquet,hello\n")
    with pytest.raises(ConvertError, match=r"train.csv: missing column\(s\) \['participant_id', 'sequence_id'\]"):
        kaggle_to_corpus(tmp_path, tmp_path / "out")
    assert main(["kaggle", str(tmp_path), "--out", str(tmp_path / "out")]) == 2


# ----------------------------------------------------------------------------- pose-format .pose


@pytest.mark.real_data
def test_pose_to_array_inverts_pose_format_holistic(tmp_path):
    """A .pose made by pose-format's own MediaPipe conversion (iris refinement on, world landmarks
    present) reads back as the normalised landmarks MediaPipe returned for the same frames."""
    import mediapipe as mp
    from pose_format.utils.holistic import load_holistic

    frames = video_frames("asl_house.mp4", 25, 40)
    height, width = frames[0].shape[:2]
    config = {"refine_face_landmarks": True}
    pose = load_holistic(frames, fps=25, width=width, height=height, additional_holistic_config=dict(config))
    assert [len(c.points) for c in pose.header.components] == [33, 478, 21, 21, 33]
    got = pose_to_array(write_pose(pose, tmp_path / "house.pose"))

    expected = np.full((len(frames), RAW_DIM), np.nan)
    with mp.solutions.holistic.Holistic(static_image_mode=False, **config) as holistic:
        for t, frame in enumerate(frames):
            res = holistic.process(frame)
            for kind, lms in (("pose", res.pose_landmarks), ("left_hand", res.left_hand_landmarks),
                              ("right_hand", res.right_hand_landmarks), ("face", res.face_landmarks)):
                if lms is not None:
                    block = LAYOUT[kind]
                    xyz = np.array([[p.x, p.y, p.z] for p in lms.landmark]).ravel()[: block.stop - block.start]
                    expected[t, block] = xyz
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(got[:, LAYOUT.left_hand]).all(axis=1).any()  # the clip has frames without a hand
    np.testing.assert_allclose(got, expected, atol=1e-5, equal_nan=True)


@pytest.mark.real_data
def test_kaggle_landmarks_round_trip_through_pose(tmp_path):
    from pose_format.pose_visualizer import PoseVisualizer
    from pose_format.utils.generic import detect_known_pose_format

    row = kaggle_rows()[5]
    raw = read_kaggle_parquet(KAGGLE / row["path"])
    assert np.isnan(raw[:, LAYOUT.hands]).any()
    path = write_pose(array_to_pose(raw, fps=30, width=640, height=480), tmp_path / "s.pose")
    back = pose_to_array(path)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(raw))
    np.testing.assert_allclose(back, raw, rtol=1e-6, atol=1e-6, equal_nan=True)

    from pose_format import Pose

    pose = Pose.read(path.read_bytes())
    assert detect_known_pose_format(pose) == "holistic"
    assert [c.name for c in pose.header.components] == ["POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS"]
    assert pose.body.fps == 30 and (pose.header.dimensions.width, pose.header.dimensions.height) == (640, 480)
    image = next(iter(PoseVisualizer(pose).draw()))  # pose-format's own viewer renders it
    assert image.shape[:2] == (480, 640) and image.any()


@pytest.fixture
def pose_dir(tmp_path):
    """Three .pose files from real Kaggle landmarks (one lacking the hand/face components) + labels."""
    rows = kaggle_rows()[:6:2]
    d = tmp_path / "poses"
    d.mkdir()
    raws = {}
    for i, r in enumerate(rows):
        sid = f"clip{i}"
        raws[sid] = read_kaggle_parquet(KAGGLE / r["path"])
        pose = array_to_pose(raws[sid], fps=25, width=512, height=512)
        if i == 2:
            pose = pose.get_components(["POSE_LANDMARKS"])
        write_pose(pose, d / f"{sid}.pose")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,glosses,split,signer\nclip0,HELLO WORLD,train,a\nclip1,THANKYOU,,b\nclip2,HELLO,dev,c\nclip9,HELLO,test,d\n")
    return d, labels, raws


@pytest.mark.real_data
def test_pose_files_to_corpus(pose_dir, tmp_path, capsys):
    d, labels, raws = pose_dir
    out = tmp_path / "corpus"
    report = ConvertReport()
    with pytest.warns(IncompleteImportWarning):
        pose_files_to_corpus([d], labels, out, report=report)
    assert sorted(report.converted) == ["clip0", "clip1"] and report.missing == ["clip9"]
    assert "clip2" in report.failed and "LEFT_HAND_LANDMARKS" in report.failed["clip2"] and "clip2.pose" in report.failed["clip2"]
    records = {r.id: r for r in read_manifest(out)}
    assert records["clip0"].glosses == ("HELLO", "WORLD") and records["clip0"].split == "train" and records["clip0"].fps == 25
    assert records["clip1"].split == "train"  # no split column value: the only signer without one goes to train
    np.testing.assert_allclose(np.load(out / records["clip0"].path), raws["clip0"], atol=1e-6, equal_nan=True)

    assert main(["pose", str(d / "clip0.pose"), str(d / "clip2.pose"), "--labels", str(labels), "--out", str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err
    assert "FAILED clip2" in err and "MISSING clip1" in err and "MISSING clip9" in err


def test_pose_to_array_bad_files(tmp_path):
    (tmp_path / "junk.pose").write_bytes(b"\x00\x01 not a pose")
    with pytest.raises(ConvertError, match="junk.pose: not a readable .pose file"):
        pose_to_array(tmp_path / "junk.pose")
    with pytest.raises(ConvertError, match="no such .pose file"):
        pose_to_array(tmp_path / "absent.pose")


# ----------------------------------------------------------------------------- export


@pytest.mark.real_data
def test_export_pose_from_corpus(kaggle_corpus, tmp_path):
    rec = read_manifest(kaggle_corpus)[3]
    with pytest.raises(ConvertError, match="has no fps; pass fps"):
        export_pose(kaggle_corpus, rec.id, tmp_path / "x.pose")
    with pytest.raises(ConvertError, match="no sample with id 'nope'"):
        export_pose(kaggle_corpus, "nope", tmp_path / "x.pose", fps=30)
    out = tmp_path / "x.pose"
    assert main(["export-pose", str(kaggle_corpus), rec.id, "--fps", "30", "--out", str(out)]) == 0
    np.testing.assert_allclose(pose_to_array(out), np.load(kaggle_corpus / rec.path), atol=1e-6, equal_nan=True)


def test_array_to_pose_rejects_bad_shapes():
    with pytest.raises(ConvertError, match=r"shape \(4, 10\)"):
        array_to_pose(np.zeros((4, 10), np.float32), fps=25, width=10, height=10)


# ----------------------------------------------------------------------------- PHOENIX


@pytest.mark.real_data
def test_read_phoenix_corpus_files():
    lines = read_phoenix_corpus(need(PHOENIX), "2014")
    for split in SPLITS:
        n_lines = len((PHOENIX / f"{split}.corpus.csv").read_text(encoding="utf-8").strip().splitlines()) - 1
        assert sum(ln.split == split for ln in lines) == n_lines
    first = lines[0]
    assert first.folder == first.id + "/1" and first.glosses[0] == "__ON__" and first.signer.startswith("Signer")
    assert all(ln.glosses and "" not in ln.glosses for ln in lines)  # double spaces do not make empty glosses

    t_lines = read_phoenix_corpus(need(PHOENIX_T), "2014T", splits=("dev",), limit=5)
    assert len(t_lines) == 5 and all(ln.folder == ln.id and ln.extra["translation"] for ln in t_lines)
    with pytest.raises(ConvertError, match="variant='2014T'"):
        read_phoenix_corpus(PHOENIX_T, "2014")


def test_phoenix_split_dir_accepts_common_roots(tmp_path):
    for root, inner in ((tmp_path / "a", "fullFrame-210x260px"), (tmp_path / "b", "features/fullFrame-210x260px"),
                        (tmp_path / "c", "phoenix-2014-multisigner/features/fullFrame-210x260px")):
        (root / inner / "dev").mkdir(parents=True)
        assert phoenix_split_dir(root, "dev") == root / inner / "dev"
        assert phoenix_split_dir(root, "test") is None
    assert phoenix_split_dir(tmp_path / "a" / "fullFrame-210x260px", "dev") == tmp_path / "a" / "fullFrame-210x260px" / "dev"


def write_frames(folder: Path, frames: list[np.ndarray], pattern: str) -> None:
    import cv2

    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / pattern.format(i)), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def corpus_lines(path: Path, n: int) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[: n + 1]


@pytest.mark.real_data
def test_phoenix_2014_import(tmp_path):
    """Real corpus lines, frame folders made from real clips at PHOENIX's 210x260, one folder missing."""
    need(PHOENIX)
    files = tmp_path / "corpus_files"
    files.mkdir()
    train, dev = corpus_lines(PHOENIX / "train.corpus.csv", 2), corpus_lines(PHOENIX / "dev.corpus.csv", 1)
    (files / "train.corpus.csv").write_text("\n".join(train) + "\n")
    (files / "dev.corpus.csv").write_text("\n".join(dev) + "\n")
    (files / "test.corpus.csv").write_text(train[0] + "\n")  # header only
    rows = [dict(zip(train[0].split("|"), ln.split("|"))) for ln in train[1:] + dev[1:]]

    root = tmp_path / "phoenix-2014-multisigner" / "features" / "fullFrame-210x260px"
    clips = {rows[0]["id"]: video_frames("asl_house.mp4", 0, 16, size=(210, 260)),
             rows[2]["id"]: video_frames("sample_video.mp4", size=(210, 260))}
    for row, split in zip(rows, ("train", "train", "dev")):
        if row["id"] in clips:  # rows[1]'s folder is left out on purpose
            pattern = row["id"].rsplit("_", 1)[0] + ".avi_pid0_fn{:06d}-0.png"
            write_frames(root / split / row["folder"].removesuffix("/*.png"), clips[row["id"]], pattern)

    report = ConvertReport()
    with pytest.warns(IncompleteImportWarning, match=rows[1]["id"]):
        phoenix_to_corpus(files, tmp_path, tmp_path / "out", variant="2014", workers=1, report=report)
    assert report.missing == [rows[1]["id"]] and not report.failed
    missing_line = next(ln for ln in report.summary().splitlines() if "MISSING" in ln)
    assert str(root / "train" / rows[1]["id"] / "1") in missing_line  # names where the frames were expected
    corpus = Corpus(tmp_path / "out")
    assert {r.id for r in corpus.records} == set(clips)
    for rec in corpus.records:
        row = next(r for r in rows if r["id"] == rec.id)
        assert rec.glosses == tuple(row["annotation"].split()) and rec.signer == row["signer"] and rec.fps == 25
        assert rec.split == ("dev" if row is rows[2] else "train")
        arr = corpus.load(rec)
        assert arr.shape == (len(clips[rec.id]), RAW_DIM)
        assert np.isfinite(arr[:, LAYOUT.pose]).all(axis=1).mean() > 0.5  # real frames reached MediaPipe: a body is found
    info = json.loads((tmp_path / "out" / "corpus.json").read_text())
    assert info["dataset"] == "phoenix2014" and info["import"]["missing"] == [rows[1]["id"]]


@pytest.mark.real_data
def test_phoenix_2014T_import_and_missing_root(tmp_path, capsys):
    need(PHOENIX_T)
    files = tmp_path / "corpus_files"
    files.mkdir()
    dev = corpus_lines(PHOENIX_T / "dev.corpus.csv", 1)
    (files / "dev.corpus.csv").write_text("\n".join(dev) + "\n")
    row = dict(zip(dev[0].split("|"), dev[1].split("|")))
    frames = video_frames("sample_video.mp4", size=(210, 260))
    write_frames(tmp_path / "features" / "fullFrame-210x260px" / "dev" / row["name"], frames, "images{:04d}.png")

    assert main(["phoenix", str(files), str(tmp_path / "nowhere"), "--variant", "2014T", "--splits", "dev", "--out", str(tmp_path / "o")]) == 2
    assert "fullFrame-210x260px" in capsys.readouterr().err

    assert main(["phoenix", str(files), str(tmp_path), "--variant", "2014T", "--splits", "dev", "--out", str(tmp_path / "out")]) == 0
    (rec,) = read_manifest(tmp_path / "out")
    assert (rec.id, rec.split, rec.signer, rec.glosses) == (row["name"], "dev", row["speaker"], tuple(row["orth"].split()))
    assert rec.extra["translation"] == row["translation"]
    assert np.load(tmp_path / "out" / rec.path).shape == (len(frames), RAW_DIM)
    assert json.loads((tmp_path / "out" / "corpus.json").read_text())["dataset"] == "phoenix2014T"


# ----------------------------------------------------------------------------- statistics


def test_gloss_statistics_by_hand(tmp_path):
    def rec(i, split, glosses, signer):
        return SampleRecord(f"s{i}", split, tuple(glosses.split()), f"f/s{i}.npy", signer=signer)

    write_manifest(tmp_path, [
        rec(0, "train", "A B C", "p1"), rec(1, "train", "A A", "p2"), rec(2, "train", "D", "p1"),
        rec(3, "dev", "A X Y", "p3"), rec(4, "dev", "B", "p2"),
        rec(5, "test", "C C", "p4"),
    ])
    stats = gloss_statistics(tmp_path)
    assert stats["samples"] == {"train": 3, "dev": 2, "test": 1}
    assert stats["signers"] == {"train": 2, "dev": 2, "test": 1} and stats["shared_signers"] == ["p2"]
    assert stats["vocabulary_size"] == 4 and stats["tokens"] == {"train": 6, "dev": 4, "test": 2}
    assert stats["sentence_length"]["train"] == {"min": 1, "median": 2.0, "max": 3, "mean": 2.0}
    assert stats["oov_rate"] == {"dev": 0.5, "test": 0.0} and stats["oov_glosses"] == {"dev": 2, "test": 0}


@pytest.mark.real_data
def test_gloss_statistics_phoenix_manifest(tmp_path):
    """Manifest-only corpus from the real PHOENIX-2014 corpus files (no feature files needed)."""
    lines = read_phoenix_corpus(need(PHOENIX), "2014")
    write_manifest(tmp_path, [SampleRecord(ln.id, ln.split, ln.glosses, f"features/{ln.id}.npy", ln.signer) for ln in lines])
    stats = gloss_statistics(tmp_path)
    gloss_dict = json.loads((PHOENIX / "gloss_dict.json").read_text())
    assert stats["samples"] == {s: sum(ln.split == s for ln in lines) for s in SPLITS}
    assert 0 < stats["vocabulary_size"] <= len(gloss_dict)
    assert 0 < stats["oov_rate"]["dev"] < 0.05 and stats["oov_glosses"]["dev"] > 0  # a few dev glosses never occur in train
    assert len(stats["shared_signers"]) == stats["signers"]["dev"]  # multi-signer benchmark: every dev signer is in train
    assert stats["sentence_length"]["train"]["min"] >= 1 and stats["sentence_length"]["train"]["max"] > stats["sentence_length"]["train"]["median"]
