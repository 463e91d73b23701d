"""The harness plugin as users load it: through its pytest11 entry point (`pip install -e .`),
from the project root with the commands written in the README, in a project outside this
repository, with `-p harness.plugin`, under pytest-xdist, and inside a built wheel.

Every run is a fresh `python -m pytest` subprocess (each imports torch: their number is kept
small). The outer run's pytest environment is not passed on (PYTEST_ADDOPTS etc.), nor is
PYTHONPATH: the plugin must be found through the installed distribution alone.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.corpus_factory import make_corpus

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "model", "harness")
EP_NAME = "harness.plugin"
TIMEOUT = 300


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "PYTHONPATH"}
    env.update(extra)
    return env


def _pytest(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args], cwd=cwd, env=env or _env(),
        capture_output=True, text=True, timeout=TIMEOUT,
    )


def _explain(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}"


@pytest.fixture(scope="module", autouse=True)
def installed_entry_point():
    """The project must be installed (README: `pip install -r requirements.txt -e .`): without
    it nothing below can load the plugin outside this checkout. Fail, not skip: a missing
    install is the setup error this module exists to catch."""
    eps = [ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.value == "harness.plugin"]
    if not eps:
        pytest.fail("no pytest11 entry point for harness.plugin: install the project (pip install -r requirements.txt -e .)")
    assert [ep.name for ep in eps] == [EP_NAME], f"one entry point named after the module expected, got {eps}"
    return eps[0]


# ----------------------------------------------------------------------------- from the project root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small random corpus outside the repository (10 files)."""
    root = make_corpus(tmp_path_factory.mktemp("plugin") / "corpus")
    assert not root.resolve().is_relative_to(ROOT)
    return root.resolve()


def _n_files(corpus: Path) -> int:
    return len(list((corpus / "features").glob("*.npy")))


def _run_clean_features(tmp_path: Path, *data_args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`pytest -m compat <data_args>` from the project root, exactly as a user types it, narrowed
    to the one cheap check; returns the run and its clean_features finding."""
    out = tmp_path / "diag.json"
    r = _pytest("-m", "compat", *data_args, "-k", "clean_features", "--diag-json", str(out), "-p", "no:cacheprovider", cwd=ROOT)
    assert r.returncode == 0, _explain(r)
    findings = [f for f in json.loads(out.read_text())["findings"] if f["check"] == "clean_features"]
    assert len(findings) == 1, findings
    return r, findings[0]


@pytest.fixture(scope="module")
def abs_run(corpus, tmp_path_factory):
    return _run_clean_features(tmp_path_factory.mktemp("abs"), "--data-dir", str(corpus))


def test_compat_data_dir_absolute(abs_run, corpus):
    _, finding = abs_run
    assert finding["values"]["files"] == _n_files(corpus) == 10, finding


def test_compat_data_dir_absolute_keeps_project_rootdir(abs_run, corpus):
    """pytest takes `--data-dir PATH`'s value for a test path when it picks its rootdir; the
    plugin picks again once its options are known: the project's pytest.ini applies, nothing is
    written into the corpus."""
    r, _ = abs_run
    assert not (corpus / ".pytest_cache").exists()
    assert f"rootdir: {ROOT}\n" in r.stdout and "configfile: pytest.ini" in r.stdout, r.stdout[:600]


def test_compat_data_dir_relative(corpus, tmp_path):
    rel = os.path.relpath(corpus, ROOT)
    assert rel.startswith(".."), rel
    _, finding = _run_clean_features(tmp_path, "--data-dir", rel)
    assert finding["values"]["files"] == _n_files(corpus), finding


def test_compat_config_file(corpus, tmp_path):
    cfg = tmp_path / "train.toml"
    cfg.write_text(f"data_dir = {json.dumps(str(corpus))}\n", encoding="utf-8")
    _, finding = _run_clean_features(tmp_path, "--config", str(cfg))
    assert finding["values"]["files"] == _n_files(corpus), finding


def test_overfit_collects(corpus):
    r = _pytest("-m", "overfit", "--data-dir", str(corpus), "--co", "-q", "-p", "no:cacheprovider", cwd=ROOT)
    assert r.returncode == 0, _explain(r)
    m = re.search(r"(\d+)/\d+ tests collected", r.stdout)
    assert m and int(m.group(1)) >= 1, _explain(r)


# ----------------------------------------------------------------------------- a project outside the repository

OUTSIDE_TEST = '''
import pytest

from harness.findings import PASS, Finding


@pytest.mark.compat
def test_options_and_fixtures(train_config, pytestconfig, record_finding):
    assert train_config.data_dir == {data_dir!r}
    assert pytestconfig.getoption("--data-dir") == {data_dir!r}
    record_finding(Finding(check="outside_project", status=PASS, summary="plugin fixtures work", values={{"key": "ok"}}))


@pytest.mark.compat
@pytest.mark.parametrize("i", range(3))
def test_more_for_workers(i, train_config):
    assert train_config.data_dir == {data_dir!r}
'''


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """A project of its own (one test file, no conftest, no ini) and a data directory beside it,
    neither inside this repository."""
    base = tmp_path_factory.mktemp("outside")
    data_dir = base / "some corpus"  # a space: the value must survive as one argument
    data_dir.mkdir()
    project = base / "project"
    project.mkdir()
    (project / "test_uses_plugin.py").write_text(OUTSIDE_TEST.format(data_dir=str(data_dir)), encoding="utf-8")
    assert not project.resolve().is_relative_to(ROOT)
    return project, data_dir


def _check_outside_run(r: subprocess.CompletedProcess, out: Path, n_passed: int) -> None:
    assert r.returncode == 0, _explain(r)
    assert f"{n_passed} passed" in r.stdout, _explain(r)
    checks = [f["check"] for f in json.loads(out.read_text())["findings"]]
    assert checks == ["outside_project"], checks


def test_outside_project_entry_point(outside, tmp_path):
    """Plain `pytest` there: the entry point alone brings options, markers and fixtures."""
    project, data_dir = outside
    out = tmp_path / "diag.json"
    r = _pytest("--strict-markers", "-m", "compat", "--data-dir", str(data_dir), "--diag-json", str(out), "-p", "no:cacheprovider", cwd=project)
    _check_outside_run(r, out, 4)


def test_outside_project_dash_p_without_autoload(outside, tmp_path):
    """`-p harness.plugin` with entry-point autoloading disabled."""
    project, data_dir = outside
    out = tmp_path / "diag.json"
    r = _pytest(
        "-p", "harness.plugin", "--strict-markers", "-m", "compat", "--data-dir", str(data_dir), "--diag-json", str(out), "-p", "no:cacheprovider",
        cwd=project, env=_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),
    )
    _check_outside_run(r, out, 4)


def test_outside_project_markers_registered_once(outside):
    """`pytest --markers` lists the harness markers; `-p harness.plugin` on top of the autoloaded
    entry point is not a second registration (it used to be: "Plugin already registered")."""
    project, _ = outside
    r = _pytest("-p", "harness.plugin", "--markers", "-p", "no:cacheprovider", cwd=project)
    assert r.returncode == 0, _explain(r)
    for marker in ("compat", "overfit", "smoke"):
        assert f"@pytest.mark.{marker}:" in r.stdout, _explain(r)
    assert "already registered" not in r.stdout + r.stderr


def test_outside_project_xdist(outside, tmp_path):
    """Under pytest-xdist, with `-p harness.plugin` and the entry point both present in every
    worker; the controller alone writes the findings of all workers."""
    pytest.importorskip("xdist")
    project, data_dir = outside
    out = tmp_path / "diag.json"
    r = _pytest(
        "-n", "2", "-p", "harness.plugin", "--strict-markers", "-m", "compat", "--data-dir", str(data_dir), "--diag-json", str(out),
        "-p", "no:cacheprovider", cwd=project,
    )
    _check_outside_run(r, out, 4)
    assert "2 workers" in r.stdout, _explain(r)


# ----------------------------------------------------------------------------- the wheel


def test_wheel_contents(tmp_path):
    """The wheel built from pyproject.toml holds the three packages and the pytest11 entry point.
    Built from a copy of the tree so that no build/ or *.egg-info lands in the checkout."""
    try:
        importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("setuptools is not installed in this environment: --no-build-isolation cannot build")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", src / "pyproject.toml")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (src / "tests").mkdir()  # present in the real tree: must not be packaged
    (src / "tests" / "__init__.py").write_text("")
    dist = tmp_path / "dist"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir", "-q", "-w", str(dist), str(src)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert r.returncode == 0, _explain(r)
    (wheel,) = dist.glob("cslr_harness-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
        assert top == set(PACKAGES), top
        for pkg in PACKAGES:
            expected = {f"{pkg}/{p.relative_to(ROOT / pkg).as_posix()}" for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts}
            assert expected <= set(names), sorted(expected - set(names))
        (ep_file,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = z.read(ep_file).decode()
    assert re.search(r"^\[pytest11\]\s*\n(?:.*\n)*?harness\.plugin = harness\.plugin\s*$", text, re.M), text
