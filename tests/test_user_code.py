"""The harness on a user's own code (tests/user_project: a dataset class, a ConvGRU model and
loop transforms written without this project's code): healthy setups raise no false alarm,
every fault that can live in user code is caught by its expected check, and a component that
breaks its contract gets a clear error naming the key, the object and what is expected."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from data.corpus import atomic_save_npy, read_manifest
from data.layout import LAYOUT
from harness.context import HarnessContext
from harness.findings import FAIL, PASS, SKIP, WARN
from harness.gate import fingerprint
from harness.suite import expand, run_check
from model.components import ComponentError, import_object
from model.config import TrainConfig
from tests.corpus_factory import make_corpus

REPO = Path(__file__).resolve().parents[1]
DATA = "tests.user_project.data:"
MODEL = "tests.user_project.model:make_model"
LOOP = "tests.user_project.loop:"
# the user dataset keeps x/y of pose 0..32 and hands 33..74: the left hand is features 66..107
LEFT_HAND_FEATURES = [f"feature[{j}]" for j in range(66, 108)]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("user") / "corpus", n_train=8, n_dev=3, n_test=3)


@pytest.fixture(scope="module")
def left_hand_never_seen_in_train(tmp_path_factory):
    """The train split never detects the left hand (its framing cuts it off); dev/test do."""
    root = make_corpus(tmp_path_factory.mktemp("user-nohand") / "corpus", n_train=8, n_dev=3, n_test=3)
    for rec in read_manifest(root):
        if rec.split == "train":
            x = np.load(root / rec.path)
            x[:, LAYOUT.left_hand] = np.nan
            atomic_save_npy(root / rec.path, x)
    return root


@pytest.fixture(scope="module")
def left_hand_missing_in_some(tmp_path_factory):
    """Every third sample never detects the left hand (whole sample); the others see it."""
    root = make_corpus(tmp_path_factory.mktemp("user-some") / "corpus", n_train=8, n_dev=3, n_test=3)
    for k, rec in enumerate(read_manifest(root)):
        if k % 3 == 0:
            x = np.load(root / rec.path)
            x[:, LAYOUT.left_hand] = np.nan
            atomic_save_npy(root / rec.path, x)
    return root


def user_config(corpus, dataset="make_dataset", transform=None, **model_options) -> TrainConfig:
    return TrainConfig(data_dir=str(corpus), dataset=DATA + dataset, model=MODEL, model_overrides=model_options,
                       batch_transform=LOOP + transform if transform else None, device="cpu", batch_size=4)


def run_all(cfg, names=None) -> dict:
    ctx = HarnessContext(cfg)
    with np.errstate(all="ignore"):
        return {c.label(p): run_check(c, ctx, p) for c, p in expand(cfg, names, configured_only=True)}


# ----------------------------------------------------------------------------- healthy


@pytest.mark.parametrize("transform", [None, "scale"])
def test_healthy_user_setup_passes_or_skips_with_a_reason(corpus, transform):
    findings = run_all(user_config(corpus, transform=transform))
    failed = [f.message() for f in findings.values() if f.status == FAIL]
    assert not failed, "\n".join(failed)
    assert findings["overfit"].status == PASS and findings["smoke"].status == PASS
    skipped = {name: f.summary for name, f in findings.items() if f.status == SKIP}
    # only the checks that need this project's dataset or the MediaPipe layout, each saying why
    # and the distillation checks: no teacher is configured; train_step: no train_step is configured
    expected = {"normalization", "modalities", "teacher", "teacher_competence", "distill_loss", "teacher_frozen", "train_step"}
    if transform is None:  # nothing between loader and model to depend on padding
        expected.add("padding[batch_transform]")
    assert set(skipped) == expected, skipped
    assert "the dataset is the user's" in skipped["normalization"]
    assert "do not follow the MediaPipe layout" in skipped["modalities"] and "150 a frame" in skipped["modalities"]
    # data_dir holds a corpus: its raw files are scanned too
    assert findings["clean_features"].status in (PASS, WARN)


def test_without_a_corpus_the_corpus_checks_skip_and_the_rest_run(corpus, tmp_path):
    """A dataset that reads files of its own format: no manifest.csv under data_dir."""
    cfg = user_config(corpus)
    ctx = HarnessContext(cfg.replace(data_dir=None))
    ctx._external_splits = HarnessContext(cfg)._external_splits  # the user's dataset, without data_dir
    clean = run_check("clean_features", ctx)
    assert clean.status == SKIP and "no corpus to scan" in clean.summary
    assert run_check("forward", ctx).status == PASS and run_check("labels", ctx).status == PASS


# ----------------------------------------------------------------------------- faults in user code


USER_FAULTS = {
    # name: (corpus fixture, config changes, expected failing checks, words the first one must say)
    "no_std_floor": ("left_hand_never_seen_in_train", {"dataset": "make_dataset_no_floor"}, ("model_input",),
                     ("in every frame of every probe sample", "divides by ~0", "dataset.feature_std is 0")),
    "nan_from_loader": ("corpus", {"dataset": "make_dataset_nan"}, ("model_input",), ("the dataset returns nan for", "must be finite")),
    "raw_logits": ("corpus", {"raw_logits": True}, ("forward", "loss_at_init"), ("not log-probabilities",)),
    "unstrided_lengths": ("corpus", {"strided_lengths": False}, ("forward",), ("not divided by the temporal stride",)),
    "padding_leak": ("corpus", {"packed": False}, ("batch_size",), ("padding leaks",)),
    "blank_index_mismatch": ("corpus", {"blank_last": True}, ("contract",), ("one more than the vocabulary", "blank 0")),
    "transform_without_floor": ("left_hand_missing_in_some", {"transform": "per_channel_zscore_no_floor"}, ("model_input",),
                                ("batch_transform", "divides by a ~0 std", "constant within those samples")),
}


@pytest.mark.parametrize("fault", list(USER_FAULTS))
def test_user_code_fault_is_caught_by_its_check(fault, request):
    fixture, changes, expected, words = USER_FAULTS[fault]
    corpus = request.getfixturevalue(fixture)
    cfg = user_config(corpus, **changes)
    findings = run_all(cfg, names=[n for n in ("contract", "model_input", "forward", "loss_at_init", "batch_size")])
    by_check = {}
    for label, f in findings.items():
        by_check.setdefault(label.split("[")[0], []).append(f)
    for name in expected:
        assert any(f.status == FAIL and not f.values.get("crashed") for f in by_check[name]), f"{fault} not caught by {name}: " + "; ".join(f.message() for f in by_check[name])
    first = next(f for f in by_check[expected[0]] if f.status == FAIL)
    text = first.message().lower()
    assert all(w.lower() in text for w in words), f"{fault}: {first.message()}"
    if fault == "no_std_floor":
        assert set(first.features) == set(LEFT_HAND_FEATURES), first.features
        ids = {r.split: set() for r in read_manifest(corpus)}
        for r in read_manifest(corpus):
            ids[r.split].add(r.id)
        # every probe sample: train ones (0/0 = NaN) and dev/test ones, where the hand moves (x/0 = Inf)
        assert set(first.samples) & ids["train"] and set(first.samples) & ids["dev"], first.samples
    if fault == "blank_index_mismatch":  # the other model checks cannot run, and say why
        assert by_check["forward"][0].status == SKIP and "contract" in by_check["forward"][0].summary


def test_double_normalization_is_named_and_measured(corpus):
    """The incident's loop z-score over an already z-scored dataset: named, and whether it
    matters for this model is measured, not assumed (a ConvGRU has no input norm: it does)."""
    cfg = user_config(corpus).replace(batch_transform="harness.faults:per_sample_zscore")
    finding = run_all(cfg, names=["model_input"])["model_input"]
    assert finding.status == WARN, finding.message()
    assert "normalized twice" in finding.summary and "it changes this model's output" in finding.summary, finding.message()
    # and its statistics include padded frames: for this model (no per-frame norm) that changes the output
    padding = run_all(cfg, names=["padding"])["padding[batch_transform]"]
    assert padding.status == FAIL and "depends on the batch's padding" in padding.summary, padding.message()


# ----------------------------------------------------------------------------- bad components


def _linear_model(vocab_size, input_dim, output):
    """A per-frame linear model whose forward returns output(logits, lengths)."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(input_dim, vocab_size)

        def output_lengths(self, lengths):
            return lengths

        def forward(self, x, lengths):
            return output(self.lin(x), lengths)

    return M()


def wrong_rank_model(vocab_size, input_dim):
    return _linear_model(vocab_size, input_dim, lambda logits, lengths: (logits.mean(1), lengths))


def lengths_list_model(vocab_size, input_dim):
    return _linear_model(vocab_size, input_dim, lambda logits, lengths: (logits.log_softmax(-1), lengths.tolist()))


def no_output_lengths_model(vocab_size, input_dim):
    return nn.Linear(input_dim, vocab_size)


class NoIdDataset(torch.utils.data.Dataset):
    def __init__(self, split):
        self.split = split

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return {"features": torch.zeros(10, 4), "glosses": "A B"}


class RaggedDataset(NoIdDataset):
    def __getitem__(self, i):
        return {"id": f"{self.split}{i}", "features": torch.zeros(10, 4 + (i == 2)), "glosses": "A B"}


BAD_MODELS = {
    "wrong_rank_model": "log_probs is shape (2, 4) torch.float32, expected a float tensor [B, T', V]",
    "lengths_list_model": "out_lengths is list, expected a long tensor [B]",
    "no_output_lengths_model": "no output_lengths(lengths [B]) -> [B] method",
}


@pytest.mark.parametrize("factory", list(BAD_MODELS))
def test_a_model_that_breaks_the_contract_is_named(corpus, factory):
    cfg = user_config(corpus).replace(model=f"tests.test_user_code:{factory}")
    f = run_check("contract", HarnessContext(cfg))
    assert f.status == FAIL, f.message()
    assert f"model = 'tests.test_user_code:{factory}' breaks the model contract" in f.summary and BAD_MODELS[factory] in f.summary, f.summary


@pytest.mark.parametrize("spec, words", [
    ("tests.no_such_module:make", ("model = 'tests.no_such_module:make'", "cannot import module 'tests.no_such_module'", "PYTHONPATH")),
    ("tests.user_project.model:nothing_here", ("has no attribute 'nothing_here'",)),
    ("tests.user_project.data:POSE_AND_HANDS", ("ndarray object is not callable", "expected a factory(vocab_size, input_dim)")),
    ("make_model", ("expected 'module.path:attribute'",)),
])
def test_a_factory_that_does_not_load_is_named(spec, words):
    with pytest.raises(ComponentError) as err:
        import_object(spec, "model", expected="a factory(vocab_size, input_dim) -> nn.Module")
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize("dataset, words", [
    ("NoIdDataset", ("item 0", "missing key(s) ['id']", "expected ['id', 'features', 'glosses']")),
    ("RaggedDataset", ("item 2", "F=5 per frame, earlier items 4", "same width")),
])
def test_a_dataset_item_that_breaks_the_contract_is_named(corpus, dataset, words):
    cfg = user_config(corpus).replace(dataset=f"tests.test_user_code:{dataset}", data_dir=None)
    ctx = HarnessContext(cfg)
    f = run_check("contract", ctx)
    assert f.status == FAIL and all(w in f.summary for w in words), f.summary
    assert f"dataset = 'tests.test_user_code:{dataset}'" in f.summary


def test_a_broken_component_is_one_clear_line_from_the_command_line(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('model = "tests.test_user_code:wrong_rank_model"\ndataset = "tests.test_user_code:RaggedDataset"\ndevice = "cpu"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "harness", "check", "--config", str(cfg), "-k", "contract", "--json", str(tmp_path / "f.json")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL contract: model = 'tests.test_user_code:wrong_rank_model' breaks the model contract" in r.stdout, r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    finding = json.loads((tmp_path / "f.json").read_text())["findings"][0]
    assert finding["check"] == "contract" and "same width" in finding["summary"]


# ----------------------------------------------------------------------------- the gate and train.py


def test_fingerprint_covers_the_user_source(tmp_path, corpus):
    """Editing the user's model (or a helper module beside it) changes the gate's fingerprint:
    a changed model never keeps a cached PASSED verdict."""
    project = tmp_path / "proj"
    project.mkdir()
    for name in ("model.py", "data.py", "loop.py"):
        (project / f"fp_{name}").write_text((REPO / "tests" / "user_project" / name).read_text())
    cfg = TrainConfig(data_dir=str(corpus), dataset="fp_data:make_dataset", model="fp_model:make_model", config_dir=str(project), device="cpu")
    before = fingerprint(cfg)
    assert fingerprint(cfg) == before
    path = project / "fp_model.py"
    path.write_text(path.read_text().replace("kernel_size=3", "kernel_size=5"))
    assert fingerprint(cfg) != before
    assert fingerprint(dataclasses.replace(cfg, batch_transform="fp_loop:scale")) != fingerprint(cfg)


def test_train_py_trains_the_user_setup_behind_the_gate(tmp_path, corpus, capsys, monkeypatch):
    """train.py's main() in this process, from the user's folder (the command line itself is
    tested by the outside projects and test_train_conventions)."""
    import train

    cfg = tmp_path / "user.toml"
    cfg.write_text(
        f'data_dir = "{corpus}"\ndataset = "{DATA}make_dataset"\nmodel = "{MODEL}"\nbatch_transform = "{LOOP}scale"\n'
        f'device = "cpu"\nbatch_size = 4\nepochs = 2\nbeam_width = 1\noutput_dir = "{tmp_path / "run"}"\n'
    )
    monkeypatch.chdir(tmp_path)
    status = train.main(["--config", str(cfg), "--threads", "1"])
    printed = capsys.readouterr().out
    assert status == 0, printed[-3000:]
    assert "compatibility gate: PASSED" in printed and "dev WER" in printed and "test WER" in printed, printed
    ckpt = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["model_name"] == MODEL and ckpt["model_args"]["input_dim"] == 150
    from model.registry import model_from_checkpoint_args

    model_from_checkpoint_args(ckpt["model_name"], ckpt["model_args"]).load_state_dict(ckpt["model"])


def test_harness_overfit_command_on_the_user_setup(tmp_path, corpus):
    """`python -m harness overfit` from outside the repository: the user's model reaches 0% WER."""
    cfg = tmp_path / "user.toml"
    cfg.write_text(f'data_dir = "{corpus}"\ndataset = "{DATA}make_dataset"\nmodel = "{MODEL}"\ndevice = "cpu"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "harness", "overfit", "--config", str(cfg)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "CSLR harness findings" in r.stdout and "overfit  pass" in r.stdout and "1 passed" in r.stdout, r.stdout
