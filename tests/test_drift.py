"""Drift against a training profile (harness/profile.py, harness/checks/drift.py, `python -m harness drift`).

The real-data tests re-split the Kaggle clips (../shared/data/kaggle_asl_signs; skipped when
absent) at random: 30 reference samples, 12 new, the same signers. Unchanged, no drift is named
(10 seeds); each synthetic drift applied to the new part is named by its own finding only.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.augment import mirror
from data.corpus import Corpus, SampleRecord, atomic_save_npy, load_features, write_manifest
from data.layout import LAYOUT
from harness.checks.drift import check_drift, psi
from harness.findings import PASS, SKIP, WARN
from harness.profile import profile_corpus, profile_from_scan
from harness.scan import CorpusScan, scan_corpus, scan_file
from harness.thresholds import DEFAULTS
from tests.corpus_factory import make_corpus

REPO = Path(__file__).resolve().parents[1]
KAGGLE = REPO / ".." / "shared" / "data" / "kaggle_asl_signs"
SEEDS = range(10)
N_NEW = 12


# ----------------------------------------------------------------------------- synthetic drifts


def repeat_frames(raw, rng):  # recorded at twice the frame rate
    return np.repeat(raw, 2, axis=0)


def z_units(raw, rng):  # z in other units
    out = np.array(raw, dtype=np.float32)
    out[:, 2::3] *= 250
    return out


def hand_dropout(raw, rng):  # the detector loses the hands in 60% of the frames
    out = np.array(raw, dtype=np.float32)
    lost = rng.random(len(out)) < 0.6
    for hand in (LAYOUT.left_hand, LAYOUT.right_hand):
        out[np.ix_(lost, np.arange(hand.start, hand.stop))] = np.nan
    return out


def elsewhere(raw, rng):  # signers standing a quarter of the frame to the right
    out = np.array(raw, dtype=np.float32)
    out[:, 0::3] += 0.25
    return out


def mirrored(raw, rng):
    return mirror(np.asarray(raw, dtype=np.float32))


DRIFTS = {"fps": repeat_frames, "z": z_units, "presence": hand_dropout, "position": elsewhere, "lead": mirrored}


# ----------------------------------------------------------------------------- real data


def _right_handed(corpus_dir: Path, out: Path) -> Path:
    """The Kaggle clips with every left-led clip mirrored: a right-handed population (Kaggle
    itself mixes left- and right-led samples about evenly, so a mirror of it looks like itself)."""
    corpus = Corpus(corpus_dir)
    scan = scan_corpus(corpus)
    records = []
    for rec, f in zip(corpus.records, scan.files):
        raw = np.asarray(load_features(corpus.file(rec)), dtype=np.float32)
        if f.motion.get("left_hand", 0.0) > f.motion.get("right_hand", 0.0):
            raw = mirror(raw)
        atomic_save_npy(out / rec.path, raw)
        records.append(rec)
    write_manifest(out, records)
    return out


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    if not (KAGGLE / "train.csv").is_file():
        pytest.skip(f"the Kaggle ASL landmarks are not in {KAGGLE.resolve()}")
    from harness.faults.setups import kaggle_corpus

    root = tmp_path_factory.mktemp("drift")
    path = kaggle_corpus(root / "kaggle")
    return {"plain": path, "right_handed": _right_handed(path, root / "right_handed")}


def resplit(corpus_dir: Path, seed: int, drift=None, workdir: Path | None = None):
    """Reference and new profiles of a random re-split (N_NEW new samples), `drift` applied to the new ones."""
    corpus = Corpus(corpus_dir)
    scan = scan_corpus(corpus)
    rng = np.random.default_rng(seed)
    new_ids = set(rng.choice([r.id for r in corpus.records], size=N_NEW, replace=False))
    files = []
    for rec, f in zip(corpus.records, scan.files):
        if rec.id not in new_ids:
            files.append(dataclasses.replace(f, split="train"))
        elif drift is None:
            files.append(dataclasses.replace(f, split="new"))
        else:
            path = workdir / f"{rec.id}.npy"
            atomic_save_npy(path, drift(load_features(corpus.file(rec)), rng))
            files.append(scan_file(path, dataclasses.replace(rec, split="new"), DEFAULTS["max_abs_coordinate"], "ffill", False, DEFAULTS["max_abs_z"]))
    both = CorpusScan(files, None)
    return profile_from_scan(both, corpus.records, "train"), profile_from_scan(both, corpus.records, "new")


def fired(finding) -> set:
    return {f["group"] for f in finding.values["fired"]}


@pytest.mark.real_data
@pytest.mark.parametrize("population", ["plain", "right_handed"])
def test_no_drift_on_resplits_of_the_same_signers(kaggle, population):
    for seed in SEEDS:
        ref, new = resplit(kaggle[population], seed)
        f = check_drift(ref, new, DEFAULTS)
        assert f.status == PASS and not f.values["fired"], (seed, f.summary, f.values["scores"])


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(DRIFTS))
def test_each_synthetic_drift_is_named_by_its_own_finding(kaggle, tmp_path, name):
    population = "right_handed" if name == "lead" else "plain"
    for seed in SEEDS:
        ref, new = resplit(kaggle[population], seed, DRIFTS[name], tmp_path)
        f = check_drift(ref, new, DEFAULTS)
        assert f.status == WARN and fired(f) == {name}, (seed, f.summary, f.values["scores"])
        assert all(x["fix"] for x in f.values["fired"])


@pytest.mark.real_data
def test_finding_texts(kaggle, tmp_path):
    ref, new = resplit(kaggle["plain"], 0, z_units, tmp_path)
    assert "x the training scale: other units" in check_drift(ref, new, DEFAULTS).summary
    ref, new = resplit(kaggle["right_handed"], 0, mirrored, tmp_path)
    f = check_drift(ref, new, DEFAULTS)
    assert "left and right swapped: a mirrored camera?" in f.summary and "100% in training" in f.summary
    ref, new = resplit(kaggle["plain"], 0, repeat_frames, tmp_path)
    assert "another frame rate" in check_drift(ref, new, DEFAULTS).summary


# ----------------------------------------------------------------------------- synthetic corpora


def test_declared_fps_and_skip(tmp_path):
    corpus = make_corpus(tmp_path / "c", n_train=10, n_dev=10, n_test=0)
    ref, dev = profile_corpus(corpus, "train"), profile_corpus(corpus, "dev")
    json.dumps(ref)  # JSON-serialisable
    assert ref["version"] == 1 and ref["samples"] == 10 and ref["fps"]["median"] == 25.0
    assert check_drift(ref, dev, DEFAULTS).status == PASS
    recs = [dataclasses.replace(r, fps=50.0) if r.split == "dev" else r for r in Corpus(corpus).records]
    write_manifest(corpus, recs)
    f = check_drift(ref, profile_corpus(corpus, "dev"), DEFAULTS)
    assert fired(f) == {"fps"} and "fps 50 vs 25 in training: resample to 25 fps" in f.summary + ": " + f.hint
    few = profile_corpus(make_corpus(tmp_path / "small", n_train=3, n_dev=2, n_test=0), "dev")
    s = check_drift(ref, few, DEFAULTS)
    assert s.status == SKIP and "too few samples" in s.summary


def test_psi():
    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    assert psi(a, rng.normal(size=300)) < 0.1
    assert psi(a, rng.normal(loc=3, size=300)) > 1.0
    assert np.isnan(psi(a, []))


def test_cli(tmp_path):
    corpus = make_corpus(tmp_path / "c", n_train=10, n_dev=10, n_test=0)
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(profile_corpus(corpus, "train")))
    recs = [dataclasses.replace(r, fps=50.0) if r.split == "dev" else r for r in Corpus(corpus).records]
    write_manifest(corpus, recs)
    out = tmp_path / "drift.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "harness", "drift", "--reference", str(ref), "--data", str(corpus), "--split", "dev", "--json", str(out)],
                       cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "fps 50 vs 25 in training" in p.stdout
    assert json.loads(out.read_text())["values"]["fired"][0]["group"] == "fps"


def test_cli_arguments():
    from harness.__main__ import main

    assert main(["drift", "--reference", "/nonexistent/ref.json", "--data", "/nonexistent"]) == 2


def test_samples_record_fps_unknown():
    scan = CorpusScan([], None)
    prof = profile_from_scan(scan, [SampleRecord("a", "train", ("A",), "a.npy")])
    assert prof["samples"] == 0 and prof["fps"]["median"] is None


def test_cli_references(tmp_path, capsys):
    import torch

    from harness.__main__ import main

    corpus = make_corpus(tmp_path / "c", n_train=10, n_dev=10, n_test=0)
    assert main(["drift", "--reference", str(corpus), "--data", str(corpus), "--split", "dev"]) == 0
    bare = tmp_path / "bare.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, bare)
    assert main(["drift", "--reference", str(bare), "--data", str(corpus)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no \"data_profile\"" in err and len(err.splitlines()) == 1
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "data_profile": profile_corpus(corpus, "train")}, ckpt)
    assert main(["drift", "--reference", str(ckpt), "--data", str(corpus), "--split", "dev"]) == 0
    assert "[PASS] drift" in capsys.readouterr().out


@pytest.mark.real_data
def test_real_participant_split_is_other_signers_not_a_mirror(kaggle):
    """Kaggle's own split by participant: dev + test signers all lead with the right hand, train
    ~half; their left hand is never seen (the shift check's finding): named, but not as a mirror."""
    corpus = Corpus(kaggle["plain"])
    scan = scan_corpus(corpus)
    both = CorpusScan([dataclasses.replace(f, split="train" if f.split == "train" else "new") for f in scan.files], None)
    f = check_drift(profile_from_scan(both, corpus.records, "train"), profile_from_scan(both, corpus.records, "new"), DEFAULTS)
    assert f.status == WARN and {"lead", "presence"} <= fired(f)
    assert "other dominant hands" in f.summary and "mirrored" not in f.summary


def test_the_gate_profiles_the_train_split_off_its_own_scan(tmp_path):
    """train.py stores the gate's profile, read off the scan its checks made: the same profile as
    a pass of its own over the train split, and none without a context or a corpus."""
    from harness.context import HarnessContext
    from harness.gate import _data_profile
    from model.config import TrainConfig

    corpus = make_corpus(tmp_path / "c", n_train=8, n_dev=3, n_test=3)
    ctx = HarnessContext(TrainConfig(data_dir=str(corpus), device="cpu"))
    assert _data_profile(ctx) == profile_corpus(corpus, split="train")
    assert _data_profile(None) is None
