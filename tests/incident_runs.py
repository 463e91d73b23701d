"""The runs of examples/incident that several test modules read, made once a test session.

`python -m harness check` as a user runs it, three subprocesses started together:
  broken   examples/incident/harness.toml, working directory outside the repository, --html --json
  fixed    examples/incident/fixed.toml, the same way
  xdist    the relative path examples/incident/harness.toml from the project root, with -n 2 and
           a subset of the checks (a root cause, a failure it causes, a pass, a skip)

Under pytest-xdist the first worker to ask runs them under a file lock in the session's shared
temporary directory and writes what they printed and returned; the other worker reads that.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "incident"
TIMEOUT = 600
SUBSET = "contract or clean_features or model_input or forward"


def _commands(out: Path) -> dict:
    """name -> (config as given on the command line, working directory, extra arguments)."""
    return {
        "broken": (EXAMPLE / "harness.toml", out, []),
        "fixed": (EXAMPLE / "fixed.toml", out, []),
        "xdist": (Path("examples/incident/harness.toml"), ROOT, ["-n", "2", "-k", SUBSET]),
    }


def _run_all(out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="250")  # wide enough for the short summary's messages
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_XDIST_WORKER_COUNT", None)
    procs = {}
    for name, (config, cwd, extra) in _commands(out).items():
        cmd = [sys.executable, "-m", "harness", "check", "--config", str(config),
               "--html", str(out / f"{name}.html"), "--json", str(out / f"{name}.json"), *extra]
        log = open(out / f"{name}.log", "w", encoding="utf-8")
        procs[name] = (subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env), log)
    results = {}
    for name, (proc, log) in procs.items():
        try:
            rc = proc.wait(timeout=TIMEOUT)
        finally:
            log.close()
            if proc.poll() is None:
                proc.kill()
        results[name] = {"rc": rc, "log": str(out / f"{name}.log"), "html": str(out / f"{name}.html"), "json": str(out / f"{name}.json")}
    return results


def incident_runs(tmp_path_factory) -> dict:
    """{name: {rc, out (what it printed), html (path or None), findings ({check: finding JSON})}}."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: every worker's basetemp sits in one dir
    out = shared / "incident-runs"
    out.mkdir(exist_ok=True)
    assert not out.resolve().is_relative_to(ROOT)  # the working directory of two runs: outside the repository
    done = out / "results.json"
    with FileLock(str(out / "lock")):
        if not done.is_file():
            done.write_text(json.dumps(_run_all(out)), encoding="utf-8")
    results = {}
    for name, r in json.loads(done.read_text(encoding="utf-8")).items():
        html, js = Path(r["html"]), Path(r["json"])
        findings = {f["check"]: f for f in json.loads(js.read_text())["findings"]} if js.is_file() else {}
        results[name] = {"rc": r["rc"], "out": Path(r["log"]).read_text(encoding="utf-8"), "html": html if html.is_file() else None,
                         "findings": findings}
    return results
