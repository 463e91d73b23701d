"""Continuous sentences from isolated clips, split by signer (data/convert/sentences.py, `python -m data.convert sentences`)."""
import json
from pathlib import Path

import numpy as np
import pytest

from data.convert import kaggle_to_corpus
from data.convert.__main__ import main
from data.convert.sentences import SentenceError, build_sentences, parse_range, plan_sentences, sentence_array, transition_frames
from data.corpus import SPLITS, Corpus, SampleRecord, atomic_save_npy, read_manifest, write_manifest
from data.dataset import MediaPipeFeatureDataset
from data.layout import LAYOUT, RAW_DIM
from tests.corpus_factory import random_raw

KAGGLE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kaggle_asl_signs"


def make_clips(root: Path, signers: int = 6, per_signer: int = 3, seed: int = 0, with_signer: bool = True) -> Path:
    """An isolated-sign corpus: each signer signs glosses G0..G{per_signer-1} once, some hands missing."""
    rng = np.random.default_rng(seed)
    records = []
    for s in range(signers):
        for g in range(per_signer):
            sid = f"p{s}-c{g}"
            raw = random_raw(rng, int(rng.integers(6, 15)), missing_left=0.5)
            atomic_save_npy(root / "features" / f"{sid}.npy", raw)
            records.append(SampleRecord(sid, "train", (f"G{g}",), f"features/{sid}.npy", signer=f"p{s}" if with_signer else ""))
    write_manifest(root, records)
    return root


@pytest.fixture
def clips(tmp_path):
    return make_clips(tmp_path / "clips")


def build(src, out, **kw):
    kw.setdefault("sizes", (12, 4, 4))
    return build_sentences(src, out, **kw)


def test_transition_is_linear_between_present_ends_and_nan_elsewhere():
    a, b = np.full(RAW_DIM, np.nan, np.float32), np.full(RAW_DIM, np.nan, np.float32)
    a[:3], b[:3] = (0.0, 0.2, 0.4), (0.4, 0.2, 0.0)
    a[3] = 0.5  # present at one end only
    tr = transition_frames(a, b, 3)
    np.testing.assert_allclose(tr[:, 0], [0.1, 0.2, 0.3], atol=1e-6)
    np.testing.assert_allclose(tr[:, 1], [0.2, 0.2, 0.2], atol=1e-6)
    assert np.isnan(tr[:, 3:]).all()
    assert transition_frames(a, b, 0).shape == (0, RAW_DIM)


def test_sentences_are_one_signers_clips_with_transitions(clips, tmp_path):
    out = build(clips, tmp_path / "sent", lengths="2-4", transition="1-3")
    source = {r.id: r for r in read_manifest(clips)}
    records = read_manifest(out)
    assert [sum(r.split == s for r in records) for s in SPLITS] == [12, 4, 4]
    for rec in records:
        ids = rec.extra["clips"].split()
        gaps = [int(g) for g in rec.extra["transitions"].split()]
        assert 2 <= len(ids) <= 4 and len(gaps) == len(ids) - 1 and all(1 <= g <= 3 for g in gaps)
        assert {source[i].signer for i in ids} == {rec.signer}  # one signer a sentence
        assert rec.glosses == tuple(g for i in ids for g in source[i].glosses)  # glosses = the clip labels in order
        arr = np.load(out / rec.path)
        parts = [np.load(clips / source[i].path) for i in ids]
        assert arr.dtype == np.float32 and arr.shape == (sum(len(p) for p in parts) + sum(gaps), RAW_DIM)
        np.testing.assert_array_equal(arr, sentence_array(parts, gaps))
        at = 0
        for k, part in enumerate(parts):  # every clip frame as it is in the source, NaN where it has NaN
            np.testing.assert_array_equal(arr[at : at + len(part)], part)
            at += len(part)
            if k < len(gaps):
                tr = arr[at : at + gaps[k]]
                both = ~np.isnan(part[-1]) & ~np.isnan(parts[k + 1][0])
                assert np.isnan(tr[:, ~both]).all() and not np.isnan(tr[:, both]).any()
                at += gaps[k]


def test_splits_are_disjoint_by_signer_and_follow_the_fractions(clips, tmp_path):
    out = build(clips, tmp_path / "sent", fractions=(4, 1, 1))  # normalised to sum 1
    info = json.loads((out / "corpus.json").read_text())
    signers = {s: set(info["signers"][s]) for s in SPLITS}
    assert [len(signers[s]) for s in SPLITS] == [4, 1, 1]
    assert not (signers["train"] & signers["dev"]) and not (signers["train"] & signers["test"]) and not (signers["dev"] & signers["test"])
    for rec in read_manifest(out):
        assert rec.signer in signers[rec.split]
    counts = {}
    for rec in read_manifest(out):
        if rec.split == "train":
            counts[rec.signer] = counts.get(rec.signer, 0) + 1
    assert sorted(counts.values()) == [3, 3, 3, 3]  # spread evenly over the split's signers
    assert info["dataset"] == "sentences" and info["split_by"] == "signer" and info["complete"]


def test_no_sentence_repeats_while_new_ones_remain(clips, tmp_path):
    out = build(clips, tmp_path / "sent", sizes=(30, 4, 4), lengths="2-3")
    keys = [(r.signer, r.extra["clips"]) for r in read_manifest(out) if r.split == "train"]
    assert len(set(keys)) == len(keys)


def test_deterministic_by_seed(clips, tmp_path):
    a, b, c = build(clips, tmp_path / "a"), build(clips, tmp_path / "b"), build(clips, tmp_path / "c", seed=1)
    info = [json.loads((d / "corpus.json").read_text()) for d in (a, b, c)]
    assert info[0]["content"] == info[1]["content"] != info[2]["content"]
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()


def test_rerun_is_idempotent_and_resumes(clips, tmp_path):
    out = build(clips, tmp_path / "sent")
    content = json.loads((out / "corpus.json").read_text())["content"]
    first = sorted((out / "features").glob("*.npy"))
    mtimes = {p: p.stat().st_mtime_ns for p in first}
    build(clips, out)  # the same command again: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in first} == mtimes
    # a crash half-way: some feature files and the manifest lost
    for p in first[::3]:
        p.unlink()
    (out / "manifest.csv").unlink()
    info = json.loads((out / "corpus.json").read_text())
    (out / "corpus.json").write_text(json.dumps({**info, "complete": False}))
    build(clips, out)
    assert json.loads((out / "corpus.json").read_text())["content"] == content
    assert len(list(out.glob(".*.tmp"))) == len(list((out / "features").glob(".*.tmp"))) == 0


def test_other_parameters_or_another_corpus_in_the_output_are_refused(clips, tmp_path):
    out = build(clips, tmp_path / "sent")
    with pytest.raises(SentenceError, match="other parameters.*seed"):
        build(clips, out, seed=5)
    with pytest.raises(SentenceError, match="without corpus.json"):
        build(clips, make_clips(tmp_path / "other"))
    with pytest.raises(SentenceError, match="new directory"):
        build(clips, clips)


def test_bad_sources_and_arguments(tmp_path):
    with pytest.raises(SentenceError, match="without a signer"):
        build(make_clips(tmp_path / "anon", with_signer=False), tmp_path / "o1")
    with pytest.raises(SentenceError, match="no signer for the test split"):
        build(make_clips(tmp_path / "two", signers=2), tmp_path / "o2")
    assert build(make_clips(tmp_path / "two2", signers=2), tmp_path / "o3", sizes=(4, 2, 0)).is_dir()  # no test split asked for
    with pytest.raises(SentenceError, match="source corpus"):
        build(tmp_path / "nothing", tmp_path / "o4")
    assert parse_range("2-5") == (2, 5) and parse_range("3") == (3, 3) and parse_range("0-2", "transition") == (0, 2)
    for bad in ("5-2", "0-3", "a-b", "1-2-3"):
        with pytest.raises(SentenceError):
            parse_range(bad)


def test_keep_splits_uses_the_sources_signer_split(tmp_path):
    src = make_clips(tmp_path / "clips")
    records = [SampleRecord(r.id, {"p4": "dev", "p5": "test"}.get(r.signer, "train"), r.glosses, r.path, r.signer) for r in read_manifest(src)]
    write_manifest(src, records)
    plan, signers = plan_sentences(Corpus(src), sizes=(8, 2, 2), keep_splits=True)
    assert signers == {"train": ["p0", "p1", "p2", "p3"], "dev": ["p4"], "test": ["p5"]}
    records[0] = SampleRecord(records[0].id, "test", records[0].glosses, records[0].path, records[0].signer)
    write_manifest(src, records)
    with pytest.raises(SentenceError, match="more than one split"):
        plan_sentences(Corpus(src), keep_splits=True)


def test_cli(clips, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["sentences", str(clips), "--out", str(out), "--lengths", "2-3", "--sizes", "6", "2", "2", "--seed", "1"]) == 0
    assert "converted 10" in capsys.readouterr().out
    assert main(["sentences", str(clips), "--out", str(out), "--lengths", "2-3", "--sizes", "6", "2", "2", "--seed", "1"]) == 0
    assert "skipped 10" in capsys.readouterr().out
    assert main(["sentences", str(clips), "--out", str(out), "--seed", "2"]) == 2
    assert "other parameters" in capsys.readouterr().err


@pytest.mark.real_data
def test_real_kaggle_sentences(tmp_path):
    if not KAGGLE.exists():
        pytest.skip(f"real data not available: {KAGGLE} (see ../shared/data/README.md)")
    src = kaggle_to_corpus(KAGGLE, tmp_path / "kaggle")
    out = build_sentences(src, tmp_path / "sent")  # the defaults: 2-5 signs, 500/80/80, 13/4/4 signers
    records = read_manifest(out, validate=True)
    info = json.loads((out / "corpus.json").read_text())
    assert [len(info["signers"][s]) for s in SPLITS] == [13, 4, 4]
    assert [sum(r.split == s for r in records) for s in SPLITS] == [500, 80, 80]
    assert {g for r in records for g in r.glosses} == {"HELLO", "THANKYOU"}
    assert all(2 <= len(r.glosses) <= 5 for r in records)
    by_split = {s: {r.signer for r in records if r.split == s} for s in SPLITS}
    assert not (by_split["train"] & (by_split["dev"] | by_split["test"])) and not (by_split["dev"] & by_split["test"])
    # real missing hands survive: NaN where MediaPipe did not see a hand, whole landmarks only
    arr = np.load(out / records[0].path)
    hands = arr[:, LAYOUT.hands].reshape(len(arr), -1, 3)
    assert np.isnan(hands).any() and (np.isnan(hands).all(-1) == np.isnan(hands).any(-1)).all()
    ds = MediaPipeFeatureDataset(out, "train", normalization="body", augment={"recipe": "all"})
    s = ds[0]
    assert s.features.shape[1] == 6516 and np.isfinite(s.features.numpy()).all()
