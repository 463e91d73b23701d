"""benchmarks/bench.py: the side-by-side measuring machinery, the synthetic corpora, the child
processes and the CLI. No test asserts a speed: the machine is shared, so only structure and
ratios that do not depend on load (bytes on disk) are checked."""
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.corpus import read_manifest
from data.layout import LAYOUT, RAW_DIM
from benchmarks import bench
from benchmarks.children import run_child
from benchmarks.corpora import write_synthetic_corpus
from benchmarks.measure import GOALS, Row, SectionResult, best_of_alternating
from benchmarks.sections import section_disk, section_memory, section_scale

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks" / "bench.py"


# ----------------------------------------------------------------------------- alternation, rows, table


def test_best_of_alternating_flips_order_each_round_and_keeps_best():
    log = []
    values = {"a": iter([3, 1, 2]), "b": iter([5, 9, 4])}

    def make(name):
        def run():
            log.append(name)
            return next(values[name])
        return run

    got = best_of_alternating({"a": make("a"), "b": make("b")}, rounds=3)
    assert log == ["a", "b", "b", "a", "a", "b"]
    assert got["a"] == {"best": 3, "all": [3, 1, 2]} and got["b"]["best"] == 9
    slow = best_of_alternating({"t": iter([2.0, 1.5]).__next__}, rounds=2, better=min)
    assert slow["t"]["best"] == 1.5


def test_best_of_alternating_needs_a_round():
    with pytest.raises(ValueError, match="rounds"):
        best_of_alternating({"a": lambda: 1}, rounds=0)


def test_row_takes_goal_and_judges_it():
    op, limit = GOALS["trainer_vs_bare"]
    assert op == ">="
    ok = Row("trainer", "trainer_vs_bare", "x", limit + 0.01)
    low = Row("trainer", "trainer_vs_bare", "x", limit - 0.01)
    assert ok.goal == f">= {limit:g}" and ok.met is True and low.met is False
    op, limit = GOALS["gate_cached_seconds"]
    assert op == "<=" and Row("compat", "gate_cached_seconds", "x", limit * 2).met is False
    assert Row("trainer", "trainer_vs_bare", "x", float("nan")).met is None
    info = Row("scale", "not_a_goal", "x", 1.0)
    assert info.goal == "" and info.met is None


def test_table_and_json_carry_every_row_and_skip_reason():
    ran = SectionResult("disk", rows=[Row("disk", "raw32_vs_full32_bytes", "bytes a frame", 0.25, "1 B", "4 B")], load=(1.0, 1.5))
    skipped = SectionResult("extraction", skipped="no videos here", load=(1.0, 1.0))
    failed = SectionResult("trainer", rows=[Row("trainer", "trainer_vs_bare", "trainer ratio", 0.5)])
    table = bench.format_table([ran, skipped, failed], header="HEAD")
    lines = table.splitlines()
    assert lines[0] == "HEAD" and "ratio" in lines[1] and "goal" in lines[1]
    assert any("bytes a frame" in ln and "yes" in ln and "1.0->1.5" in ln for ln in lines)
    assert any("trainer ratio" in ln and "NO" in ln for ln in lines)
    assert any("(skipped)" in ln and "no videos here" in ln for ln in lines)
    doc = json.loads(json.dumps(bench.to_json([ran, skipped], {"quick": True})))
    assert [r["key"] for r in doc["rows"]] == ["raw32_vs_full32_bytes"]
    assert doc["sections"]["extraction"]["skipped"] == "no videos here" and doc["quick"] is True
    assert set(GOALS) == set(doc["goals"])


# ----------------------------------------------------------------------------- synthetic corpora


def test_synthetic_corpus_is_a_valid_corpus(tmp_path):
    root = write_synthetic_corpus(tmp_path / "c", n_samples=25, frames=30, dtype="float16", seed=5)
    records = read_manifest(root)  # validate=True: raises on any manifest problem
    assert len(records) == 25
    splits = {s: [r for r in records if r.split == s] for s in ("train", "dev", "test")}
    assert all(splits.values())
    train_glosses = {g for r in splits["train"] for g in r.glosses}
    assert all(g in train_glosses for s in ("dev", "test") for r in splits[s] for g in r.glosses)
    for rec in records:
        arr = np.load(root / rec.path)
        assert arr.shape == (30, RAW_DIM) and arr.dtype == np.float16
        left = np.isnan(arr[:, LAYOUT.left_hand]).all(axis=1)
        assert 0 < left.sum() < 30  # the left hand is missing in a run of frames, never everywhere
        assert np.isfinite(arr[:, LAYOUT.pose]).all() and 2 <= len(rec.glosses) <= 4


def test_synthetic_corpus_is_seeded(tmp_path):
    a = write_synthetic_corpus(tmp_path / "a", 3, 10, seed=1)
    b = write_synthetic_corpus(tmp_path / "b", 3, 10, seed=1)
    assert (a / "manifest.csv").read_text() == (b / "manifest.csv").read_text()
    assert np.array_equal(np.load(a / "features" / "syn000002.npy"), np.load(b / "features" / "syn000002.npy"), equal_nan=True)


@pytest.mark.parametrize("kwargs, match", [({"n_samples": 0}, "n_samples"), ({"n_samples": 2, "dtype": "float64"}, "dtype")])
def test_synthetic_corpus_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_synthetic_corpus(tmp_path, **kwargs)


# ----------------------------------------------------------------------------- sections that are cheap


def test_disk_section_shows_the_raw_layout_is_a_quarter(tmp_path):
    res = section_disk(tmp_path, quick=True, rounds=1, frames=100)
    rows = {r.key: r for r in res.rows}
    per_frame = res.figures["bytes_per_frame"]
    # the .npy header (<= 128 bytes a file) is the only difference from the exact width ratio
    assert per_frame["raw32"] == pytest.approx(RAW_DIM * 4, abs=128 / 100 + 1e-9)
    assert rows["raw32_vs_full32_bytes"].value == pytest.approx(0.25, abs=0.005) and rows["raw32_vs_full32_bytes"].met
    assert rows["raw16_vs_full32_bytes"].value == pytest.approx(0.125, abs=0.005) and rows["raw16_vs_full32_bytes"].met


def test_child_scan_reports_result_and_memory(tmp_path):
    root = write_synthetic_corpus(tmp_path / "c", n_samples=4, frames=20)
    r = run_child("scan", corpus=str(root))
    assert r["files"] == 4 and r["frames"] == 80 and r["errors"] == 0
    assert r["peak_rss_mb"] >= r["rss_start_mb"] > 0 and r["seconds"] > 0
    assert math.isclose(r["peak_growth_mb"], r["peak_rss_mb"] - r["rss_start_mb"], abs_tol=0.2)


def test_child_failure_names_the_task_and_the_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"(?s)child task scan .*no manifest"):
        run_child("scan", corpus=str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="unknown child task"):
        run_child("nope")


def test_cli_prints_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(BENCH), "--only", "disk", "--json", str(out), "--tmp", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "load average" in done.stdout and "[T,1629] float16" in done.stdout
    doc = json.loads(out.read_text())
    assert {r["key"] for r in doc["rows"]} == {"raw32_vs_full32_bytes", "raw16_vs_full32_bytes"}
    assert len(doc["load_average"]) == 2 and doc["cpu_count"] >= 1
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # its temporary corpora are removed


@pytest.mark.parametrize("args, match", [(["--rounds", "0"], "--rounds"), (["--scale", "-5"], "--scale"), (["--only", "gpu"], "invalid choice")])
def test_cli_rejects_bad_arguments(args, match):
    done = subprocess.run([sys.executable, str(BENCH), *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and match in done.stderr


# ----------------------------------------------------------------------------- the trainer comparison


def test_bare_loop_child_trains_on_the_same_batches(tmp_path):
    from data.synthetic import generate_corpus

    corpus = generate_corpus(tmp_path / "c", seed=0, n_train=12, n_dev=2, n_test=2)
    config = tmp_path / "small.json"
    config.write_text(json.dumps({"model": "i3d_small"}))
    r = run_child("bare_loop", data_dir=str(corpus), config=str(config), epochs=2, threads=1, batch_size=4, with_loader=True)
    assert len(r["frames_per_s"]) == 2 and len(r["loader_frames_per_s"]) == 2
    assert all(x > 0 for x in r["frames_per_s"] + r["loader_frames_per_s"])


def test_memory_section_compares_n_with_10n(tmp_path):
    res = section_memory(tmp_path, quick=True, rounds=1, n=2, frames=20)
    keys = {r.key for r in res.rows}
    assert keys == {"scan_peak_10n_vs_n", "train_stats_peak_10n_vs_n"}
    for task in ("scan", "train_stats"):
        fig = res.figures[task]
        assert set(fig["peak_rss_mb"]) == {"n", "10n"} and all(v > 0 for v in fig["peak_rss_mb"].values())
    assert all(r.value > 0 and r.met is not None for r in res.rows)


def test_cli_scale_runs_the_streaming_data_pass(tmp_path):
    out = tmp_path / "scale.json"
    done = subprocess.run([sys.executable, str(BENCH), "--scale", "2000", "--json", str(out), "--tmp", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert {r["key"] for r in doc["rows"]} == {"scale_frames_per_s", "scale_peak_vs_corpus"}
    fig = doc["sections"]["scale"]["figures"]
    assert fig["frames"] == 2000 and fig["samples"] == 10 and fig["errors"] == 0
    assert fig["findings"] == {"clean_features": "pass", "ctc_feasibility": "pass", "labels": "pass"}


def test_scale_refuses_a_corpus_larger_than_the_free_disk(tmp_path):
    free_frames = shutil.disk_usage(tmp_path).free // (RAW_DIM * 2)
    with pytest.raises(SystemExit, match="--tmp"):
        section_scale(tmp_path, total_frames=int(free_frames * 2))
    assert not any(tmp_path.iterdir())  # refused before writing anything


# ----------------------------------------------------------------------------- today's tree against an earlier one


def test_against_skips_without_a_revision_and_names_a_bad_one(tmp_path):
    from benchmarks.against import section_against

    assert "no --against REV given" in section_against(tmp_path, True, 1).skipped
    with pytest.raises(SystemExit, match="--against no-such-rev: git could not check it out"):
        section_against(tmp_path, True, 1, rev="no-such-rev")


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the repository's git history")
def test_against_checks_the_revision_out_beside_the_tree_and_removes_it(tmp_path):
    from benchmarks.against import _slow_is_real_data, remove_worktree, worktree

    old = worktree("HEAD", tmp_path / "old")
    try:
        assert (old / "train.py").read_bytes() == subprocess.run(["git", "-C", str(REPO), "show", "HEAD:train.py"], capture_output=True).stdout
        # the tree's own packages come first on its PYTHONPATH
        done = subprocess.run([sys.executable, "-c", "import harness; print(harness.__file__)"], cwd=tmp_path, capture_output=True, text=True,
                              env={"PYTHONPATH": str(old), "PATH": ""})
        assert done.stdout.strip() == str(old / "harness" / "__init__.py"), done.stderr
        assert _slow_is_real_data(old) == _slow_is_real_data(REPO)
    finally:
        remove_worktree(old)
    assert not old.exists()
    assert str(old) not in subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
