"""Drift against a training profile (harness/profile.py, harness/checks/drift.py, `python -m harness drift`).

The real-data tests re-split the Kaggle clips (../shared/data/kaggle_asl_signs; skipped when
absent) at random: 30 reference samples, 12 new, the same signers. Unchanged, no drift is named
(10 seeds); each synthetic drift applied to the new part is named by its own finding only.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.augment import mirror
from data.corpus import Corpus, SampleRecord, atomic_save_npy, load_features, write_manifest
from data.layout import LAYOUT, RAW_DIM
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


@functools.lru_cache(maxsize=None)
def _corpus_and_scan(corpus_dir: Path) -> tuple[Corpus, CorpusScan]:
    """A corpus and its scan, once a test process (every re-split of it reads the same scan)."""
    corpus = Corpus(corpus_dir)
    return corpus, scan_corpus(corpus)


def resplit(corpus_dir: Path, seed: int, drift=None, workdir: Path | None = None):
    """Reference and new profiles of a random re-split (N_NEW new samples), `drift` applied to the new ones."""
    corpus, scan = _corpus_and_scan(corpus_dir)
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


# ----------------------------------------------------------------------------- data/ profile and comparison (no harness)


def test_the_data_profile_is_the_harness_scans(tmp_path):
    """data.profile measures each file itself (the model commands' path); the harness reads the
    same measurements off its corpus scan: one profile, float16 and [T, 6516] files included."""
    from data.profile import profile_corpus as data_profile_corpus
    from data.temporal import temporal_features

    corpus = make_corpus(tmp_path / "c", n_train=6, n_dev=3, n_test=0)
    recs = Corpus(corpus).records
    raw = np.asarray(load_features(corpus / recs[0].path), dtype=np.float32)
    atomic_save_npy(corpus / recs[0].path, raw.astype(np.float16))
    raw = np.asarray(load_features(corpus / recs[1].path), dtype=np.float32)
    atomic_save_npy(corpus / recs[1].path, np.concatenate([raw, np.nan_to_num(temporal_features(raw))], axis=1))
    for split in ("train", "dev", None):
        ours, scanned = flat(data_profile_corpus(corpus, split)), flat(profile_corpus(corpus, split))
        assert ours.keys() == scanned.keys()
        for key, value in ours.items():  # float32 sums taken in another order may differ in the last bits
            assert value == (pytest.approx(scanned[key], rel=1e-5) if isinstance(value, float) else scanned[key]), key


def flat(d, prefix="") -> dict:
    """A nested profile as {"a.b.0": value}."""
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else None
    if items is None:
        return {prefix: d}
    return {k: v for key, value in items for k, v in flat(value, f"{prefix}.{key}" if prefix else str(key)).items()}


def test_the_drift_thresholds_are_the_harness_ones():
    from data import drift, profile

    assert {k: DEFAULTS[k] for k in drift.DEFAULTS} == drift.DEFAULTS
    assert sorted(k for k in DEFAULTS if k.startswith("drift_")) == sorted(drift.DEFAULTS)
    assert (profile.HAND_LEAD, profile.MAX_ABS_COORDINATE, profile.MAX_ABS_Z) == (DEFAULTS["shift_hand_lead"], DEFAULTS["max_abs_coordinate"], DEFAULTS["max_abs_z"])


def no_hands(raw, rng):  # a video where MediaPipe never finds a hand
    out = np.array(raw, dtype=np.float32)
    out[:, LAYOUT.hands] = np.nan
    return out


@pytest.mark.real_data
def test_one_sample_against_a_training_profile(kaggle):
    """The sample mode (model.recognize): each real clip alone against the profile of all of
    them names nothing; z x250 names z, a clip without hands names presence, a mirrored clip of a
    right-handed population names the leading hand, each by its own finding only."""
    from data.drift import compare
    from data.profile import profile_sample

    rng = np.random.default_rng(0)
    for population, drift, expected in (("plain", None, set()), ("right_handed", None, set()), ("plain", z_units, {"z"}),
                                        ("plain", no_hands, {"presence"}), ("right_handed", mirrored, {"lead"})):
        corpus = Corpus(kaggle[population])
        reference = profile_corpus(kaggle[population])
        named = []
        for rec in corpus.records:
            raw = load_features(corpus.file(rec))
            d = compare(reference, profile_sample(raw if drift is None else drift(raw, rng)), DEFAULTS, mode="sample")
            assert d.mode == "sample" and {f["group"] for f in d.fired} <= expected, (population, rec.id, d.summary)
            assert "position" in d.not_judged() and all(f["fix"] for f in d.fired)
            named.append(bool(d.fired))
        if expected == {"lead"}:  # the clips a hand leads (the rest move both hands alike)
            assert sum(named) >= reference["lead"]["led_samples"] * 0.9, sum(named)
        elif expected:
            assert all(named)


@pytest.mark.real_data
def test_the_fix_knows_a_body_centred_model(kaggle, tmp_path):
    from data.drift import compare

    ref, new = resplit(kaggle["plain"], 0, elsewhere, tmp_path)
    (plain,) = compare(ref, new, DEFAULTS, mode="corpus").fired
    (body,) = compare(ref, new, DEFAULTS, mode="corpus", normalize="body").fired
    assert plain["text"] == body["text"] and plain["fix"].startswith("body-centred normalization")
    assert body["fix"].startswith("the model's body-centred input (normalize = \"body\") already drops the place in the frame")


def test_sample_mode_declared_fps():
    from data.drift import compare
    from data.profile import measure_sample, profile_of, profile_sample
    from tests.corpus_factory import random_raw

    rng = np.random.default_rng(1)
    raws = [random_raw(rng, 30) for _ in range(10)]
    reference = profile_of([measure_sample(r, f"s{i}") for i, r in enumerate(raws)], {f"s{i}": 25.0 for i in range(10)}, "train")
    d = compare(reference, profile_sample(raws[0], fps=60.0), mode="sample")
    assert d.lines() == ["drift: fps 60 vs 25 in training; fix: resample to 25 fps (data.augment.resample)"]
    assert compare(reference, profile_sample(raws[0], fps=25.0), mode="sample").status == "none"
    assert compare(reference, profile_sample(raws[0]), mode="sample").status == "none"  # no frame rate declared: not judged
    few = compare(profile_of([measure_sample(raws[0], "a")], {}, "train"), profile_sample(raws[0]), mode="sample")
    assert few.status == "skipped" and "too few samples in the training profile" in few.reason


# ----------------------------------------------------------------------------- the HTML report


def _z_and_fps(corpus: Path, split: str = "dev") -> None:
    """The split's z in other units (x250) and declared at 50 fps: two drifted groups."""
    recs = []
    for rec in Corpus(corpus).records:
        if rec.split == split:
            atomic_save_npy(corpus / rec.path, z_units(load_features(corpus / rec.path), None))
            rec = dataclasses.replace(rec, fps=50.0)
        recs.append(rec)
    write_manifest(corpus, recs)


def test_cli_html_has_the_drift_section_and_a_plot_per_drifted_group(tmp_path, capsys):
    import re

    from harness.__main__ import main

    corpus = make_corpus(tmp_path / "c", n_train=10, n_dev=10, n_test=0)
    same = tmp_path / "same.html"
    assert main(["drift", "--reference", str(corpus), "--data", str(corpus), "--split", "dev", "--html", str(same)]) == 0
    page = same.read_text()
    assert "id='harness-drift'" in page and "NO DRIFT" in page and "<img" not in page
    _z_and_fps(corpus)
    out = tmp_path / "drift.html"
    assert main(["drift", "--reference", str(corpus), "--data", str(corpus), "--split", "dev", "--html", str(out)]) == 1
    assert f"report: {out}" in capsys.readouterr().out
    page = out.read_text()
    table = page[page.index("<table class='drift'>"):page.index("</table>")]
    for header in ("group", "score", "threshold", "verdict", "named finding"):
        assert f"<th>{header}</th>" in table
    assert table.count("<span class='pill drift'>") == 2 and "fps 50 vs 25 in training; fix: resample to 25 fps" in table
    assert "x the training scale: other units" in table
    assert len(re.findall(r"<img src='data:image/png;base64,[A-Za-z0-9+/=]{200,}'", page)) == 2
    assert set(re.findall(r"<figure data-group='(\w+)'>", page)) == {"fps", "z"}
    assert main(["drift", "--reference", str(corpus), "--data", str(corpus), "--html", str(tmp_path / "no" / "such" / "dir.html")]) == 2
    assert "--html" in capsys.readouterr().err


# ----------------------------------------------------------------------------- model.evaluate and model.recognize


def write_checkpoint(path: Path, corpus: Path, data_profile: dict | None) -> Path:
    """An untrained i3d_tiny checkpoint of the shape train.py writes, with the given data profile:
    what drift needs of a checkpoint, without a training run."""
    import torch

    from data.dataset import Vocabulary
    from data.layout import input_dim
    from model import training
    from model.config import TrainConfig

    cfg = TrainConfig(model="i3d_tiny", data_dir=str(corpus), batch_size=4)
    vocab = Vocabulary.from_records(Corpus(corpus).records)
    torch.manual_seed(0)
    model = training.build_model(cfg, len(vocab))
    torch.save({"model_name": cfg.model, "model_args": training.model_args(cfg, model, len(vocab), input_dim(cfg.modalities)),
                "model": model.state_dict(), "vocab": vocab.to_list(), "config": cfg.to_dict(), "norm_stats": None,
                "data_profile": data_profile}, path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A corpus (10 train, 10 dev), a checkpoint carrying its train profile, one without, and a
    copy of the corpus whose dev split has z in other units and 50 fps."""
    import shutil
    from types import SimpleNamespace

    root = tmp_path_factory.mktemp("drift_use")
    corpus = make_corpus(root / "corpus", n_train=10, n_dev=10, n_test=0)
    drifted = shutil.copytree(corpus, root / "drifted")
    _z_and_fps(drifted)
    return SimpleNamespace(root=root, corpus=corpus, drifted=drifted, ckpt=write_checkpoint(root / "ckpt.pt", corpus, profile_corpus(corpus, "train")),
                           bare=write_checkpoint(root / "bare.pt", corpus, None))


def call(main, argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def drift_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("drift:")]


@pytest.mark.usefixtures("one_torch_thread")
def test_evaluate_names_drift_before_the_wer(trained, capsys):
    from model import evaluate

    code, out, err = call(evaluate.main, [trained.ckpt, "--split", "dev", "--beam_width", 1], capsys)
    assert code == 0, err
    assert drift_lines(out) == ["drift: none against the training data (10 dev samples vs 10 in training)"]
    code, out, err = call(evaluate.main, [trained.ckpt, "--split", "dev", "--beam_width", 1, "--data_dir", trained.drifted], capsys)
    assert code == 0, err
    lines = out.splitlines()
    named = [i for i, ln in enumerate(lines) if ln.startswith("drift:")]
    assert len(named) == 2, out
    assert lines[named[0]] == "drift: fps 50 vs 25 in training; fix: resample to 25 fps (data.augment.resample)"
    assert lines[named[1]].startswith("drift: z ") and "x the training scale: other units; fix: convert z to MediaPipe's units" in lines[named[1]]
    assert max(named) < next(i for i, ln in enumerate(lines) if ln.startswith("dev WER "))  # before the score
    code, out, _ = call(evaluate.main, [trained.ckpt, "--split", "dev", "--beam_width", 1, "--data_dir", trained.drifted, "--no-drift"], capsys)
    assert code == 0 and not drift_lines(out) and "dev WER " in out
    code, out, _ = call(evaluate.main, [trained.bare, "--split", "dev", "--beam_width", 1, "--data_dir", trained.drifted], capsys)
    assert code == 0 and not drift_lines(out)  # a checkpoint without a profile: nothing to compare with


@pytest.mark.usefixtures("one_torch_thread")
def test_recognize_names_what_one_input_shows(trained, tmp_path, capsys):
    from data.convert import export_pose
    from model import recognize

    plain, z = trained.corpus / "features" / "dev001.npy", trained.drifted / "features" / "dev001.npy"
    pose = export_pose(trained.corpus, "dev002", tmp_path / "dev002.pose", fps=60.0)
    out = tmp_path / "rec.json"
    code, text, err = call(recognize.main, [trained.ckpt, plain, z, pose, "--out", out], capsys)
    assert code == 0, err
    named = drift_lines(text)
    assert len(named) == 2 and named[0].startswith("drift: z ") and "x the training scale: other units; fix: convert z to MediaPipe's units" in named[0], text
    assert named[1] == "drift: fps 60 vs 25 in training; fix: resample to 25 fps (data.augment.resample)"
    lines = text.splitlines()
    for name, kind in ((z, "z"), (pose, "fps")):  # under the input's first line, before its glosses
        head = lines.index(next(ln for ln in lines if ln.startswith(f"{name}: ")))
        assert lines[head + 1].startswith(f"  drift: {kind}") and lines[head + 2].startswith("  glosses:")
    results = json.loads(out.read_text())
    assert [r["drift"]["status"] for r in results] == ["none", "drift", "drift"]
    assert [[f["group"] for f in r["drift"]["findings"]] for r in results] == [[], ["z"], ["fps"]]
    assert {"length", "speed", "position"} <= set(results[0]["drift"]["not_judged"])
    code, text, _ = call(recognize.main, [trained.ckpt, z, pose, "--out", out, "--no-drift"], capsys)
    assert code == 0 and not drift_lines(text) and all("drift" not in r for r in json.loads(out.read_text()))
    code, text, _ = call(recognize.main, [trained.bare, z, "--out", out], capsys)
    assert code == 0 and not drift_lines(text) and "drift" not in json.loads(out.read_text())[0]


def test_the_model_commands_drift_without_the_harness(trained, tmp_path):
    """model/ and data/ never import harness/: evaluate and recognize name a drift with neither
    the harness nor matplotlib loaded."""
    code = (
        "import sys\n"
        "from model import evaluate, recognize\n"
        f"assert evaluate.main([{str(trained.ckpt)!r}, '--split', 'dev', '--beam_width', '1', '--threads', '1', '--data_dir', {str(trained.drifted)!r}]) == 0\n"
        f"assert recognize.main([{str(trained.ckpt)!r}, {str(trained.drifted / 'features' / 'dev000.npy')!r}, '--threads', '1']) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('harness', 'matplotlib', 'pytest'))\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert p.stdout.count("drift: z ") == 2 and "drift: fps 50 vs 25 in training" in p.stdout


# ----------------------------------------------------------------------------- what a user's dataset yields


class Yields:
    """A user's dataset as the profile reads it: items with .features ([T, F])."""

    def __init__(self, arrays):
        self.arrays = arrays

    def __len__(self):
        return len(self.arrays)

    def __getitem__(self, i):
        return dataclasses.make_dataclass("Item", ["features"])(self.arrays[i])


def _filled(raw):  # a user's dataset that fills undetected landmarks with 0
    return np.nan_to_num(np.asarray(raw, dtype=np.float32), nan=0.0)


def _pixels(raw, rng):  # x, y in pixels of a 640 x 480 frame
    out = np.array(raw, dtype=np.float32)
    out[:, 0::3] *= 640
    out[:, 1::3] *= 480
    return out


def _dataset_resplit(corpus_dir, seed, drift=None, form=_filled):
    from data.profile import profile_dataset

    corpus = Corpus(corpus_dir)
    raws = {r.id: np.asarray(load_features(corpus.file(r)), dtype=np.float32)[:, : RAW_DIM] for r in corpus.records}
    rng = np.random.default_rng(seed)
    new_ids = set(rng.choice(sorted(raws), size=N_NEW, replace=False))
    ref = profile_dataset(Yields([form(x) for i, x in raws.items() if i not in new_ids]))
    new = profile_dataset(Yields([form(drift(x, rng) if drift else x) for i, x in raws.items() if i in new_ids]), "new")
    return ref, new


@pytest.mark.real_data
def test_dataset_profiles_name_no_drift_on_resplits_and_name_each_synthetic_one(kaggle):
    """What a user's dataset yields (landmarks, undetected ones filled with 0): no finding on 10
    re-splits of the same signers; z in other units and a signer standing elsewhere move the
    columns' means, pixels the scale (data/drift.py: compare_datasets)."""
    from data.drift import compare

    for seed in SEEDS:
        ref, new = _dataset_resplit(kaggle["plain"], seed)
        d = compare(ref, new)
        assert d.status == "none" and d.mode == "corpus", (seed, d.summary)
    for drift, groups in ((z_units, {"shift"}), (elsewhere, {"shift"}), (_pixels, {"scale", "shift"})):
        for seed in SEEDS[:3]:
            d = compare(*_dataset_resplit(kaggle["plain"], seed, drift))
            assert {f["group"] for f in d.fired} == groups, (drift.__name__, seed, d.summary)
    d = compare(*_dataset_resplit(kaggle["plain"], 0, _pixels))
    assert "training scale (median column std): other units or another normalization" in d.summary
    assert "apply the training's normalization" in d.hint


def test_dataset_profile_width_nonfinite_sample_mode_and_kinds():
    from data.drift import compare
    from data.profile import profile_dataset, profile_sample

    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(int(rng.integers(20, 60)), 12)).astype(np.float32) for _ in range(30)]
    ref = profile_dataset(Yields(arrays))
    assert (ref["kind"], ref["samples"], ref["width"], ref["frames"]) == ("dataset", 30, 12, sum(len(a) for a in arrays))
    every = np.concatenate(arrays).astype(np.float64)
    assert np.allclose(ref["columns"]["mean"], every.mean(0), atol=1e-5) and np.allclose(ref["columns"]["std"], every.std(0), atol=1e-5)
    assert json.loads(json.dumps(ref)) == ref
    same = profile_dataset(Yields([rng.normal(size=(int(rng.integers(20, 60)), 12)).astype(np.float32) for _ in range(12)]))
    assert compare(ref, same).status == "none"
    # another width: named, nothing else judged
    wide = profile_dataset(Yields([np.zeros((30, 13), np.float32)] * 10))
    d = compare(ref, wide)
    assert [f["group"] for f in d.fired] == ["width"] and "F=13 a frame vs 12 in training" in d.summary
    # NaN where training had none
    holes = [a.copy() for a in arrays[:10]]
    for a in holes:
        a[::3, :4] = np.nan
    d = compare(ref, profile_dataset(Yields(holes)))
    share = sum(np.isnan(a).sum() for a in holes) / sum(a.size for a in holes)
    assert [f["group"] for f in d.fired] == ["nonfinite"] and f"NaN/Inf in {share:.1%} of values vs 0.0% in training" in d.summary, d.summary
    # one sample: its scale is judged, its column means and length are not
    d = compare(ref, profile_dataset(Yields([arrays[0] * 100])))
    assert d.mode == "sample" and [f["group"] for f in d.fired] == ["scale"]
    assert {r["key"]: r["verdict"] for r in d.rows} == {"scale": "drift", "shift": "skipped", "length": "skipped", "nonfinite": "ok"}
    assert compare(ref, profile_dataset(Yields([arrays[0]]))).status == "none"
    # a landmark profile against a dataset's: not compared, saying why
    d = compare(ref, profile_sample(np.zeros((20, RAW_DIM), np.float32)))
    assert d.status == "skipped" and "profile both the same way" in d.reason
    # at most max_samples items, evenly spread
    assert profile_dataset(Yields(arrays), max_samples=5)["samples"] == 5


def test_cli_compares_what_a_configured_dataset_yields(tmp_path, capsys):
    """`python -m harness drift --config`: a user's dataset (tests/outside/incident_native, no
    corpus) profiled by what it yields, against its own train split and against a reference
    of another width."""
    from data.profile import profile_dataset
    from harness.checks.drift import run_drift
    from model.config import load_config
    from model.training import build_data

    config = REPO / "tests" / "outside" / "incident_native" / "harness.toml"
    train = profile_dataset(build_data(load_config(config)).splits["train"], "train")
    ref = tmp_path / "train_profile.json"
    ref.write_text(json.dumps(train))
    assert run_drift(["--reference", str(ref), "--config", str(config), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert f"[PASS] drift: {train['samples']} new samples (dataset " in out and "no drift" in out, out
    other = tmp_path / "other_width.json"
    other.write_text(json.dumps(dict(train, width=train["width"] + 1)))
    assert run_drift(["--reference", str(other), "--config", str(config)]) == 1
    assert f"features have F={train['width']} a frame vs {train['width'] + 1} in training" in capsys.readouterr().out
    # 6 test items: below drift_min_samples, skipped saying so (exit 0: nothing named)
    assert run_drift(["--reference", str(ref), "--config", str(config), "--split", "test"]) == 0
    assert "[SKIP] drift: 6 new samples" in capsys.readouterr().out
    assert run_drift(["--reference", str(ref), "--data", str(tmp_path), "--config", str(config)]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
