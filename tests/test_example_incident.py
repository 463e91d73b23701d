"""examples/incident: the incident as its user wrote it (own dataset, loop transform and model)
fails `python -m harness check` with the real cause, and the fix passes.

Each command runs as a subprocess with the working directory outside the repository (and once
from the project root with the relative path), as a user would run it: the runs of
tests/incident_runs.py, shared with tests/test_report.py.
"""
from __future__ import annotations

import csv
import re

import pytest

from tests.incident_runs import EXAMPLE, incident_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """broken / fixed from outside the repository, xdist with the relative path from the project root (tests/incident_runs.py)."""
    return incident_runs(tmp_path_factory)


def _split_ids() -> dict[str, set[str]]:
    manifests = list((EXAMPLE / ".corpus").glob("incident-v*/manifest.csv"))
    assert manifests, "the runs should have built the corpus under examples/incident/.corpus"
    ids: dict[str, set[str]] = {}
    with open(manifests[0], newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            ids.setdefault(r["split"], set()).add(r["id"])
    return ids


def _harmless(summary: str) -> None:
    """The second z-score is named and measured as harmless: log-probs differ by < 1e-3."""
    assert "normalized twice" in summary and "by itself harmless for this model" in summary, summary
    m = re.search(r"log-probs differ by at most ([0-9.e+-]+) with and without the second z-score", summary)
    assert m and float(m.group(1)) < 1e-3, summary


def test_reported_config_fails_on_the_zero_std_division(runs):
    r = runs["broken"]
    assert r["rc"] == 1, r["out"][-3000:]
    assert "CSLR harness findings" in r["out"] and "FAIL model_input:" in r["out"]
    mi = r["findings"]["model_input"]
    assert mi["status"] == "fail"
    s = mi["summary"]
    # the cause: a per-channel division by a std that is 0, found on the dataset object
    assert "(x - mean) / std with std = 0 on channels that are constant over the data its statistics come from" in s, s
    m = re.search(r"dataset\.feature_std is 0 at (\d+) channel\(s\), (\d+) of them the non-finite ones", s)
    assert m, s
    # 252 left-hand channels (63 coordinates + velocity, acceleration, displacement); this corpus also
    # has the right wrist's z exactly 0 in every frame (4 more)
    assert int(m.group(1)) == 256 and m.group(1) == m.group(2)
    assert mi["values"]["zero_divisors"] == {"dataset.feature_std": 256}
    assert mi["values"]["division_by_zero_std"] is True
    assert mi["values"]["born_in"] == "dataset"
    # the channels: the left hand's
    assert mi["features"] and all(f.startswith("left_hand[") for f in mi["features"]), mi["features"]
    # the samples: the train probe samples (the split whose statistics divide by 0) first, then the
    # dev/test extremes, non-finite there too (x / 0 = Inf where the left hand appears)
    ids = _split_ids()
    n_train = sum(1 for i in mi["samples"] if i in ids["train"])
    assert n_train >= 4 and set(mi["samples"][:n_train]) <= ids["train"], mi["samples"]
    assert set(mi["samples"][n_train:]) <= ids["dev"] | ids["test"], mi["samples"]
    assert set(mi["samples"]) & ids["dev"] and set(mi["samples"]) & ids["test"], mi["samples"]
    # the per-sample z-score spreads the NaN from the left-hand channels (256 / 6516) to the whole input
    assert "spreads them from 3.9% to 100.0%" in s, s
    assert mi["values"]["nonfinite_fraction"] == 1.0
    # and training goes non-finite at once
    assert r["findings"]["smoke"]["status"] == "fail"
    # smoke fails with it, and says what caused it
    smoke = r["findings"]["smoke"]
    assert smoke["values"]["caused_by"] == "model_input" and smoke["summary"].startswith("caused by model_input: step 1: non-finite loss")


def test_reported_config_says_whether_double_normalization_matters(runs):
    # judged on finite input (the dataset's output with NaN/Inf set to 0), although the model input is 100% NaN
    mi = runs["broken"]["findings"]["model_input"]
    assert mi["values"]["double_normalization"] is True
    _harmless(mi["summary"])


def test_fixed_config_passes_and_measures_the_double_normalization(runs):
    r = runs["fixed"]
    assert r["rc"] == 0, r["out"][-3000:]
    failed = [f"{c}: {f['summary']}" for c, f in r["findings"].items() if f["status"] == "fail"]
    assert not failed, failed
    mi = r["findings"]["model_input"]
    assert mi["values"]["nonfinite_fraction"] == 0.0
    assert mi["values"]["max_abs"] <= 50
    # dev/test probed too, and no channel unbounded there: the constant channels are set to 0
    assert mi["values"]["probe_samples"] > 8
    assert "unbounded" not in mi["summary"], mi["summary"]
    assert mi["values"]["double_normalization"] is True
    _harmless(mi["summary"])
    for n in (1, 2, 4):  # the per-frame LayerNorm undoes the padding-dependent per-sample z-score
        assert r["findings"][f"batch_size[{n}]"]["status"] == "pass"
    # so the z-score's dependence on padding is latent for this model: a warning that says so
    pad = r["findings"]["padding[batch_transform]"]
    assert pad["status"] == "warn" and "no effect on this model's output" in pad["summary"], pad["summary"]
    assert r["findings"]["smoke"]["status"] == "pass"


def test_reported_config_judges_padding_only_on_finite_input(runs):
    findings = runs["broken"]["findings"]
    for where in ("batch_transform", "model"):
        f = findings[f"padding[{where}]"]
        assert f["status"] == "skip" and "nothing to judge" in f["summary"], f["summary"]


def test_a_std_floor_alone_fails_on_the_dev_samples_it_divides_by_the_floor():
    """floored.toml: no NaN, but a dev/test sample in which the left hand appears reaches 2.1e3
    (x / 1e-3) where train never moved, and the loop's z-score squashes the rest of it."""
    import numpy as np

    from harness.context import HarnessContext
    from harness.suite import run_check
    from model.config import load_config

    with np.errstate(all="ignore"):
        f = run_check("model_input", HarnessContext(load_config(EXAMPLE / "floored.toml")))
    assert f.status == "fail" and f.values["born_in"] == "dataset", f.message()
    assert f.values["divisor"]["attribute"] == "dataset.feature_std" and f.values["divisor"]["value"] == pytest.approx(1e-3)
    assert "the dataset's output on dev/test is unbounded" in f.summary and "divides the whole sample by" in f.summary, f.summary
    assert all(loc["sample"].startswith(("demo-dev", "demo-test")) for loc in f.values["locations"]), f.values["locations"]


def test_relative_config_path_from_the_project_root(runs):
    r = runs["xdist"]  # the relative path, from the project root
    assert r["rc"] == 1, r["out"][-3000:]
    assert "FAIL model_input:" in r["out"] and "dataset.feature_std is 0 at" in r["out"]
