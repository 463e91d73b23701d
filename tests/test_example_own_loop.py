"""examples/own_loop: a project with its own model, dataset, collate, training step and loop that
uses the harness as a library. Every command runs as a subprocess from a folder outside the
repository, as its user would run it: the check passes, the user's own pytest test passes, the
loop trains with finite losses, and a batch poisoned with NaN stops the loop at that step with
the guard naming the clips and printing a replay command that reproduces it.
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own_loop"
CONFIG = EXAMPLE / "harness.toml"
TIMEOUT = 300
LOSS_LINE = re.compile(r"^step (\d+)  loss (\S+)$", re.M)


def _run(args, cwd: Path) -> subprocess.CompletedProcess:
    # the project from the checkout (also when it is not pip-installed); the example's own modules
    # come from the configuration's directory (harness) or the script's (train_loop.py)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("own_loop")
    assert not path.resolve().is_relative_to(ROOT)
    return path


def test_check_passes_on_the_declared_conventions(outside):
    findings_json = outside / "findings.json"
    r = _run(["-m", "harness", "check", "--config", CONFIG, "--json", findings_json], outside)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "CSLR harness findings" in r.stdout
    findings = {f["check"]: f for f in json.loads(findings_json.read_text())["findings"]}
    assert not [c for c, f in findings.items() if f["status"] == "fail"]
    # what the project declares is read as declared: its vocabulary with the blank last, its
    # [T', B, V] output at half the frame rate, its collate and its step
    for name in ("contract", "labels", "ctc_feasibility", "model_input", "forward", "loss_at_init",
                 "padding[model]", "gradients", "train_step", "smoke"):
        assert findings[name]["status"] == "pass", f"{name}: {findings[name]['summary']}"
    assert findings["labels"]["values"]["key"] == "vocab 12+blank", findings["labels"]["values"]
    # the step the loop runs is the one checked: CTC with mean reduction
    assert findings["train_step"]["values"]["key"] == "loss: CTC 'mean'", findings["train_step"]["values"]


def test_the_users_own_pytest_test_passes(outside):
    r = _run(["-m", "pytest", EXAMPLE / "test_ready.py", "-q", "-p", "no:cacheprovider"], outside)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert re.search(r"^1 passed\b", r.stdout, re.M), r.stdout[-2000:]


def test_the_loop_trains_with_finite_losses(outside):
    out = outside / "clean_guard"
    r = _run([EXAMPLE / "train_loop.py", "--steps", "6", "--out", out], outside)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    steps = [(int(n), float(x)) for n, x in LOSS_LINE.findall(r.stdout)]
    assert [n for n, _ in steps] == [1, 2, 3, 4, 5, 6], r.stdout
    assert all(math.isfinite(x) for _, x in steps), steps
    assert steps[-1][1] < steps[0][1], steps  # it learns: the loss falls from its value at initialisation
    assert "harness guard" not in r.stderr and not out.exists(), r.stderr


def test_a_poisoned_batch_stops_the_loop_and_replays(outside):
    out = outside / "guard_out"
    r = _run([EXAMPLE / "train_loop.py", "--steps", "6", "--poison-step", "3", "--out", out], outside)
    assert r.returncode == 1, (r.stdout + r.stderr)[-3000:]
    m = re.search(r"^step 3: NaN put into (.+)$", r.stdout, re.M)
    assert m, r.stdout
    poisoned = m.group(1).split(", ")
    assert len(poisoned) == 2 and all(p.startswith("demo-train-") for p in poisoned), poisoned
    # steps 1 and 2 trained, step 3 never reached the optimizer
    assert [int(n) for n, _ in LOSS_LINE.findall(r.stdout)] == [1, 2], r.stdout
    err = r.stderr
    assert "harness guard: non-finite loss and gradients at step 3" in err, err
    assert f"input: already non-finite in batch['x']: samples {', '.join(poisoned)}" in err, err
    assert "first non-finite module: 'frame.0' (Linear" in err, err  # the model's first layer, where the NaN enters
    saved = out / "nonfinite_step3.pt"
    assert saved.is_file()
    m = re.search(r"^  replay: (.+)$", err, re.M)
    assert m, err
    command = shlex.split(m.group(1))
    assert command[:4] == ["python", "-m", "harness", "replay"], command
    assert Path(command[4]) == saved and command[5:] == ["--config", str(CONFIG)], command
    assert "stopped at step 3" in err

    replay = _run(command[1:], outside)  # as printed, with this interpreter for `python`
    text = replay.stdout + replay.stderr
    assert replay.returncode == 1, text[-3000:]
    assert "input: already non-finite in batch['x']" in replay.stdout, text
    assert f"samples: {', '.join(poisoned)} (2)" in replay.stdout, text
    assert "verdict: reproduced" in replay.stdout, text
