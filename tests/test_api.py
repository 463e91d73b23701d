"""harness.check(): the checks as a Python function, on a configuration file or on the user's own
Python objects (model factory or instance, dataset factory or {split: Dataset}, transform), with a
Report back; `python -m harness check --only`; and `pytest -m compat --config cfg.toml` in a
user's project that has no test file of its own (the plugin collects the suite itself).

The user's code is written as a user would write it (USER_CODE: a per-frame Linear + GRU CTC
model, an in-memory dataset, a per-sample z-score without a std floor) into a folder outside the
repository. Subprocess runs are few (each imports torch): one `python -m harness`, three pytest.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness import check
from harness.api import HarnessFailure, Report
from harness.findings import PASS, SKIP

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300

USER_CODE = '''
import torch
import torch.nn.functional as F
from torch import nn

WIDTH = 6


class FrameGRU(nn.Module):
    def __init__(self, vocab_size, input_dim, hidden=16):
        super().__init__()
        self.inp = nn.Linear(input_dim, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def output_lengths(self, lengths):
        return torch.as_tensor(lengths, dtype=torch.long)

    def forward(self, x, lengths):
        h, _ = self.gru(torch.relu(self.inp(x)))
        return F.log_softmax(self.head(h), dim=-1), lengths


def make_model(vocab_size, input_dim, **options):
    return FrameGRU(vocab_size, input_dim, **options)


def _items(split, n, seed, constant_channel=False):
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        x = torch.randn(12 + (5 * i) % 15, WIDTH, generator=g)
        if constant_channel and i % 2 == 0:
            x[:, 0] = 0.0  # a sensor that reads nothing in this sample
        items.append({"id": f"{split}-{i}", "features": x, "glosses": ["A", "B", "C"][i % 3] + " " + ["B", "C"][i % 2]})
    return items


SIZES = {"train": (8, 0), "dev": (3, 1)}


def make_dataset(split):
    n, seed = SIZES[split]  # KeyError: no such split
    return _items(split, n, seed)


def make_dataset_with_constant_channel(split):
    n, seed = SIZES[split]
    return _items(split, n, seed, constant_channel=True)


def zscore_no_floor(features, lengths):
    """Each sample's channels z-scored over its valid frames, without a std floor."""
    mask = (torch.arange(features.shape[1])[None] < lengths[:, None]).unsqueeze(-1).float()
    n = lengths[:, None, None].float()
    mean = (features * mask).sum(1, keepdim=True) / n
    std = (((features - mean) * mask) ** 2).sum(1, keepdim=True).div(n).sqrt()
    return (features - mean) / std * mask
'''
HEALTHY = 'model = "usercode:make_model"\ndataset = "usercode:make_dataset"\ndevice = "cpu"\nbatch_size = 4\n'
FAULTY = ('model = "usercode:make_model"\ndataset = "usercode:make_dataset_with_constant_channel"\n'
          'batch_transform = "usercode:zscore_no_floor"\ndevice = "cpu"\nbatch_size = 4\n')
ONLY = ["contract", "model_input", "padding"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A user's project outside the repository: their code and two configurations, no test file."""
    root = tmp_path_factory.mktemp("user_api") / "project"
    root.mkdir()
    (root / "usercode.py").write_text(USER_CODE, encoding="utf-8")
    (root / "cfg.toml").write_text(HEALTHY, encoding="utf-8")
    (root / "bad.toml").write_text(FAULTY, encoding="utf-8")
    assert not root.resolve().is_relative_to(ROOT)
    return root


@pytest.fixture(scope="module")
def user(project):
    """The user's module, imported from its file as a notebook would have it."""
    spec = importlib.util.spec_from_file_location("api_user_code", project / "usercode.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def healthy(project) -> Report:
    return check(config=project / "cfg.toml")


@pytest.fixture(scope="module")
def faulty(user) -> Report:
    return check(model=user.make_model, dataset=user.make_dataset_with_constant_channel, transform=user.zscore_no_floor)


def _statuses(report: Report) -> dict:
    return {f.check: f.status for f in report.findings}


# ----------------------------------------------------------------------------- check()


def test_string_specs_from_a_configuration_file(healthy):
    report = healthy
    assert report.ok, str(report)
    assert report.roots == [] and report.failed == []
    assert report["contract"].status == PASS and report["smoke"].status == PASS and report["model_input"].status == PASS
    skipped = {f.check for f in report.findings if f.status == SKIP}
    # the user's dataset normalizes itself and has no corpus; no transform; no teacher; not the MediaPipe layout
    assert {"normalization", "clean_features", "padding[batch_transform]", "modalities", "teacher"} <= skipped
    assert "overfit" not in _statuses(report)  # its own command
    assert str(report).splitlines()[0].split() == ["check", "status", "key", "figure"]
    assert repr(report).startswith("<Report PASSED: 0 failed")
    assert report.raise_for_failures() is report


def test_python_objects_give_the_findings_of_their_specs(project, user):
    by_spec = check(config=project / "cfg.toml", only=ONLY + ["forward", "smoke"])
    by_object = check(model=user.make_model, dataset=user.make_dataset, only=ONLY + ["forward", "smoke"])
    assert _statuses(by_object) == _statuses(by_spec)
    assert by_object.ok, str(by_object)


def test_model_instance_and_split_dict(user):
    """An nn.Module instance (each check gets a deep copy: the caller's weights never change,
    though smoke trains) and a {split: Dataset} dict."""
    model = user.FrameGRU(4, user.WIDTH)  # 3 glosses + blank
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = check(model=model, dataset={"train": user.make_dataset("train"), "dev": user.make_dataset("dev")}, only=["contract", "labels", "smoke"])
    assert report.ok, str(report)
    assert report["smoke"].status == PASS
    assert report["labels"].values.get("key", "").startswith("vocab 3"), report["labels"].values
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_faulty_object_setup_has_one_root(faulty):
    """The user's transform z-scores each sample with no std floor; a channel is constant within
    half the samples: NaN in the model input, found where it is born."""
    assert not faulty.ok
    assert [f.check for f in faulty.roots] == ["model_input"], [f.message() for f in faulty.roots]
    root = faulty.roots[0]
    assert "batch_transform" in root.summary and "zscore_no_floor" in root.summary and "~0 std" in root.summary
    assert root.features == ["feature[0]"]
    assert root.samples and all(s.split("-")[1] in "02468" for s in root.samples)  # the samples with the constant channel
    caused = [f for f in faulty.failed if f is not root]
    assert caused and all(f.values["caused_by"] == "model_input" for f in caused)


def test_raise_for_failures_names_the_root_and_what_to_do(faulty):
    with pytest.raises(HarnessFailure) as info:
        faulty.raise_for_failures()
    assert isinstance(info.value, AssertionError) and info.value.report is faulty
    text = str(info.value)
    lines = text.splitlines()
    assert lines[0] == f"harness: {len(faulty.failed)} check(s) failed; root cause: model_input"
    assert lines[1].startswith("model_input: model input holds")
    assert f"hint: {faulty.roots[0].hint}" in text
    assert lines[-1].startswith("caused by the above: ") and "forward" in lines[-1]


def test_html_and_json(faulty, tmp_path):
    page = faulty.to_html(tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "FAILED" in page and "Root cause" in page
    assert "<script" not in page  # a page of its own: nothing to move inside pytest-html's report
    assert page.count("<td class='check'>model_input</td>") == 1
    notebook = faulty._repr_html_()
    assert "harness-summary" in notebook and "<script" not in notebook
    path = faulty.to_json(tmp_path / "findings.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["exitstatus"] == 1 and len(doc["findings"]) == len(faulty.findings)
    again = Report.from_json(path)
    assert again.to_dicts() == faulty.to_dicts()
    assert again.ok is False and [f.check for f in again.roots] == ["model_input"]
    with pytest.raises(ValueError, match="not a findings file"):
        (tmp_path / "other.json").write_text("[1, 2]")
        Report.from_json(tmp_path / "other.json")


def test_only_selects_checks_by_name_and_label(user):
    report = check(model=user.make_model, dataset=user.make_dataset, only=ONLY)
    assert [f.check for f in report.findings] == ["contract", "model_input", "padding[batch_transform]", "padding[model]"]
    assert [f.check for f in check(model=user.make_model, dataset=user.make_dataset, only="padding[model]").findings] == ["padding[model]"]
    with pytest.raises(ValueError, match=r"only=\['modelinput'\]: no such check; choose from contract, clean_features"):
        check(model=user.make_model, dataset=user.make_dataset, only=["modelinput"])


def test_wrong_arguments_are_one_clear_line(user):
    with pytest.raises(TypeError, match=r"^model: got int; expected 'module:attribute'"):
        check(model=42, dataset=user.make_dataset)
    with pytest.raises(TypeError, match=r"^transform: got object; expected 'module:attribute' or a callable"):
        check(model=user.make_model, dataset=user.make_dataset, transform=object())
    with pytest.raises(TypeError, match=r"unknown configuration key\(s\) \['batchsize'\]"):
        check(model=user.make_model, dataset=user.make_dataset, batchsize=4)
    with pytest.raises(TypeError, match=r"^config: got int"):
        check(3)


# ----------------------------------------------------------------------------- from a user's folder


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}


def _run(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)


def _explain(r) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-3000:]}"


def _table_checks(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.split()[:2] == ["check", "status"])
    rows = []
    for ln in lines[start + 1:]:
        parts = ln.split()
        if len(parts) < 2 or parts[1] not in ("pass", "warn", "fail", "skip"):
            break
        rows.append(parts[0])
    return rows


def test_cli_only_from_outside_the_repository(project):
    r = _run("-m", "harness", "check", "--only", "contract", "model_input", "--config", "bad.toml", cwd=project)
    assert r.returncode == 1, _explain(r)
    assert sorted(_table_checks(r.stdout)) == ["contract", "model_input"], _explain(r)  # root causes first
    assert "FAIL model_input: model input holds" in r.stdout and "zscore_no_floor" in r.stdout


def test_cli_only_rejects_an_unknown_check_before_pytest(project, capsys):
    from harness.__main__ import main

    assert main(["check", "--only", "contract", "modelinput", "--config", str(project / "cfg.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --only modelinput: no such check; choose from contract,"), err


@pytest.mark.parametrize("config, code", [("cfg.toml", 0), ("bad.toml", 1)])
def test_pytest_in_a_project_without_tests_runs_the_suite(project, healthy, config, code):
    r = _run("-m", "pytest", "-m", "compat", "--config", config, "-p", "no:cacheprovider", "-q", cwd=project)
    assert r.returncode == code, _explain(r)
    assert "no tests ran" not in r.stdout
    if code == 0:
        from harness.suite import BY_NAME

        # what check() passes, but for the smoke-marked checks: -m compat deselects them
        passed = sum(1 for f in healthy.findings if f.status == PASS and BY_NAME[f.check.split("[")[0]].marker == "compat")
        assert f"{passed} passed" in r.stdout and "failed" not in r.stdout, _explain(r)
    else:
        assert "FAILED harness/pytest_suite.py::test_check[model_input] - [FAIL] model_input:" in r.stdout, _explain(r)
        assert "FAIL model_input: model input holds" in r.stdout  # the closing findings table


def test_a_user_test_calling_check_fails_with_the_root(project, tmp_path):
    folder = tmp_path / "tests_of_user"
    folder.mkdir()
    (folder / "test_ready.py").write_text(
        "from harness import check\n\n\n"
        f"def test_ready():\n    check(config={str(project / 'bad.toml')!r}).raise_for_failures()\n", encoding="utf-8")
    r = _run("-m", "pytest", "-p", "no:cacheprovider", "-q", "test_ready.py", cwd=folder)
    assert r.returncode == 1, _explain(r)
    assert "1 failed" in r.stdout and "pytest_suite" not in r.stdout, _explain(r)  # a path was named: only that runs
    assert re.search(r"HarnessFailure: harness: \d+ check\(s\) failed; root cause: model_input\n", r.stdout), _explain(r)
    assert "E       model_input: model input holds" in r.stdout and "hint: floor the std" in r.stdout, _explain(r)


def test_the_plugin_adds_the_suite_only_when_asked_and_not_wired():
    """harness.plugin._wants_suite: a configuration or corpus given, no path named, no collected
    test using the plugin's fixtures (a project that imports the suite, or writes its own harness
    tests, runs what it has)."""
    from types import SimpleNamespace

    from harness.plugin import _wants_suite

    def config(source, **options):
        values = {"--config": None, "--data-dir": None, **options}
        return SimpleNamespace(getoption=values.__getitem__, args_source=source)

    src = pytest.Config.ArgsSource
    plain = [SimpleNamespace(fixturenames=["tmp_path"])]
    wired = plain + [SimpleNamespace(fixturenames=["train_config", "pytestconfig"])]
    assert _wants_suite(config(src.INVOCATION_DIR, **{"--config": "cfg.toml"}), plain)
    assert _wants_suite(config(src.TESTPATHS, **{"--data-dir": "corpus"}), [])
    assert not _wants_suite(config(src.INVOCATION_DIR), plain)  # a plain run of another project
    assert not _wants_suite(config(src.ARGS, **{"--config": "cfg.toml"}), plain)  # paths were named
    assert not _wants_suite(config(src.INVOCATION_DIR, **{"--config": "cfg.toml"}), wired)
