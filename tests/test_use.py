"""Using a trained checkpoint: model.evaluate, model.recognize, model.export (issue 12).

One tiny model is trained once with train.py (its main(), 2 epochs, gate skipped); evaluate
must print exactly the WER lines train.py printed for the same checkpoint and decoder;
recognize must see the dataset's features and give evaluate's greedy hypotheses with spans
from the CTC path; exported files must match PyTorch on padded batches; every bad input is
exit code 2 with a message naming the file and no traceback.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from data.synthetic import generate_corpus
from model import evaluate as evaluate_mod
from model import export as export_mod
from model import recognize as recognize_mod
from model.checkpoint import load_trained
from model.decode import greedy_decode
from tests.corpus_factory import make_corpus

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO.parent / "shared" / "data" / "videos"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_module(module: str, *args, cwd, timeout=300):
    """python -m MODULE ARGS from `cwd` (a directory outside the repository): what a user types."""
    env = {**os.environ, "PYTHONPATH": ""}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A corpus, a 2-epoch train.py run on it and what train.py printed (its main() in this
    process: the commands below are what this module runs as a user does)."""
    root = tmp_path_factory.mktemp("use")
    corpus = generate_corpus(root / "corpus", seed=3, n_train=16, n_dev=4, n_test=4)
    config = root / "small.json"
    config.write_text(json.dumps({"model": "i3d_tiny", "batch_size": 4}))
    import train

    out = root / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = train.main(["--threads", "1", "--data_dir", str(corpus), "--config", str(config), "--output_dir", str(out), "--epochs", "2", "--skip-gate"])
    assert status == 0, printed.getvalue()[-3000:]
    # a checkpoint whose greedy paths are not all blank: the classifier of best.pt scaled up and the
    # blank's row zeroed, so the argmax changes from frame to frame (recognize's spans and glosses
    # then say something)
    ckpt = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    ckpt["model"]["classifier.weight"] = ckpt["model"]["classifier.weight"] * 400
    ckpt["model"]["classifier.weight"][0] = 0  # the blank's logit 0: a gloss whose logit is above it wins the frame
    ckpt["model"]["classifier.bias"][0] = 0
    torch.save(ckpt, root / "busy.pt")
    return SimpleNamespace(root=root, corpus=corpus, out=out, best=out / "best.pt", last=out / "last.pt", busy=root / "busy.pt", stdout=printed.getvalue())


def call(main, argv, capsys):
    """A command's main() in-process: (exit code, stdout, stderr); an uncaught exception fails the test."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def wer_line(text: str, split: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith(f"{split} WER ")]
    assert len(lines) == 1, text
    return lines[0]


def epoch_wers(stdout: str) -> list[str]:
    found = re.findall(r"^epoch\s+\d+\s+loss \S+\s+dev WER ([\d.]+%) \(greedy\)", stdout, flags=re.M)
    assert found, stdout
    return found


# ----------------------------------------------------------------------------- train.py's labels


def test_train_py_names_the_decoder_of_every_wer(run):
    epochs = [ln for ln in run.stdout.splitlines() if ln.startswith("epoch ")]
    assert len(epochs) == 2 and all("dev WER" in ln and "(greedy)" in ln for ln in epochs), run.stdout
    assert "best.pt: lowest dev WER, greedy decoding, checked every epoch" in run.stdout
    assert "decode best.pt with beam 5" in run.stdout
    for split in ("dev", "test"):
        assert re.fullmatch(rf"{split} WER [\d.]+% \(beam 5; \d+ sub, \d+ del, \d+ ins over \d+ words\)", wer_line(run.stdout, split))


# ----------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("split", ["dev", "test"])
def test_evaluate_prints_train_py_closing_line(run, split, capsys):
    code, out, err = call(evaluate_mod.main, [run.best, "--split", split], capsys)
    assert code == 0, err
    assert wer_line(out, split) == wer_line(run.stdout, split)  # same number, same S/D/I, same decoder label


def test_evaluate_greedy_reproduces_the_epoch_lines(run, capsys):
    epochs = epoch_wers(run.stdout)
    best = min(epochs, key=lambda w: float(w[:-1]))
    code, out, _ = call(evaluate_mod.main, [run.best, "--split", "dev", "--beam_width", 1], capsys)
    assert code == 0 and wer_line(out, "dev").startswith(f"dev WER {best} (greedy;"), out
    code, out, _ = call(evaluate_mod.main, [run.last, "--split", "dev", "--beam_width", 1], capsys)
    assert code == 0 and wer_line(out, "dev").startswith(f"dev WER {epochs[-1]} (greedy;"), out


def test_evaluate_csv_adds_up_to_the_corpus_wer(run, tmp_path, capsys):
    path = tmp_path / "per_sample.csv"
    code, out, _ = call(evaluate_mod.main, [run.busy, "--split", "dev", "--out", path], capsys)
    assert code == 0
    rows = list(csv.DictReader(path.open()))
    assert [r["id"] for r in rows] == [f"demo-dev-{i:04d}" for i in range(4)]
    assert set(rows[0]) >= {"id", "reference", "hypothesis", "errors", "substitutions", "deletions", "insertions"}
    s, d, i, n = map(int, re.search(r"\((?:greedy|beam \d+); (\d+) sub, (\d+) del, (\d+) ins over (\d+) words", out).groups())
    assert sum(int(r["errors"]) for r in rows) == s + d + i
    assert sum(int(r["substitutions"]) for r in rows) == s and sum(int(r["insertions"]) for r in rows) == i
    assert sum(len(r["reference"].split()) for r in rows) == n
    manifest = {r["id"]: r["glosses"] for r in csv.DictReader((run.corpus / "manifest.csv").open())}
    assert all(r["reference"] == manifest[r["id"]] for r in rows)
    if s:
        assert "most confused gloss pairs" in out


def test_evaluate_applies_phoenix_cleanup_by_corpus_setting(run, tmp_path, capsys):
    import shutil

    corpus = shutil.copytree(run.corpus, tmp_path / "phoenixish")
    (corpus / "corpus.json").write_text(json.dumps({"dataset": "phoenix2014"}))
    code, out, _ = call(evaluate_mod.main, [run.best, "--data_dir", corpus, "--split", "dev"], capsys)
    assert code == 0 and "PHOENIX clean-up on" in out
    code, out, _ = call(evaluate_mod.main, [run.best, "--split", "dev"], capsys)
    assert code == 0 and "PHOENIX clean-up off" in out


def test_evaluate_a_corpus_holding_only_the_scored_split(run, tmp_path, capsys):
    import shutil

    from data.corpus import SampleRecord, read_manifest, write_manifest

    corpus = tmp_path / "test_only"
    shutil.copytree(run.corpus / "features", corpus / "features")
    records = [r for r in read_manifest(run.corpus) if r.split == "test"]
    records[0] = SampleRecord(records[0].id, "test", records[0].glosses + ("UNSEEN",), records[0].path, records[0].signer, records[0].fps)
    write_manifest(corpus, records)
    code, out, _ = call(evaluate_mod.main, [run.best, "--data_dir", corpus], capsys)
    assert code == 0 and "1 reference gloss(es) outside the checkpoint's vocabulary, counted as errors: UNSEEN 1" in out
    code, _, err = call(evaluate_mod.main, [run.best, "--data_dir", corpus, "--split", "dev"], capsys)
    assert code == 2 and "no 'dev' split (it has ['test'])" in err


def test_evaluate_command_from_outside_the_repository(run, tmp_path):
    ckpt = os.path.relpath(run.best, tmp_path)  # a relative path, from another directory
    r = run_module("model.evaluate", ckpt, "--split", "test", "--threads", "1", "--out", "errors.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert wer_line(r.stdout, "test") == wer_line(run.stdout, "test")
    assert (tmp_path / "errors.csv").is_file()


# ----------------------------------------------------------------------------- recognize


@pytest.mark.parametrize("normalize, modalities", [("body", None), ("global", ("pose", "hands")), ("per_sample", ("hands", "temporal"))])
def test_recognize_features_are_the_datasets(run, normalize, modalities):
    from data.dataset import MediaPipeFeatureDataset, compute_train_stats
    from data.corpus import Corpus, load_features
    from model.config import TrainConfig

    stats = compute_train_stats(Corpus(run.corpus)) if normalize == "global" else None
    ds = MediaPipeFeatureDataset(run.corpus, "test", normalization=normalize, modalities=modalities, stats=stats)
    trained = SimpleNamespace(cfg=TrainConfig(normalize=normalize, modalities=modalities), stats=stats)
    for i in range(len(ds)):
        raw = load_features(run.corpus / ds.records[i].path, mmap=False)
        assert np.array_equal(recognize_mod.model_input(trained, raw), ds[i].features.numpy())


def test_recognize_npy_gives_evaluates_greedy_hypotheses_and_ctc_spans(run, tmp_path, capsys):
    csv_path = tmp_path / "dev.csv"
    assert call(evaluate_mod.main, [run.busy, "--split", "dev", "--beam_width", 1, "--out", csv_path], capsys)[0] == 0
    hyps = {r["id"]: r["hypothesis"].split() for r in csv.DictReader(csv_path.open())}
    inputs = [run.corpus / "features" / f"{sid}.npy" for sid in sorted(hyps)]
    out = tmp_path / "rec.json"
    code, text, err = call(recognize_mod.main, [run.busy, *inputs, "--out", out], capsys)
    assert code == 0, err
    results = json.loads(out.read_text())
    assert [r["input"] for r in results] == [str(p) for p in inputs]
    assert any(r["glosses"] for r in results)
    trained = load_trained(run.busy)
    for path, res in zip(inputs, results):
        assert res["glosses"] == hyps[path.stem] and res["decoder"] == "greedy" and res["kind"] == "npy"
        assert res["stride"] == 4 and res["frames"] == np.load(path).shape[0]
        # the spans are the greedy path's runs, mapped back through the stride
        x = torch.from_numpy(recognize_mod.model_input(trained, np.load(path)))[None]
        with torch.no_grad():
            log_probs, out_lengths = trained.model(x, torch.tensor([x.shape[1]]))
        (hyp,) = greedy_decode(log_probs, out_lengths)
        assert [s["gloss"] for s in res["segments"]] == res["glosses"] == trained.vocab.decode(hyp.tokens)
        assert [s["start_frame"] for s in res["segments"]] == [4 * t for t in hyp.timesteps]
        assert res["score"] == pytest.approx(hyp.score, abs=1e-3)
        for s in res["segments"]:
            assert 0 <= s["start_frame"] < s["end_frame"] <= res["frames"] and s["start_s"] is None and 0 < s["confidence"] <= 1
    assert results[0]["input"] in text


def test_recognize_pose_file_equals_its_npy(run, tmp_path, capsys):
    from data.convert import export_pose

    sid = "demo-dev-0001"
    pose = export_pose(run.corpus, sid, tmp_path / f"{sid}.pose")
    out = tmp_path / "rec.json"
    code, _, err = call(recognize_mod.main, [run.busy, pose, run.corpus / "features" / f"{sid}.npy", "--out", out], capsys)
    assert code == 0, err
    from_pose, from_npy = json.loads(out.read_text())
    assert from_pose["kind"] == "pose" and from_pose["fps"] == 25.0
    assert from_pose["glosses"] == from_npy["glosses"] and from_pose["frames"] == from_npy["frames"]
    assert [s["start_frame"] for s in from_pose["segments"]] == [s["start_frame"] for s in from_npy["segments"]]
    assert from_pose["score"] == pytest.approx(from_npy["score"], abs=1e-2)
    assert all(s["start_s"] == pytest.approx(s["start_frame"] / 25.0, abs=1e-3) for s in from_pose["segments"])


@pytest.mark.slow
@pytest.mark.real_data
def test_recognize_real_video_and_frame_folder_from_outside_the_repository(run, tmp_path):
    video = VIDEOS / "test_video.mp4"
    if not video.is_file():
        pytest.skip(f"{video} absent: the real videos live in ../shared/data")
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    capture = cv2.VideoCapture(str(video))
    for i in range(12):
        ok, frame = capture.read()
        assert ok
        cv2.imwrite(str(frames / f"img{i + 1}.png"), frame)
    capture.release()
    r = run_module("model.recognize", run.busy, video, "frames", "--out", "rec.json", "--threads", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    from_video, from_frames = json.loads((tmp_path / "rec.json").read_text())
    assert from_video["kind"] == "video" and from_video["frames"] == 58 and from_video["fps"] == pytest.approx(29.92, abs=0.05)
    assert from_video["extract_seconds"] > 0 and from_video["stride"] == 4
    assert from_frames["kind"] == "frames" and from_frames["frames"] == 12 and from_frames["fps"] is None
    for res in (from_video, from_frames):
        assert [s["gloss"] for s in res["segments"]] == res["glosses"]
        assert all(0 <= s["start_frame"] < s["end_frame"] <= res["frames"] for s in res["segments"])
    assert str(video) in r.stdout


# ----------------------------------------------------------------------------- export


def _padded_batch(run, trained, ids):
    """ids: sample ids, or (id, frames) for the first frames of a sample only."""
    from data.dataset import Sample, collate

    samples = []
    for sid in ids:
        sid, frames = sid if isinstance(sid, tuple) else (sid, None)
        x = recognize_mod.model_input(trained, np.load(run.corpus / "features" / f"{sid}.npy")[:frames])
        samples.append(Sample(sid, torch.from_numpy(x), torch.zeros(0, dtype=torch.long), (), "body"))
    return collate(samples)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_on_padded_batches(run, fmt, tmp_path, capsys):
    target = tmp_path / f"model.{fmt}"
    code, out, err = call(export_mod.main, [run.busy, "--format", fmt, "--out", target], capsys)
    assert code == 0, out + err
    assert "output lengths agree on every batch: OK" in out and (tmp_path / f"model.{fmt}.vocab.json").is_file()
    worst = float(re.search(r"max abs difference (\S+) \(goal", out).group(1))
    assert worst <= 1e-4
    # independently of the command's own check: test-split samples (not those it exported or checked with)
    trained = load_trained(run.busy)
    runner = export_mod.Runner(fmt, target)
    for ids in (["demo-test-0000", "demo-test-0001", "demo-test-0002"], ["demo-test-0003"], [("demo-test-0002", 3), "demo-test-0003"],
                [("demo-test-0001", 1)]):
        batch = _padded_batch(run, trained, ids)
        with torch.no_grad():
            ref, ref_len = trained.model(batch.features, batch.lengths)
        got, got_len = runner.run(batch.features, batch.lengths)
        assert torch.equal(got_len, ref_len)
        assert export_mod.max_valid_difference(got, ref, ref_len) <= 1e-4


def test_batch_transform_travels_with_the_checkpoint(run, tmp_path, capsys, monkeypatch):
    """A configured batch_transform (here the incident's per-sample z-score) is applied by
    evaluate and recognize as in training, and is part of the exported graph."""
    import harness.faults

    calls = []
    zscore = harness.faults.per_sample_zscore

    def counted(*args, **kwargs):
        calls.append(1)
        return zscore(*args, **kwargs)

    monkeypatch.setattr(harness.faults, "per_sample_zscore", counted)
    ckpt = torch.load(run.busy, map_location="cpu", weights_only=True)
    ckpt["config"]["batch_transform"] = "harness.faults:per_sample_zscore"
    path = tmp_path / "with_transform.pt"
    torch.save(ckpt, path)
    trained = load_trained(path)
    assert trained.cfg.batch_transform == "harness.faults:per_sample_zscore"
    sample = run.corpus / "features" / "demo-test-0001.npy"
    out = tmp_path / "rec.json"
    assert call(recognize_mod.main, [path, sample, "--out", out], capsys)[0] == 0
    ran = len(calls)
    assert call(recognize_mod.main, [run.busy, sample, "--out", out], capsys)[0] == 0
    assert ran >= 1 and len(calls) == ran  # the transform ran with the checkpoint that names it, only then
    target = tmp_path / "t.onnx"
    code, text, err = call(export_mod.main, [path, "--format", "onnx", "--out", target], capsys)
    assert code == 0 and "after batch_transform harness.faults:per_sample_zscore" in text and ": OK" in text, text + err


def test_export_parity_check_catches_a_different_model(run, tmp_path, capsys):
    target = tmp_path / "best.onnx"
    assert call(export_mod.main, [run.best, "--format", "onnx", "--out", target], capsys)[0] == 0
    busy = load_trained(run.busy)
    batches, _ = export_mod.parity_batches(busy)
    rows = export_mod.check_parity(busy, export_mod.Runner("onnx", target), batches)
    assert max(r.max_abs_diff for r in rows) > 1e-2  # the file holds best.pt, compared against busy.pt


# ----------------------------------------------------------------------------- bad input


class _Evil:
    """Unpickling this runs code: it touches a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def bad(run):
    d = run.root / "bad"
    d.mkdir(exist_ok=True)
    data = run.best.read_bytes()
    (d / "truncated.pt").write_bytes(data[: len(data) // 3])
    evil = _Evil(d / "UNPICKLED")
    with open(d / "evil.pkl", "wb") as f:
        pickle.dump({"model": evil}, f)
    torch.save({"model": evil, "config": {}}, d / "evil_zip.pt")
    torch.save({"weights": torch.zeros(3)}, d / "foreign.pt")
    ckpt = torch.load(run.best, map_location="cpu", weights_only=True)
    torch.save({**ckpt, "model_args": {**ckpt["model_args"], "conv_dim": 48}}, d / "other_model.pt")
    torch.save({**ckpt, "model_name": "resnet_teacher"}, d / "unknown_model.pt")
    (d / "broken.mp4").write_text("this is not a video\n")
    np.save(d / "narrow.npy", np.zeros((20, 100), np.float32))
    make_corpus(d / "abc_corpus")  # glosses A B C
    return d


@pytest.mark.parametrize("name, expected", [
    ("truncated.pt", "truncated or corrupt"),
    ("evil.pkl", "it was not unpickled"),
    ("evil_zip.pt", "refused without running it"),
    ("foreign.pt", "not a train.py checkpoint"),
    ("other_model.pt", "weights do not fit model 'i3d_tiny'"),
    ("unknown_model.pt", "cannot rebuild model 'resnet_teacher'"),
    ("missing.pt", "no such checkpoint file"),
])
@pytest.mark.parametrize("command", ["evaluate", "recognize", "export"])
def test_bad_checkpoint_is_exit_2_naming_the_file(run, bad, name, expected, command, capsys, tmp_path):
    main = {"evaluate": evaluate_mod.main, "recognize": recognize_mod.main, "export": export_mod.main}[command]
    extra = {"evaluate": [], "recognize": [run.corpus / "features" / "demo-dev-0000.npy"], "export": ["--format", "onnx", "--out", tmp_path / "m.onnx"]}[command]
    code, out, err = call(main, [bad / name, *extra], capsys)
    assert code == 2
    assert err.startswith(f"error: {bad / name}: ") and expected in err, err
    assert not (bad / "UNPICKLED").exists()


def test_corpus_with_another_vocabulary_names_the_glosses(run, bad, capsys):
    code, _, err = call(evaluate_mod.main, [run.best, "--data_dir", bad / "abc_corpus"], capsys)
    assert code == 2
    assert str(bad / "abc_corpus") in err and "another vocabulary" in err
    assert "not in the checkpoint: A, B, C" in err and "HELLO" in err


@pytest.mark.parametrize("name, expected", [
    ("broken.mp4", "OpenCV cannot open this as a video"),
    ("narrow.npy", "shape (20, 100), expected [T, 1629]"),
    ("missing.mp4", "no such file or folder"),
])
def test_bad_recognize_input_is_exit_2_naming_the_file(run, bad, name, expected, capsys):
    code, _, err = call(recognize_mod.main, [run.best, bad / name], capsys)
    assert code == 2 and f"{bad / name}: " in err and expected in err, err


def test_bad_inputs_from_the_command_line_have_no_traceback(run, bad, tmp_path):
    good = run.corpus / "features" / "demo-dev-0000.npy"
    r = run_module("model.recognize", run.best, bad / "broken.mp4", bad / "narrow.npy", good, "--out", "r.json", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    results = json.loads((tmp_path / "r.json").read_text())
    assert [("error" in x) for x in results] == [True, True, False]  # the good input is still recognized
    r = run_module("model.evaluate", bad / "truncated.pt", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and str(bad / "truncated.pt") in r.stderr
