"""train.py end to end on small corpora: the gate refuses broken data, the incident report's
command runs on an extracted corpus, resume after kill -9, non-finite replay."""
import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data.corpus import Corpus, SampleRecord, atomic_save_npy, read_manifest, write_manifest
from data.synthetic import generate_corpus

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO.parent / "shared" / "data" / "videos"


def run_train(*args, timeout=600, env=None):
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--threads", "1", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def train_here(capsys, *args) -> tuple[int, str]:
    """train.py's main() in this process (the gate and the loop are what these tests judge; the
    command line as a user types it is tested by test_resume_after_kill_9 and the outside
    projects): (exit status, what it printed)."""
    import train

    capsys.readouterr()
    status = train.main(["--threads", "1", *map(str, args)])
    return status, capsys.readouterr().out


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("demo") / "corpus", seed=3, n_train=16, n_dev=4, n_test=4)


@pytest.fixture
def small_config(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"model": "i3d_tiny", "batch_size": 4, "thresholds": {"overfit_steps": 1}}))
    return path


def _copy_corpus(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _make_infeasible(corpus: Path, row: int, frames: int, glosses: tuple) -> SampleRecord:
    """Cut a sample to `frames` frames and give it `glosses`: too short for CTC after the stride."""
    recs = read_manifest(corpus)
    old = recs[row]
    atomic_save_npy(corpus / old.path, np.load(corpus / old.path)[:frames])
    recs[row] = SampleRecord(old.id, old.split, glosses, old.path, old.signer, old.fps)
    write_manifest(corpus, recs)
    return recs[row]


def test_gate_refuses_nan_poisoned_file(small_corpus, small_config, tmp_path, capsys):
    corpus = _copy_corpus(small_corpus, tmp_path / "c")
    c = Corpus(corpus)
    rec = c.split("train")[2]
    arr = np.load(c.file(rec))
    arr[5, 100] = np.nan  # one coordinate of a landmark: not a whole missing landmark
    arr[7, 3] = np.inf
    atomic_save_npy(c.file(rec), arr)
    status, out = train_here(capsys, "--data_dir", corpus, "--config", small_config, "--output_dir", tmp_path / "out", "--epochs", 1)
    assert status == 1, out
    assert "refusing to train" in out
    assert rec.id in out and "clean_features" in out and "Inf" in out
    assert not (tmp_path / "out" / "last.pt").exists()


def test_gate_refuses_ctc_infeasible_samples_and_caches_verdict(small_corpus, small_config, tmp_path, capsys):
    corpus = _copy_corpus(small_corpus, tmp_path / "c")
    short = _make_infeasible(corpus, 1, frames=6, glosses=("HELLO", "HELLO", "GO", "NO"))  # 2 output frames, needs 5
    status, out = train_here(capsys, "--data_dir", corpus, "--config", small_config, "--output_dir", tmp_path / "out", "--epochs", 1)
    assert status == 1, out
    assert "ctc_feasibility" in out and short.id in out and "too short" in out
    # a new run with the verdict cached still gets its own report, and the printed path exists
    status, again = train_here(capsys, "--data_dir", corpus, "--config", small_config, "--output_dir", tmp_path / "out2", "--epochs", 1)
    assert status == 1 and "cached verdict" in again, again
    report = re.search(r"report: (\S+)", again).group(1)
    assert Path(report) == tmp_path / "out2" / "gate_report.html" and Path(report).is_file(), again
    assert short.id in Path(report).read_text() and (tmp_path / "out2" / "gate_findings.json").is_file()
    # the root cause is listed first: ctc_feasibility, the failures it explains say so
    first = again.split("cause -> what to do")[1].strip().splitlines()[0]
    assert first.startswith("ctc_feasibility"), again
    assert "caused by ctc_feasibility" in again, again


def test_resume_after_kill_9(small_corpus, small_config, tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, str(REPO / "train.py"), "--data_dir", small_corpus, "--config", small_config, "--output_dir", out, "--epochs", 40, "--skip-gate"]
    proc = subprocess.Popen(list(map(str, args)), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "metrics.jsonl"

    def epochs_done() -> int:
        return len(metrics.read_text().splitlines()) if metrics.exists() else 0

    deadline = time.time() + 300
    while epochs_done() < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = epochs_done()
    assert done >= 2 and (out / "last.pt").exists()
    r = run_train("--data_dir", small_corpus, "--config", small_config, "--output_dir", out, "--epochs", done + 2, "--skip-gate", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stdout
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    # at most the epoch in flight is lost: every finished epoch is kept, none is repeated past the checkpoint
    import torch

    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == done + 2 and ckpt["skipped_gate"] is True
    assert [r["epoch"] for r in ckpt["metrics"]] == list(range(1, done + 3))
    assert epochs[-1] == done + 2
    assert "test WER" in r.stdout
    # what the model learnt from travels with it, and the same data resumes without a word
    assert ckpt["data_profile"]["samples"] == len([r for r in read_manifest(small_corpus) if r.split == "train"])
    assert json.loads((out / "data_profile.json").read_text()) == ckpt["data_profile"]
    assert "train split changed" not in r.stdout
    d = subprocess.run([sys.executable, "-m", "harness", "drift", "--reference", str(out / "last.pt"), "--data", str(small_corpus), "--split", "train"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert d.returncode == 0, d.stdout + d.stderr


def test_a_resumed_run_on_changed_data_says_so(small_corpus, tmp_path, capsys):
    import types

    import train
    from harness.profile import profile_corpus
    from model.config import TrainConfig

    data = types.SimpleNamespace(corpus=Corpus(small_corpus))
    before = profile_corpus(small_corpus, split="train")
    assert train.data_profile(TrainConfig(), data, {"data_profile": before}, tmp_path, True) == before
    assert "changed" not in capsys.readouterr().out
    fewer = dict(before, samples=before["samples"] - 1, frames=before["frames"] - 10)
    train.data_profile(TrainConfig(), data, {"data_profile": fewer}, tmp_path, True)
    assert "WARNING: the train split changed since this run began" in capsys.readouterr().out
    assert json.loads((tmp_path / "data_profile.json").read_text()) == before


@pytest.mark.slow
@pytest.mark.real_data
def test_incident_command_on_extracted_corpus(tmp_path):
    if not VIDEOS.is_dir():
        pytest.skip(f"{VIDEOS} absent: the real videos live in ../shared/data")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,glosses,split\nsample_video,HELLO,train\ntest_video,HELLO HOUSE,train\nasl_house,HOUSE,dev\n")
    corpus = tmp_path / "corpus"
    r = subprocess.run(
        [sys.executable, "-m", "data.extract", str(VIDEOS / "sample_video.mp4"), str(VIDEOS / "test_video.mp4"), str(VIDEOS / "asl_house.mp4"),
         "--out", str(corpus), "--labels", str(labels), "--workers", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "run"
    r = run_train("--data_dir", corpus, "--output_dir", out, "--batch_size", 2, "--epochs", 2, "--lr", 0.0005)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "compatibility gate: PASSED" in r.stdout and "dev WER" in r.stdout
    assert (out / "best.pt").exists() and (out / "metrics.png").exists()


def test_nonfinite_training_stops_saves_batch_and_replays(small_corpus, small_config, tmp_path, capsys):
    corpus = _copy_corpus(small_corpus, tmp_path / "c")
    bad = _make_infeasible(corpus, 0, frames=5, glosses=("HELLO", "GO", "NO"))  # 2 output frames, needs 3
    out = tmp_path / "out"
    # the gate would refuse this corpus; --skip-gate shows what training does with it
    status, printed = train_here(capsys, "--data_dir", corpus, "--config", small_config, "--output_dir", out, "--epochs", 1, "--skip-gate")
    assert status == 2, printed
    assert "non-finite loss" in printed and bad.id in printed
    saved = out / "nonfinite_batch.pt"
    assert saved.exists()
    rep = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/compat/test_replay.py", "--replay", str(saved), "-q", "-p", "no:cacheprovider"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert rep.returncode == 1, rep.stdout
    assert bad.id in rep.stdout and "CTC-infeasible" in rep.stdout


def test_blank_plateau_warning_when_dev_stays_blank():
    """train.py warns once when dev decodes >= 95% blank for 3 epochs in a row (and 300 steps), with what to try."""
    import train

    blank, learning = {"dev_blank_share": 0.99}, {"dev_blank_share": 0.6}
    assert train.blank_plateau([blank, blank]) == ""  # not yet 3 epochs
    said = train.blank_plateau([learning, blank, blank, blank])
    assert "all-blank plateau" in said and "learning rate" in said and "model_input" in said
    assert train.blank_plateau([blank, blank, blank, blank]) == ""  # said once, when the run entered it
    assert train.blank_plateau([blank, learning, blank]) == ""
    # on a small corpus a plateau must also outlast PLATEAU_STEPS optimiser steps: 31 steps an
    # epoch (the demo corpus) -> 10 epochs; the default run there starts blank for 3 epochs
    assert train.plateau_epochs(31) == 10 and train.plateau_epochs(200) == 3
    assert train.blank_plateau([blank] * 3, 31) == "" and train.blank_plateau([blank] * 9, 31) == ""
    assert "for 10 epochs (310 steps)" in train.blank_plateau([learning] + [blank] * 10, 31)


def test_generalisation_gap_warns_when_train_fits_and_dev_does_not():
    import train

    assert train.generalisation_gap({"train": 0.01, "dev": 0.03, "test": 0.04}).startswith("generalisation gap: train WER 1.00% vs dev 3.00%")
    warned = train.generalisation_gap({"train": 0.0, "dev": 0.35, "test": 0.74})
    assert warned.startswith("WARNING: the model fits train (0.00%) and not test (74.00%)") and "mirror" in warned
    assert train.generalisation_gap({"dev": 0.3}) == ""


def test_weight_average_follows_its_decay():
    """model.training.weight_average: the update after n others weighs the old average
    min(decay, (1+n)/(10+n)); decay 0 is no average."""
    import torch

    from model.training import weight_average

    assert weight_average(torch.nn.Linear(2, 2), 0.0) is None
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = weight_average(model, 0.5)
    expected = None
    for n, value in enumerate([1.0, 3.0, 7.0, 15.0]):
        with torch.no_grad():
            model[0].weight.fill_(value)
            model[1].running_mean.fill_(value)
            model[1].num_batches_tracked.fill_(n + 1)
        ema.update_parameters(model)
        d = min(0.5, (1 + n) / (10 + n))  # n: the updates averaged before this one (the first copies)
        expected = value if expected is None else expected * d + value * (1 - d)
        assert torch.allclose(ema.module[0].weight, torch.full((2, 2), expected)), (n, ema.module[0].weight, expected)
        assert torch.allclose(ema.module[1].running_mean, torch.full((2,), expected))  # float buffers: averaged
        assert int(ema.module[1].num_batches_tracked) == n + 1  # counters: the current one
    assert int(ema.n_averaged) == 4


def test_weight_average_is_scored_checkpointed_and_resumed(small_corpus, small_config, tmp_path, capsys, monkeypatch):
    """With ema_decay, the epoch lines score the average and best.pt / last.pt hold it as "model",
    last.pt also the weights as trained; a 3-epoch run stopped after epoch 2 and resumed ends where
    an uninterrupted one ends, average and weights alike."""
    import torch

    import train

    said = []

    def run(out, epochs, *extra):
        status, printed = train_here(capsys, "--data_dir", small_corpus, "--config", small_config, "--output_dir", out, "--epochs", epochs,
                                     "--skip-gate", "--ema_decay", "0.9", "--beam_width", "1", *extra)
        assert status == 0, printed
        said.append(printed)
        return torch.load(out / "last.pt", map_location="cpu", weights_only=True)

    straight = run(tmp_path / "straight", 3)
    assert "on the weight average (ema_decay 0.9)" in said[-1]
    steps = 3 * -(-16 // 4)  # 16 train samples, batch size 4
    assert straight["ema_steps"] == steps and straight["config"]["ema_decay"] == 0.9
    differs = [k for k, v in straight["model"].items() if v.is_floating_point() and not torch.equal(v, straight["train_model"][k])]
    assert differs, "the average equals the trained weights"
    best = torch.load(tmp_path / "straight" / "best.pt", map_location="cpu", weights_only=True)
    assert best["train_model"] is not None and best["model"].keys() == best["train_model"].keys()

    end_epoch, prepare_run = train.end_epoch, train.prepare_run

    def end_epoch_then_stop(run_, epoch, steps_):
        end_epoch(run_, epoch, steps_)
        if epoch == 2:
            raise KeyboardInterrupt  # stopped after epoch 2's checkpoint

    monkeypatch.setattr(train, "end_epoch", end_epoch_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed", 3)
    stopped = torch.load(tmp_path / "resumed" / "last.pt", map_location="cpu", weights_only=True)
    assert stopped["epoch"] == 2 and stopped["ema_steps"] == steps * 2 // 3
    restored = {}

    def prepare_and_keep(*a, **kw):
        restored["run"] = prepare_run(*a, **kw)
        restored["model"] = {k: v.clone() for k, v in restored["run"].raw_model.state_dict().items()}
        restored["average"] = {k: v.clone() for k, v in restored["run"].ema.module.state_dict().items()}
        return restored["run"]

    monkeypatch.setattr(train, "end_epoch", end_epoch)
    monkeypatch.setattr(train, "prepare_run", prepare_and_keep)
    resumed = run(tmp_path / "resumed", 3, "--resume")
    # the steps go on from the weights as trained, the average from the average, counted on
    for name, value in stopped["train_model"].items():
        assert torch.equal(restored["model"][name], value), name
    for name, value in stopped["model"].items():
        assert torch.equal(restored["average"][name], value), name
    assert resumed["epoch"] == 3 and resumed["ema_steps"] == steps
    # the same augmentation draws, batches and steps: where the uninterrupted run ends, to the bit
    for key in ("model", "train_model"):
        for name, value in straight[key].items():
            assert torch.equal(value, resumed[key][name]), (key, name)


def test_dataloader_workers_draw_what_the_process_draws(small_corpus, tmp_path, capsys):
    """train.py seeds each sample's augmentation by epoch: with --num_workers 1 (a fresh copy of
    the dataset in a worker every epoch) the mirror draws, and so the weights after 2 epochs, are
    those of the in-process loader."""
    import torch

    config = tmp_path / "mirror.json"
    config.write_text(json.dumps({"model": "i3d_tiny", "batch_size": 4, "augment": {"mirror": 0.5}}))
    ends = []
    for workers in ("0", "1"):
        out = tmp_path / f"w{workers}"
        status, printed = train_here(capsys, "--data_dir", small_corpus, "--config", config, "--output_dir", out, "--epochs", 2,
                                     "--skip-gate", "--beam_width", 1, "--num_workers", workers)
        assert status == 0, printed
        ends.append(torch.load(out / "last.pt", map_location="cpu", weights_only=True)["model"])
    for name, value in ends[0].items():
        assert torch.equal(value, ends[1][name]), name


@pytest.mark.parametrize("argv, named", [(["--ema_decay", "1.5"], "ema_decay=1.5"), (["--lr", "-1"], "lr=-1.0"),
                                         (["--config", "no_such.toml"], "no_such.toml")])
def test_a_bad_value_is_one_line_naming_it(argv, named, tmp_path, capsys):
    """train.py with a value TrainConfig refuses, or a configuration file that is not there: exit 2
    and one error line naming it, no traceback, nothing written."""
    import train

    with pytest.raises(SystemExit) as stop:
        train.main([*argv, "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and named in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
