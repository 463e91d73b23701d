"""The user's own training step (train_step = "module:fn"): the train_step check runs it on probe
batches and on one batch made non-finite on purpose, and catches each fault a step can have
(gradients never cleared, steps with non-finite gradients, no update, a silent skip, a loss in
the wrong layout, with the wrong blank or the wrong reduction) while its healthy twin passes;
smoke and overfit train with the user's step, not the project's."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.causes import link_causes, root_causes
from harness.context import HarnessContext
from harness.findings import FAIL, PASS, SKIP, WARN
from harness.suite import CHEAP, expand, run_check
from model.config import TrainConfig, load_config

REPO = Path(__file__).resolve().parents[1]
NATIVE = REPO / "tests" / "outside" / "incident_native"
HERE = "tests.test_train_step:"
GLOSSES = ["A", "B", "C", "D"]
BLANK = 4  # the user's blank: the last of V = 5
WIDTH = 6

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- a tiny user project


class Sentences(torch.utils.data.Dataset):
    """Items {"id", "features" [T, 6], "glosses": "A C"}: each gloss shows as 3 frames of its own channel."""

    def __init__(self, split, n):
        self.items = []
        for i in range(n):
            rng = np.random.default_rng([("train", "dev", "test").index(split), i])
            labels = [int(g) for g in rng.integers(0, 4, size=1 + i % 3)]
            frames = []
            for g in labels:
                frames += [np.eye(WIDTH)[g]] * 3 + [np.zeros(WIDTH)] * 2
            x = np.asarray(frames, dtype=np.float32) + rng.normal(0, 0.02, (len(frames), WIDTH)).astype(np.float32)
            self.items.append({"id": f"{split}-{i}", "features": torch.from_numpy(x), "glosses": " ".join(GLOSSES[g] for g in labels)})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def make_dataset(split):
    return Sentences(split, {"train": 8, "dev": 2, "test": 2}[split])


class FrameNet(nn.Module):
    """Per-frame linear model: [T, B, V] log-probs, nn.CTCLoss's layout, no lengths."""

    def __init__(self, vocab_size, input_dim):
        super().__init__()
        self.head = nn.Linear(input_dim, vocab_size)

    def forward(self, x, lengths):
        return self.head(x).log_softmax(-1).transpose(0, 1)


def make_model(vocab_size, input_dim):
    return FrameNet(vocab_size, input_dim)


def _loss(model, batch, blank=BLANK, reduction="mean", batch_first=False):
    """CTC as a step computes it; the batch is the harness's dict (no collate_fn configured)."""
    log_probs = model(batch["features"], batch["lengths"])
    if batch_first:
        log_probs = log_probs.transpose(0, 1)
    return F.ctc_loss(log_probs, batch["targets"], batch["lengths"], batch["target_lengths"], blank=blank, reduction=reduction)


def _update(model, loss, optimizer):
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def step_ok(model, batch, optimizer):
    optimizer.zero_grad()
    loss = _loss(model, batch)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss on {batch['ids']}")
    _update(model, loss, optimizer)
    return loss


def step_sum(model, batch, optimizer):
    optimizer.zero_grad()
    loss = _loss(model, batch, reduction="sum")
    if not torch.isfinite(loss):
        raise FloatingPointError("non-finite loss")
    _update(model, loss, optimizer)
    return loss.item()


def step_batch_mean(model, batch, optimizer):
    optimizer.zero_grad()
    loss = _loss(model, batch, reduction="none").mean()
    if not torch.isfinite(loss):
        raise FloatingPointError("non-finite loss")
    _update(model, loss, optimizer)
    return loss


def step_skip(model, batch, optimizer):
    optimizer.zero_grad()
    loss = _loss(model, batch)
    if not torch.isfinite(loss):
        return loss  # skip the batch
    _update(model, loss, optimizer)
    return loss


def step_no_zero_grad(model, batch, optimizer):
    loss = _loss(model, batch)
    if not torch.isfinite(loss):
        raise FloatingPointError("non-finite loss")
    _update(model, loss, optimizer)
    return loss


def step_nonfinite(model, batch, optimizer):
    optimizer.zero_grad()
    loss = _loss(model, batch)
    _update(model, loss, optimizer)
    return loss


def step_no_update(model, batch, optimizer):
    optimizer.zero_grad()
    loss = _loss(model, batch)
    if not torch.isfinite(loss):
        raise FloatingPointError("non-finite loss")
    loss.backward()
    return loss


def step_batch_first(model, batch, optimizer):
    optimizer.zero_grad()
    loss = _loss(model, batch, batch_first=True)
    _update(model, loss, optimizer)
    return loss


def step_blank_0(model, batch, optimizer):
    optimizer.zero_grad()
    loss = _loss(model, batch, blank=0)
    if not torch.isfinite(loss):
        raise FloatingPointError("non-finite loss")
    _update(model, loss, optimizer)
    return loss


def step_per_frame(model, batch, optimizer):
    optimizer.zero_grad()
    loss = (_loss(model, batch, reduction="none") / batch["lengths"]).mean()
    if not torch.isfinite(loss):
        raise FloatingPointError("non-finite loss")
    _update(model, loss, optimizer)
    return loss


def step_returns_nothing(model, batch, optimizer):
    step_ok(model, batch, optimizer)


def config(step: str | None = "step_ok", **changes) -> TrainConfig:
    values = dict(dataset=HERE + "make_dataset", model=HERE + "make_model", output_layout="TBV", vocab=GLOSSES, blank=BLANK,
                  train_step=HERE + step if step else None, device="cpu", batch_size=4, seed=0, lr=0.05)
    values.update(changes)
    return TrainConfig(**values)


def run(cfg, names=("train_step",)) -> dict:
    ctx = HarnessContext(cfg)
    with np.errstate(all="ignore"):
        return {c.label(p): run_check(c, ctx, p) for c, p in expand(cfg, names, configured_only=True)}


# ----------------------------------------------------------------------------- healthy steps


@pytest.mark.parametrize("step, reduction", [("step_ok", "mean"), ("step_sum", "sum"), ("step_batch_mean", "sum / batch size")])
def test_a_healthy_step_passes_and_its_reduction_is_named(step, reduction):
    f = run(config(step))["train_step"]
    assert f.status == PASS, f.message()
    assert f"equals CTC of the model's output, reduction '{reduction}'" in f.summary, f.summary
    assert "stops it: it raised FloatingPointError" in f.summary
    assert f.values["reduction"] == reduction


def test_without_a_train_step_the_check_skips_saying_why():
    f = run(config(None))["train_step"]
    assert f.status == SKIP and "no train_step is configured" in f.summary


# ----------------------------------------------------------------------------- each fault and its twin


FAULTS = {
    # step: (status, words in the summary, healthy twin)
    "step_skip": (WARN, ("it skips batches with a non-finite loss", "NaN in the first frame of sample", "changed no parameter",
                         "skipping hides the cause"), "step_ok"),
    "step_no_zero_grad": (FAIL, ("never clears gradients", "at the backward pass of step 2", "accumulate", "optimizer.zero_grad()"), "step_ok"),
    "step_nonfinite": (FAIL, ("it steps with non-finite gradients", "parameter tensors are non-finite (first: head.", "torch.isfinite(loss)"), "step_ok"),
    "step_no_update": (FAIL, ("changed no parameter in 3 step(s) on healthy batches", "optimizer.step()"), "step_ok"),
    "step_batch_first": (FAIL, ("CTC call raised RuntimeError", "the step hands CTC the output batch first", "a wrong layout",
                                "[T, B, V]", "test_train_step.py"), "step_ok"),
    "step_blank_0": (FAIL, ("is CTC with blank 0", "not with the model's blank 4", "a wrong blank", "blank=0"), "step_ok"),
    "step_per_frame": (FAIL, ("its output frames", "a wrong reduction", "'mean'"), "step_ok"),
    "step_returns_nothing": (FAIL, ("returned NoneType, not the loss",), "step_ok"),
}


@pytest.mark.parametrize("step", list(FAULTS))
def test_each_step_fault_is_caught_and_its_twin_passes(step):
    status, words, twin = FAULTS[step]
    f = run(config(step))["train_step"]
    assert f.status == status, f.message()
    missing = [w for w in words if w not in f.summary]
    assert not missing, f"no {missing} in: {f.summary}"
    assert "\n" not in f.summary
    if step in ("step_skip", "step_nonfinite"):
        assert len(f.samples) >= 1 and f.samples[0].startswith("train-"), f.samples
    healthy = run(config(twin))["train_step"]
    assert healthy.status == PASS, healthy.message()


def test_a_step_fault_is_the_one_root_of_what_smoke_then_fails():
    """smoke runs the user's step: one that never updates freezes the model there too, caused by train_step."""
    findings = link_causes(list(run(config("step_no_update"), ("train_step", "smoke")).values()))
    assert [f.check for f in root_causes(findings)] == ["train_step"]
    smoke = next(f for f in findings if f.check == "smoke")
    assert smoke.status == FAIL and "parameters did not change" in smoke.summary and smoke.values["caused_by"] == "train_step", smoke.message()


def test_smoke_and_overfit_train_with_the_users_step():
    smoke = run(config("step_ok", lr=0.01), ("smoke",))["smoke"]
    assert smoke.status == PASS and f"with train_step '{HERE}step_ok'" in smoke.summary, smoke.message()
    overfit = run(config("step_ok"), ("overfit",))["overfit"]
    assert overfit.status == PASS, overfit.message()
    frozen = run(config("step_no_update"), ("overfit",))["overfit"]
    assert frozen.status == FAIL, frozen.message()


def test_the_step_gets_the_users_module_batch_and_ids():
    """What a step is given: the user's own module (not the adapter), the dict batch with targets in
    the user's ids (the blank last, so never 4), and the optimizer over the model's parameters."""
    seen = {}

    def spy(model, batch, optimizer):
        seen.update(model=model, batch=batch, optimizer=optimizer)
        return step_ok(model, batch, optimizer)

    import tests.test_train_step as me

    me.step_spy = spy
    try:
        run(config("step_spy"))
    finally:
        del me.step_spy
    assert isinstance(seen["model"], FrameNet)
    batch = seen["batch"]
    assert set(batch) == {"features", "lengths", "targets", "target_lengths", "ids"}
    assert int(batch["targets"].max()) < BLANK and int(batch["targets"].min()) >= 0
    assert {id(p) for g in seen["optimizer"].param_groups for p in g["params"]} == {id(p) for p in seen["model"].parameters()}


# ----------------------------------------------------------------------------- incident_native's step faults


def native(config_name: str) -> dict:
    cfg = load_config(NATIVE / f"{config_name}.toml")
    ctx = HarnessContext(cfg)
    with np.errstate(all="ignore"):
        findings = [run_check(c, ctx, p) for c, p in expand(cfg, CHEAP, configured_only=True)]
    return {f.check: f for f in link_causes(findings)}


@pytest.mark.parametrize("config_name, words", [
    ("no_zero_grad", ("never clears gradients",)),
    ("batch_first_ctc", ("the step hands CTC the output batch first", "native_loop.py", "output_layout = 'TBV'")),
])
def test_incident_native_step_faults_have_train_step_as_their_one_root(config_name, words):
    findings = native(config_name)
    roots = root_causes(list(findings.values()))
    assert [f.check for f in roots] == ["train_step"], "\n".join(f.message() for f in findings.values() if f.status == FAIL)
    assert all(w in roots[0].summary for w in words), roots[0].summary
