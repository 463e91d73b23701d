"""The harness on outside user projects (tests/outside/: code written the way users unlike us
write it), each fault beside its healthy twin: every fault is caught with exactly one root
cause, the right one, located (module, sample, feature); no healthy twin fails; a padding
dependence without effect under the configured pipeline is a warning, not a failure; and the
probes survive a stock nn.TransformerEncoder's nested-tensor fast path."""
import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.causes import link_causes, root_causes
from harness.context import HarnessContext
from harness.findings import FAIL, SKIP, WARN
from harness.suite import CHEAP, expand, run_check
from model.config import load_config

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = REPO / "tests" / "outside"
# the incident-sized network (7.2M parameters) keeps its structure at a fraction of its widths here;
# the command-line test below runs it at full size
SMALL = {"incident_like": {"fusion_dim": 64, "stem_dim": 32, "lstm_hidden": 32, "lstm_layers": 1, "dropout": 0.0}}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@functools.lru_cache(maxsize=None)
def verdict(project: str, config: str) -> dict:
    """Every cheap check of one outside configuration, root causes linked: {label: Finding}."""
    cfg = load_config(OUTSIDE / project / f"{config}.toml")
    cfg = cfg.replace(model_overrides={**cfg.model_overrides, **SMALL.get(project, {})})
    ctx = HarnessContext(cfg)
    with np.errstate(all="ignore"):
        findings = [run_check(c, ctx, p) for c, p in expand(cfg, CHEAP, configured_only=True)]
    return {f.check: f for f in link_causes(findings)}


# (project, faulty config): (the one root, words its message must hold, healthy twin)
FAULTS = {
    ("incident_like", "tiny_std"): ("model_input", ("unbounded", "demo-dev-", "train scale", "dataset.std[", "divides the whole sample",
                                                    "no signal left", "a clamp hides it"), "fixed"),
    ("incident_like", "zscore_over_padding"): ("padding[batch_transform]", ("depends on the batch's padding", "statistics include padded frames"), "fixed"),
    ("incident_like", "groupnorm"): ("padding[model]", ("'stem_norm.norm' (GroupNorm)",), "fixed"),
    ("newcomer", "inverted_mask"): ("forward", ("not finite", "the longest of the batch", "self_attn", "TransformerEncoderLayer"), "harness"),
    ("newcomer", "no_mask"): ("padding[model]", ("mixes padded frames into valid ones", "self_attn"), "harness"),
    ("tcn", "bias_before_conv"): ("padding[model]", ("'conv0' (Conv1d)",), "harness"),
}


@pytest.mark.parametrize("project, config", list(FAULTS), ids=lambda x: x)
def test_each_fault_has_exactly_its_one_root_located(project, config):
    root, words, _ = FAULTS[project, config]
    findings = verdict(project, config)
    roots = root_causes(list(findings.values()))
    assert [f.check for f in roots] == [root], "\n".join(f.message() for f in findings.values() if f.status == FAIL)
    text = roots[0].message()
    missing = [w for w in words if w not in text]
    assert not missing, f"no {missing} in:\n{text}"
    assert roots[0].samples, text
    for f in findings.values():
        if f.status == FAIL and f is not roots[0]:
            assert f.values["caused_by"] == root, f.message()
        assert not f.values.get("probe_error"), f.message()  # every probe ran on the user's model


@pytest.mark.parametrize("project, config", sorted({(p, FAULTS[p, c][2]) for p, c in FAULTS}), ids=lambda x: x)
def test_no_healthy_twin_fails(project, config):
    findings = verdict(project, config)
    failed = [f.message() for f in findings.values() if f.status == FAIL]
    assert not failed, "\n".join(failed)
    assert not any(f.values.get("probe_error") for f in findings.values())


def test_the_incidents_shape_names_all_three_roots_and_what_each_batch_size_failure_comes_from():
    """Dataset std + 1e-8, a loop z-score over padded frames, a model that mixes padded frames in:
    three independent roots, each measured where it is born; batch_size points at the transform."""
    findings = verdict("incident_like", "harness")
    assert {f.check for f in root_causes(list(findings.values()))} == {"model_input", "padding[batch_transform]", "padding[model]"}
    unbounded = findings["model_input"]
    assert unbounded.values["born_in"] == "dataset" and unbounded.values["divisor"]["value"] == 0, unbounded.message()
    assert any(loc["sample"].startswith(("demo-dev", "demo-test")) for loc in unbounded.values["locations"])
    assert all(f.startswith(("left_hand", "temporal/", "right_hand")) for f in unbounded.features), unbounded.features
    for n in (2, 4):
        assert findings[f"batch_size[{n}]"].values["caused_by"] in ("padding[batch_transform]", "padding[model]")
    # padded frames receive gradient: a structural fact, judged by its effect in padding[model]
    assert findings["gradients"].status == WARN and "judged by padding[model]" in findings["gradients"].summary
    # the network ignores input_dim (its modality slices are fixed): not a contract failure
    assert findings["modalities"].status != FAIL and "ignores input_dim" not in findings["contract"].summary


def test_a_padding_dependence_without_effect_is_a_warning_that_says_when_it_would_bite():
    """A stride-2 TCN whose first conv reads zero padding, exactly its own zero padding."""
    findings = verdict("tcn", "harness")
    pad = findings["padding[model]"]
    assert pad.status == WARN and "no effect under the configured zero padding" in pad.summary and "would bite" in pad.summary, pad.message()
    assert pad.values["module"] == "conv0" and pad.values["module_type"] == "Conv1d"
    assert findings["gradients"].status == WARN and findings["batch_size[4]"].status != FAIL


def test_a_stock_transformer_encoder_is_probed_not_crashed():
    findings = verdict("newcomer", "harness")
    assert findings["forward"].status != SKIP and findings["forward"].status != FAIL, findings["forward"].message()
    assert findings["padding[model]"].status != FAIL and findings["batch_size[4]"].values["max_diff"] < 1e-4


def test_the_incident_sized_project_from_outside_the_repository(tmp_path):
    """The user's command as written, from a folder of their own, on the 7.2M-parameter network
    (6516 features a frame): exit 1, the three roots in the table, no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-m", "harness", "check", "--config", str(OUTSIDE / "incident_like" / "harness.toml")],
                       cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    assert "Traceback" not in out and "NestedTensor" not in out
    for line in ("FAIL model_input: the dataset's output on dev/test is unbounded", "FAIL padding[batch_transform]", "FAIL padding[model]"):
        assert line in out, out[-4000:]
    assert "caused by padding[" in out
