"""train.py on a setup that declares its own conventions (tests/outside/incident_native: a
[T, B, V] model without output lengths, items with other key names and label ids, the blank last
in vocab.txt, its own collate_fn and train_step): it trains what the harness checked, and the
gate's fingerprint covers the train_step, the collate_fn and the vocabulary file."""
import dataclasses
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data.dataset import Vocabulary
from harness.context import HarnessContext
from harness.gate import fingerprint
from model import training
from model.components import ComponentError, UserModel, to_device
from model.config import load_config

REPO = Path(__file__).resolve().parents[1]
NATIVE = REPO / "tests" / "outside" / "incident_native"
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def native():
    """The configuration of tests/outside/incident_native/harness.toml and its data as training builds it."""
    cfg = load_config(NATIVE / "harness.toml")
    return cfg, training.build_data(cfg)


# ----------------------------------------------------------------------------- what training builds is what the harness checks


def test_training_builds_the_data_model_and_batches_the_harness_checks(native):
    cfg, data = native
    ctx = HarnessContext(cfg, device=CPU)
    assert data.vocab.to_list() == ctx.vocab.to_list() == [g for g in (NATIVE / "vocab.txt").read_text().split() if g != "<blank>"]
    assert data.user_vocab.blank == 12 and data.user_vocab.order == ctx.user_vocab.order
    ds, checked = data.splits["train"], ctx.dataset()
    for i in (0, len(ds) - 1):
        assert (ds[i].id, ds[i].glosses, ds[i].targets.tolist()) == (checked[i].id, checked[i].glosses, checked[i].targets.tolist())
    indices = [3, 0, 5]
    batch, harness_batch = data.batches.batch(ds, indices), ctx.batch(indices)
    assert batch.ids == harness_batch.ids and torch.equal(batch.features, harness_batch.features)
    assert torch.equal(batch.targets, harness_batch.targets) and torch.equal(batch.lengths, harness_batch.lengths)
    entries = data.batches.entries(ds)
    raw, step_batch = data.batches.for_train_step()([entries[i] for i in indices])
    harness_raw, _ = ctx.step_batch(indices)
    assert step_batch.ids == batch.ids
    assert all(torch.equal(a, b) if torch.is_tensor(a) else a == b for a, b in zip(raw, harness_raw))

    torch.manual_seed(cfg.seed)
    model = training.build_model(cfg, len(data.vocab), data.input_dim, data.user_vocab)
    harness_model = ctx.model()
    assert isinstance(model, UserModel) and model.order == harness_model.order and model.layout == "TBV"
    with torch.no_grad():
        log_probs, out_lengths = model.eval()(batch.features, batch.lengths)
        expected, expected_lengths = harness_model.eval()(batch.features, batch.lengths)
    assert torch.equal(log_probs, expected) and torch.equal(out_lengths, expected_lengths)
    assert log_probs.shape == (3, int(batch.lengths.max()), 13)


def test_a_checkpoint_vocabulary_other_than_the_declared_one_is_refused(native):
    cfg, data = native
    with pytest.raises(ComponentError, match=r"vocab = 'vocab.txt' now gives other glosses or another order"):
        training.build_data(cfg, vocab=Vocabulary(list(reversed(data.vocab.to_list()))))


# ----------------------------------------------------------------------------- the user's train_step in training


def _step_setup(cfg, data, spec):
    cfg = dataclasses.replace(cfg, train_step=spec)
    torch.manual_seed(0)
    model = training.build_model(cfg, len(data.vocab), data.input_dim, data.user_vocab)
    ds = data.splits["train"]
    entries = data.batches.entries(ds)
    raw, batch = data.batches.for_train_step()([entries[i] for i in range(4)])
    return cfg, model, raw, batch, training.build_optimizer(cfg, model), training.load_user_step(cfg)


def test_the_user_step_trains_on_the_loss_training_computes(native):
    """Its loss is the CTC of the adapter model on the trainer's Batch (blank 0): the user's batch
    and the trainer's hold the same samples and labels; the step changes the parameters."""
    cfg, model, raw, batch, optimizer, step = _step_setup(*native, "native_loop:train_step")
    with torch.no_grad():
        expected = float(training.compute_loss(model.train(), batch, CPU, cfg)[0])
    before = [p.detach().clone() for p in model.parameters()]
    res = training.user_train_step(step, training.user_module(model), model, to_device(raw, CPU), batch, optimizer, cfg, CPU)
    assert res.finite and not res.nonfinite_ids
    assert math.isclose(res.loss, expected, rel_tol=1e-4), (res.loss, expected)
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_a_nonfinite_loss_the_user_step_returns_is_reported(native):
    """native_loop:train_step returns a non-finite loss without stepping: training reports it
    with the sample; train_step_stop raises on it: reported the same way."""
    cfg, model, raw, batch, optimizer, step = _step_setup(*native, "native_loop:train_step")
    features, *rest = raw
    features = features.clone()
    features[1, 0] = float("nan")  # as a dataset yielding NaN gives it: in the user's batch and in the trainer's
    raw, batch = (features, *rest), dataclasses.replace(batch, features=features.clone())
    before = [p.detach().clone() for p in model.parameters()]
    res = training.user_train_step(step, training.user_module(model), model, raw, batch, optimizer, cfg, CPU)
    assert not res.finite and res.nonfinite_ids == [batch.ids[1]], res
    assert "the loss train_step = 'native_loop:train_step' returned is nan" in res.reason and not res.nonfinite_parameters
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))  # the step skipped it

    cfg, model, _, _, optimizer, stop = _step_setup(*native, "native_loop:train_step_stop")
    res = training.user_train_step(stop, training.user_module(model), model, raw, batch, optimizer, cfg, CPU)
    assert not res.finite and res.nonfinite_ids == [batch.ids[1]]
    assert res.reason.startswith("train_step = 'native_loop:train_step_stop' raised FloatingPointError: non-finite loss"), res.reason


# ----------------------------------------------------------------------------- the gate's fingerprint


def test_fingerprint_covers_the_train_step_the_collate_and_the_vocab_file(tmp_path):
    """Editing the train_step's file, the collate_fn's file or vocab.txt changes the fingerprint."""
    project = tmp_path / "proj"
    project.mkdir()
    for name in ("native_data", "native_net", "native_loop"):  # module names of their own: nothing else in this process imports them
        shutil.copy(NATIVE / f"{name}.py", project / f"fpn_{name}.py")
    shutil.copy(NATIVE / "vocab.txt", project / "vocab.txt")
    text = (NATIVE / "harness.toml").read_text().replace('"native_', '"fpn_native_')
    (project / "harness.toml").write_text(text)
    cfg = load_config(project / "harness.toml")
    assert (cfg.train_step, cfg.collate_fn) == ("fpn_native_loop:train_step", "fpn_native_data:collate")
    seen = [fingerprint(cfg)]
    assert fingerprint(cfg) == seen[0]
    for path, old, new in [(project / "fpn_native_loop.py", "CLIP = 1.0", "CLIP = 0.5"),
                           (project / "fpn_native_data.py", "labels = torch.full(", "labels = torch.full( "),
                           (project / "vocab.txt", "HELLO", "HALLO")]:
        path.write_text(path.read_text().replace(old, new))
        seen.append(fingerprint(cfg))
        assert seen[-1] not in seen[:-1], f"editing {path.name} left the fingerprint unchanged"


# ----------------------------------------------------------------------------- train.py end to end


def test_train_py_trains_the_native_setup_behind_the_gate(tmp_path):
    """From a folder outside the repository: the gate passes, the user's step trains, last.pt is
    written and python -m model.evaluate reads it back to the WER train.py printed."""
    cfg = tmp_path / "native.toml"
    cfg.write_text((NATIVE / "harness.toml").read_text()
                   + f'config_dir = "{NATIVE}"\nepochs = 1\nbeam_width = 1\noutput_dir = "{tmp_path / "run"}"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(REPO / "train.py"), "--config", str(cfg), "--threads", "1"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "compatibility gate: PASSED" in out, out[-3000:]
    assert "train_step 'native_loop:train_step' trains each batch" in out and "grad_clip = 5 is not applied" in out, out[-3000:]
    assert "the blank at index 12 moved to 0" in out and re.search(r"epoch +1 +loss \d", out), out[-3000:]
    last = tmp_path / "run" / "last.pt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["model_name"] == "native_net:make_net" and ckpt["model_args"]["vocab_size"] == 13
    assert ckpt["config"]["blank"] == 12 and ckpt["config"]["output_layout"] == "TBV" and ckpt["config"]["train_step"] == "native_loop:train_step"
    assert ckpt["vocab"] == [g for g in (NATIVE / "vocab.txt").read_text().split() if g != "<blank>"]
    # what the user's dataset yields is the profile the model travels with (no corpus to profile)
    profile = ckpt["data_profile"]
    assert profile["kind"] == "dataset" and profile["width"] == len(profile["columns"]["mean"]) and profile["samples"] > 0

    dev_line = re.search(r"^dev WER .*$", out, re.M).group(0)
    ev = subprocess.run([sys.executable, "-m", "model.evaluate", str(last), "--split", "dev", "--beam_width", "1", "--threads", "1"],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
    assert dev_line in ev.stdout, (dev_line, ev.stdout)
    # the dev split against the profile of what the dataset yielded in training (6 items: what one sample shows)
    assert f"drift: none against the training data (6 dev samples vs {profile['samples']} in training)" in ev.stdout, ev.stdout
