"""harness.guard in the user's own training loop: healthy steps pass untouched and save nothing;
the first non-finite step is diagnosed (input already non-finite and which samples, or the first
non-finite module), saved as the user's batch with the model's state, and its printed replay
command reproduces it (`python -m harness replay FILE --config cfg.toml`, exit 1); with
on_nonfinite="skip" the step is skipped and training goes on.

The model is the user's (USER_MODEL, a per-frame Linear + GRU written into a folder outside the
repository, so that the replay process imports it as the user's own): its `spike` module scales
its input by a buffer, which the loop sets to inf to inject a non-finite value mid-training (the
buffer is in the state_dict, so the saved state reproduces it).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness import guard
from harness.guard import Guard, NonFinite, NonFiniteStep
from harness.replay import replay_file
from model.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

USER_MODEL = '''
import torch
import torch.nn.functional as F
from torch import nn


class Spike(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("gain", torch.ones(()))

    def forward(self, x):
        return x * self.gain


class FrameGRU(nn.Module):
    def __init__(self, vocab_size, input_dim, hidden=8):
        super().__init__()
        self.inp = nn.Linear(input_dim, hidden)
        self.spike = Spike()
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def output_lengths(self, lengths):
        return lengths

    def forward(self, x, lengths):
        h, _ = self.gru(self.spike(torch.relu(self.inp(x))))
        return F.log_softmax(self.head(h), dim=-1), lengths


def make_model(vocab_size, input_dim):
    return FrameGRU(vocab_size, input_dim)
'''
VOCAB, WIDTH = 5, 4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("user_guard") / "project"
    root.mkdir()
    (root / "usermodel.py").write_text(USER_MODEL, encoding="utf-8")
    (root / "cfg.toml").write_text('model = "usermodel:make_model"\n', encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def user(project):
    sys.path.insert(0, str(project))  # the user's module under its own name: the guard pickles the model by reference
    try:
        spec = importlib.util.spec_from_file_location("usermodel", project / "usermodel.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["usermodel"] = module
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("usermodel", None)
        sys.path.remove(str(project))


def make_batch(step: int, nan_sample: int | None = None) -> dict:
    g = torch.Generator().manual_seed(step)
    x = torch.randn(3, 10, WIDTH, generator=g)
    if nan_sample is not None:
        x[nan_sample, 4, 1] = float("nan")
    return {"features": x, "lengths": torch.tensor([10, 8, 6]), "targets": torch.tensor([[1, 2], [2, 3], [3, 4]]),
            "target_lengths": torch.tensor([2, 2, 2]), "video_id": [f"vid-{3 * step + i}" for i in range(3)]}


def ctc(model, batch):
    log_probs, out_lengths = model(batch["features"], batch["lengths"])
    return F.ctc_loss(log_probs.transpose(0, 1), batch["targets"], out_lengths, batch["target_lengths"])


def train(model, g, steps: int, spike_at: int | None = None, nan_at: int | None = None) -> list:
    """The user's loop: returns what g.step gave at each step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    results = []
    for step in range(1, steps + 1):
        if step == spike_at:
            model.spike.gain.fill_(float("inf"))
        batch = make_batch(step, nan_sample=1 if step == nan_at else None)
        optimizer.zero_grad()
        loss = ctc(model, batch)
        loss.backward()
        ok = g.step(batch, loss)
        results.append(ok)
        if ok:
            optimizer.step()
    return results


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- healthy


def test_healthy_steps_pass_and_save_nothing(user, tmp_path):
    torch.manual_seed(0)
    model = user.make_model(VOCAB, WIDTH)
    g = guard(model, out_dir=tmp_path / "guard")
    assert isinstance(g, Guard)
    start = _state(model)
    assert train(model, g, steps=4) == [True] * 4
    assert g.steps == 4 and g.failures == [] and g.skipped == 0
    assert not (tmp_path / "guard").exists()
    assert not _same(start, _state(model))  # the loop trained: every step reached the optimizer


def test_a_finite_gradient_whose_norm_overflows_is_not_a_failure(user, tmp_path):
    model = user.make_model(VOCAB, WIDTH)
    g = guard(model, out_dir=tmp_path / "guard")
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e30)  # finite; the squared norm overflows float32
    assert g.step(make_batch(0), torch.tensor(1.0)) is True
    assert g.failures == [] and not (tmp_path / "guard").exists()


# ----------------------------------------------------------------------------- a module goes non-finite


def test_nonfinite_module_is_named_saved_and_the_printed_command_reproduces(user, project, capsys, monkeypatch):
    monkeypatch.chdir(project)  # the user's working directory: out_dir and the config are relative to it
    torch.manual_seed(0)
    model = user.make_model(VOCAB, WIDTH)
    g = guard(model, config="cfg.toml", out_dir="guard_out")
    with pytest.raises(NonFiniteStep) as info:
        train(model, g, steps=5, spike_at=3)
    failure = info.value.failure
    assert failure.step == 3 and not failure.loss_finite and failure.grad_params
    assert failure.module == "spike" and failure.module_type == "Spike"
    assert not failure.input_nonfinite and failure.inputs == []
    assert failure.samples == ["vid-9", "vid-10", "vid-11"]  # every sample's output is non-finite, named by the batch's ids
    path = project / "guard_out" / "nonfinite_step3.pt"
    assert failure.path == "guard_out/nonfinite_step3.pt" and path.is_file()
    assert failure.command == "python -m harness replay guard_out/nonfinite_step3.pt --config cfg.toml" == info.value.command
    printed = capsys.readouterr().err
    assert "first non-finite module: 'spike' (Spike" in printed and f"replay: {failure.command}" in printed
    assert not list(path.parent.glob("*.tmp*"))  # written atomically: only the file itself

    saved = torch.load(path, weights_only=True)
    batch = make_batch(3)
    assert saved["batch"].keys() == batch.keys() and saved["batch"]["video_id"] == batch["video_id"]
    assert all(torch.equal(saved["batch"][k], batch[k]) for k in ("features", "lengths", "targets"))
    assert _same(saved["state_dict"], _state(model))  # the state of the failing step: no optimizer step after it
    assert {"inp", "spike", "gru", "head"} <= set(saved["module_names"])

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "PYTHONPATH"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # `python` is this environment's
    r = subprocess.run(failure.command, shell=True, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "with the saved state_dict" in r.stdout and "usermodel:make_model" in r.stdout
    assert "first non-finite module: 'spike' (Spike" in r.stdout and "input: the batch is finite" in r.stdout
    assert "samples: vid-9, vid-10, vid-11 (3)" in r.stdout and "verdict: reproduced" in r.stdout


# ----------------------------------------------------------------------------- a non-finite input, skipped


def test_nonfinite_input_names_the_sample_and_skip_goes_on(user, tmp_path, capsys):
    torch.manual_seed(0)
    model = user.make_model(VOCAB, WIDTH)
    g = guard(model, out_dir=tmp_path / "guard", on_nonfinite="skip")
    before = {}
    original = g.step

    def step(batch, loss):  # the weights before each step's check
        before[g.steps + 1] = _state(model)
        return original(batch, loss)

    g.step = step
    results = train(model, g, steps=4, nan_at=2)
    assert [bool(r) for r in results] == [True, False, True, True]
    failure = results[1]
    assert isinstance(failure, NonFinite) and g.skipped == 1 and g.failures == [failure]
    assert failure.input_nonfinite and failure.inputs == ["batch['features']"]
    assert failure.samples == ["vid-7"]  # row 1 of step 2, by the batch's "video_id"
    assert failure.module == "inp"  # where the input's NaN enters the model
    assert "already non-finite in batch['features']: samples vid-7" in capsys.readouterr().err
    assert Path(failure.path).is_file()
    # the skipped step changed nothing: the next step starts from the weights it was checked with
    assert _same(before[2], before[3])
    assert not _same(before[3], _state(model))  # training went on
    assert replay_file(failure.path) == 1  # no configuration: the pickled model saved with the batch
    out = capsys.readouterr().out
    assert "the pickled usermodel.FrameGRU" in out and "already non-finite in batch['features']" in out and "vid-7" in out


def test_files_stop_at_max_saves(user, tmp_path, capsys):
    model = user.make_model(VOCAB, WIDTH)
    g = guard(model, out_dir=tmp_path / "guard", on_nonfinite="skip", max_saves=1)
    results = train(model, g, steps=3, spike_at=2)  # non-finite from step 2 on: the gain stays inf
    assert [bool(r) for r in results] == [True, False, False]
    assert [f.path for f in g.failures] == [str(tmp_path / "guard" / "nonfinite_step2.pt"), ""]
    assert sorted(p.name for p in (tmp_path / "guard").iterdir()) == ["nonfinite_step2.pt"]
    assert capsys.readouterr().err.splitlines()[-1].endswith("(not saved: max_saves reached)")


# ----------------------------------------------------------------------------- only the backward pass


def test_finite_forward_with_nonfinite_gradients_is_said_and_does_not_reproduce(user, tmp_path, capsys):
    model = user.make_model(VOCAB, WIDTH)
    g = guard(model, out_dir=tmp_path / "guard", on_nonfinite="skip", quiet=True)
    batch = make_batch(0)
    log_probs, _ = model(batch["features"], batch["lengths"])
    loss = (log_probs - log_probs.detach()).abs().sum().sqrt()  # 0 with an infinite derivative: NaN gradients
    loss.backward()
    failure = g.step(batch, loss)
    assert not failure and failure.loss_finite and failure.grad_params and failure.module is None
    assert failure.note == "the forward pass is finite on this batch: the backward pass made the gradients non-finite"
    assert capsys.readouterr().err == ""  # quiet
    assert all(p.grad is None for p in model.parameters())  # skipped: cleared for the next step
    assert replay_file(failure.path) == 0
    assert "verdict: not reproduced: the forward pass is finite" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the watch form


def test_watch_checks_before_the_optimizer_steps(user, tmp_path):
    torch.manual_seed(0)
    model = user.make_model(VOCAB, WIDTH)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    g = guard(model, out_dir=tmp_path / "guard", on_nonfinite="skip", quiet=True)
    with g.watch(make_batch(1)) as w:
        ctc(model, make_batch(1)).backward()
        optimizer.step()
    assert w.ok and g.failures == []
    model.spike.gain.fill_(float("inf"))
    before = _state(model)
    reached = []
    with g.watch(make_batch(2)) as w:
        ctc(model, make_batch(2)).backward()
        optimizer.step()  # the guard's check runs first and leaves the block
        reached.append(True)
    assert not w.ok and w.failure.module == "spike" and reached == []
    assert _same(before, _state(model))
    model.spike.gain.fill_(1.0)
    g.on_nonfinite = "raise"
    model.inp.weight.data[0, 0] = float("nan")
    with pytest.raises(NonFiniteStep, match="first non-finite module: 'inp'"):
        with g.watch(make_batch(3)):
            ctc(model, make_batch(3)).backward()
            optimizer.step()


# ----------------------------------------------------------------------------- batches and arguments


def test_tuple_batches_and_a_custom_forward(user, tmp_path):
    model = user.make_model(VOCAB, WIDTH)
    model.spike.gain.fill_(float("nan"))
    b = make_batch(0)
    g = guard(model, out_dir=tmp_path / "a", on_nonfinite="skip", quiet=True)
    as_tuple = (b["features"], b["lengths"], ["s0", "s1", "s2"])
    ctc(model, b).backward()
    assert g.step(as_tuple, torch.tensor(float("nan"))).samples == ["s0", "s1", "s2"]
    renamed = {"x": b["features"], "n": b["lengths"], "ids": torch.tensor([7, 8, 9])}
    g = guard(model, out_dir=tmp_path / "b", on_nonfinite="skip", quiet=True, forward=lambda m, batch: m(batch["x"], batch["n"]))
    ctc(model, b).backward()
    failure = g.step(renamed, torch.tensor(float("nan")))
    assert failure.module == "spike" and failure.samples == ["7", "8", "9"]
    # without forward=, the configuration's item_keys say where the features are
    keyed = {"x": b["features"], "lengths": b["lengths"], "ids": torch.tensor([7, 8, 9])}
    g = guard(model, config=TrainConfig(dataset="my_data:make", item_keys={"features": "x"}), out_dir=tmp_path / "c", on_nonfinite="skip", quiet=True)
    ctc(model, b).backward()
    assert g.step(keyed, torch.tensor(float("nan"))).module == "spike"


def test_wrong_arguments_are_one_clear_line(user):
    model = user.make_model(VOCAB, WIDTH)
    with pytest.raises(TypeError, match=r"^guard\(model=\.\.\.\): got str; expected the torch.nn.Module being trained$"):
        guard("model")
    with pytest.raises(ValueError, match=r"^guard\(on_nonfinite='ignore'\): expected 'raise'"):
        guard(model, on_nonfinite="ignore")
    with pytest.raises(ValueError, match=r"^guard\(config='missing.toml'\): configuration file missing.toml not found$"):
        guard(model, config="missing.toml")
    with pytest.raises(TypeError, match=r"^guard\(forward=\.\.\.\): got int"):
        guard(model, forward=3)


def test_replay_of_a_missing_or_foreign_file_says_why(tmp_path, capsys):
    assert replay_file(tmp_path / "nope.pt") == 2
    assert "no such file" in capsys.readouterr().err
    torch.save({"something": 1}, tmp_path / "other.pt")
    assert replay_file(tmp_path / "other.pt") == 2
    assert "not a step saved by harness.guard" in capsys.readouterr().err


def test_benchmark_section_guards_every_step_of_its_guarded_loops(tmp_path):
    """benchmarks/sections.py: section_guard times the same loop bare and guarded; the guarded
    sides really check every step (warm-up included) and the figures are ratios of the two."""
    from benchmarks.sections import section_guard

    res = section_guard(tmp_path, quick=True, rounds=1)
    n = res.figures["batches"] * res.figures["rounds"] + 1
    assert res.figures["steps_checked"] == {"step": n, "watch": n}
    rows = {r.key: r for r in res.rows}
    assert set(rows) == {"guard_overhead", "guard_watch_overhead", "guard_check_vs_step"}
    per_step = res.figures["seconds_per_step"]
    assert rows["guard_overhead"].value == pytest.approx(per_step["step"] / per_step["bare"])
    assert rows["guard_overhead"].goal == "<= 1.03"
