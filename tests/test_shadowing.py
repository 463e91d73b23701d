"""A user project whose files have the names of this project's packages (model.py, data.py,
harness.py): the harness still runs from that folder (`python -m harness`, the pytest plugin),
the configured `model = "model:make_model"` is the user's file, an import inside the user's code
that meant its own data.py is one line naming the file and the fix, and importing the harness
leaves another project's own `import model` alone. Also: `source_digest` over modules that report
no real file (torch.classes)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from model.components import ComponentError, import_object, source_digest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300

USER_MODEL = '''
import torch
from torch import nn


class TinyCTC(nn.Module):
    def __init__(self, vocab_size, input_dim):
        super().__init__()
        self.proj = nn.Linear(input_dim, vocab_size)

    def forward(self, features, lengths):
        return self.proj(features).log_softmax(-1), lengths

    def output_lengths(self, lengths):
        return lengths


def make_model(vocab_size, input_dim):
    return TinyCTC(vocab_size, input_dim)
'''

USER_DATA = '''
import torch

GLOSSES = ["A B", "B A", "A", "B B A"]


class Items(torch.utils.data.Dataset):
    def __init__(self, split):
        g = torch.Generator().manual_seed({"train": 0, "dev": 1, "test": 2}[split])
        self.items = [{"id": f"{split}-{i}", "features": torch.randn(12 + i, 8, generator=g), "glosses": GLOSSES[i % 4]}
                      for i in range(8)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def make_dataset(split):
    return Items(split)
'''

USER_CONFIG = 'model = "model:make_model"\ndataset = "data:make_dataset"\ndevice = "cpu"\n'


@pytest.fixture(autouse=True)
def own_sys_path(monkeypatch):
    """import_object puts the configuration's directory on sys.path: not beyond a test here."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def _user_project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(USER_MODEL)
    (folder / "data.py").write_text(USER_DATA)
    (folder / "cfg.toml").write_text(USER_CONFIG)
    return folder


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")  # the project after the user's folder, as an installed copy would be
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def _no_raw_error(out: str) -> None:
    assert "Traceback" not in out and "is not a package" not in out, out[-3000:]


# ----------------------------------------------------------------------------- from the user's folder


def test_harness_check_runs_from_a_folder_with_model_py_and_data_py(tmp_path):
    project = _user_project(tmp_path / "project")
    done = _run([sys.executable, "-m", "harness", "check", "--config", "cfg.toml", "-k", "contract"], project)
    out = done.stdout + done.stderr
    _no_raw_error(out)
    assert done.returncode == 0, out[-3000:]
    assert re.search(r"^contract\s+pass\b", out, re.M), out[-3000:]


def test_pytest_plugin_runs_the_checks_from_that_folder(tmp_path):
    project = _user_project(tmp_path / "project")
    (project / "tests").mkdir()
    (project / "tests" / "test_harness.py").write_text("from harness.pytest_suite import test_check  # noqa: F401\n")
    done = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "harness.plugin",
                 "-m", "compat", "--config", "cfg.toml", "-k", "contract", "tests/test_harness.py"], project)
    out = done.stdout + done.stderr
    _no_raw_error(out)
    assert done.returncode == 0, out[-3000:]
    assert re.search(r"\b1 passed\b", out) and re.search(r"^contract\s+pass\b", out, re.M), out[-3000:]


def test_the_plugin_leaves_another_projects_own_model_alone(tmp_path):
    """The plugin loads in every pytest run of this environment: a project of its own whose
    tests import its model.py gets its model.py."""
    project = tmp_path / "other"
    project.mkdir()
    (project / "model.py").write_text("WHOSE = 'mine'\n")
    (project / "test_own.py").write_text("import model\n\n\ndef test_own_model():\n    assert model.WHOSE == 'mine'\n")
    done = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "harness.plugin", "test_own.py"], project)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and re.search(r"\b1 passed\b", out), out[-3000:]


# ----------------------------------------------------------------------------- import_object


def test_a_spec_named_like_a_project_package_is_the_users_file(tmp_path):
    project = _user_project(tmp_path / "project")
    (project / "harness.py").write_text("def prepare(features, lengths):\n    return features * 2\n")
    factory = import_object("model:make_model", "model", project)
    dataset = import_object("data:make_dataset", "dataset", project)
    transform = import_object("harness:prepare", "batch_transform", project)
    net = factory(5, 8)
    assert type(net).__name__ == "TinyCTC" and Path(sys.modules[type(net).__module__].__file__) == project / "model.py"
    assert dataset("train")[0]["glosses"] == "A B"
    assert transform(3, None) == 6
    # the project's own packages are untouched
    assert Path(sys.modules["model"].__file__).parent == ROOT / "model" and hasattr(sys.modules["model"], "create_model")
    assert Path(sys.modules["data"].__file__).parent == ROOT / "data"
    assert import_object("model:make_model", "model", project) is factory  # loaded once


def test_a_project_package_spec_without_a_user_file_stays_the_projects(tmp_path):
    # a data/ folder of corpus files (no Python) beside the configuration is not a module
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.npy").write_bytes(b"")
    fn = import_object("model.registry:create_model", "model", tmp_path)
    assert fn.__module__ == "model.registry"
    assert import_object("data.layout:input_dim", "dataset", tmp_path).__module__ == "data.layout"


@pytest.mark.parametrize("import_line", ["from data import GLOSSES", "import data\nGLOSSES = data.GLOSSES"])
def test_users_import_of_its_own_data_py_is_one_line_naming_the_file(tmp_path, import_line):
    project = _user_project(tmp_path / "project")
    (project / "model.py").write_text(import_line + "\n" + USER_MODEL)
    with pytest.raises(ComponentError) as err:
        import_object("model:make_model", "model", project)
    text = str(err.value)
    assert "\n" not in text, text
    assert f"{project / 'data.py'} has the name of this project's package 'data'" in text, text
    assert "rename it (e.g. my_data.py)" in text, text


# ----------------------------------------------------------------------------- source_digest


@pytest.mark.parametrize("cwd", ["component_dir", "below_it"])
def test_source_digest_skips_modules_without_a_real_file(tmp_path, monkeypatch, cwd):
    import torch  # noqa: F401  - loads torch.classes, whose __file__ is the relative '_classes.py'

    # a module reporting a relative file name, as torch.classes does
    monkeypatch.setitem(sys.modules, "relative_file_module", types.SimpleNamespace(__file__="_classes.py"))
    comp = tmp_path / "comp"
    comp.mkdir()
    name = f"user_comp_{cwd}"  # one module name a case: a module is imported once a process
    (comp / f"{name}.py").write_text("def fn():\n    return 1\n")
    here = comp if cwd == "component_dir" else comp / "run"
    here.mkdir(exist_ok=True)
    monkeypatch.chdir(here)  # where the relative '_classes.py' resolves inside the component's directory
    assert not (here / "_classes.py").exists()
    first = source_digest([f"{name}:fn"], comp)
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    (comp / f"{name}.py").write_text("def fn():\n    return 2\n")
    assert source_digest([f"{name}:fn"], comp) != first


def test_source_digest_hashes_the_users_model_py_not_the_projects_package(tmp_path, monkeypatch):
    project = _user_project(tmp_path / "project")
    files = []
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: files.append(self) or real_read(self))
    first = source_digest(["model:make_model"], project)
    assert project / "model.py" in files and not any(f.is_relative_to(ROOT) for f in files), files
    (project / "model.py").write_text(USER_MODEL + "\n# edited\n")
    assert source_digest(["model:make_model"], project) != first


USER_LOOP = '''
import sys

import torch  # loads torch.classes / torch.ops, whose __file__ is a relative "_classes.py"

from harness.gate import run_gate
from model.config import load_config

result = run_gate(load_config("cfg.toml"), "gate_out", cache_dir="gate_cache")
print("gate passed" if result.passed else "gate FAILED")
sys.exit(0 if result.passed else 1)
'''


def test_the_gate_runs_from_the_users_own_loop_in_the_users_folder(tmp_path):
    """A user's loop calls harness.gate.run_gate from its own folder, beside its model.py and
    data.py: the gate's fingerprint (source_digest) reads only real files."""
    project = _user_project(tmp_path / "proj")
    (project / "my_loop.py").write_text(USER_LOOP)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "my_loop.py"], cwd=project, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "gate passed" in r.stdout, out[-3000:]
    assert "Traceback" not in out and "_classes.py" not in out
