"""The `against` section: today's tree against an earlier revision of it, side by side in one run.

    python benchmarks/bench.py --only against --against REV [--against-data CORPUS] [--against-tests] [--rounds N]

REV (a commit, tag or branch of this repository) is checked out into a temporary git worktree;
each measure runs the same command in both trees, alternating (best of `rounds`), each tree
first on PYTHONPATH so its own packages are the ones imported. Rows are new / old:

  trainer     frames/s of `python train.py --skip-gate --epochs 3` on the same demo corpus (best
              epoch >= 2: epoch 1 carries the warm-up), default model (--quick: i3d_small); and
              on --against-data CORPUS too (e.g. real sentences: benchmarks/signers.py's build)
  check       wall seconds of `python -m harness check --config CFG` from a directory outside
              both trees, on examples/incident/harness.toml, examples/own_loop/harness.toml and
              the incident-sized user project tests/outside/incident_like/harness.toml
  scan        wall seconds of the streaming compat data pass (`bench.py --scale FRAMES`) on the
              same synthetic float16 corpus size (300k frames; --quick 50k)
  tests       (--against-tests only: minutes each) wall seconds of each tree's test command,
              `python -m pytest -n 2 -q -p no:cacheprovider`, plus `-m "not slow"` where the
              tree's README command leaves the slow (real data end to end) tests out
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.children import REPO
from benchmarks.measure import Row, SectionResult, best_of_alternating

CHECK_CONFIGS = ("examples/incident/harness.toml", "examples/own_loop/harness.toml", "tests/outside/incident_like/harness.toml")


def worktree(rev: str, where: Path) -> Path:
    """REV of this repository checked out (detached) at `where`; SystemExit naming REV when git cannot."""
    done = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(where), rev], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"--against {rev}: git could not check it out ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}); "
                         "pass a commit, tag or branch of this repository")
    return where


def remove_worktree(where: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)], capture_output=True, text=True)


def _run(cmd: list, cwd: Path, tree: Path, timeout: float = 3600) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, done


def _failed(what: str, tree: Path, done: subprocess.CompletedProcess) -> RuntimeError:
    return RuntimeError(f"{what} in {tree} failed ({done.returncode}):\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")


def section_against(tmp: Path, quick: bool, rounds: int, rev: str | None = None, tests: bool = False, data_dir=None) -> SectionResult:
    res = SectionResult("against")
    if not rev:
        res.skipped = "no --against REV given: nothing to compare today's tree with"
        return res
    if not (REPO / ".git").exists():
        res.skipped = f"{REPO} is not a git checkout: --against needs the repository's history"
        return res
    old = worktree(rev, tmp / "against_tree")
    trees = {"new": REPO, "old": old}
    try:
        from data.synthetic import demo_corpus

        corpus = demo_corpus()  # the same data on both sides
        outside = tmp / "against_outside"
        outside.mkdir(exist_ok=True)
        res.figures = {"rev": rev, "rounds": rounds}
        runs = {"n": 0}

        def trainer(tree: Path, data: Path):
            def run() -> float:
                runs["n"] += 1
                out = tmp / f"against_train{runs['n']}"
                cmd = [sys.executable, "train.py", "--skip-gate", "--epochs", 3, "--data_dir", data, "--output_dir", out,
                       "--beam_width", 1, "--seed", 0] + (["--model", "i3d_small"] if quick else [])
                _, done = _run(cmd, tree, tree)
                if done.returncode != 0:
                    raise _failed("train.py", tree, done)
                rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
                return max(r["frames_per_s"] for r in rows[1:])
            return run

        for key, data, what in [("trainer", corpus, "demo corpus")] + ([("trainer_data", Path(data_dir), str(data_dir))] if data_dir else []):
            best = best_of_alternating({side: trainer(tree, data) for side, tree in trees.items()}, rounds)
            n, o = best["new"]["best"], best["old"]["best"]
            res.figures[key] = best
            res.rows.append(Row("against", f"against_{key}", f"trainer frames/s, today / {rev}", n / o, f"{n:.0f} fr/s", f"{o:.0f} fr/s",
                                f"{what}, {'i3d_small' if quick else 'default model'}, 3 epochs, best epoch >= 2"))

        for config in CHECK_CONFIGS[:1] if quick else CHECK_CONFIGS:
            def check(tree: Path, config=config):
                def run() -> float:
                    seconds, done = _run([sys.executable, "-m", "harness", "check", "--config", tree / config], outside, tree)
                    if done.returncode not in (0, 1):  # 1: a check failed, the verdict the example exists for
                        raise _failed(f"python -m harness check --config {config}", tree, done)
                    res.figures.setdefault("check_exit", {})[f"{config} {tree.name}"] = done.returncode
                    return seconds
                return run
            best = best_of_alternating({side: check(tree) for side, tree in trees.items()}, rounds, better=min)
            n, o = best["new"]["best"], best["old"]["best"]
            res.figures[f"check {config}"] = best
            res.rows.append(Row("against", f"against_check_{Path(config).parent.name}", f"harness check {config}, seconds today / {rev}", n / o,
                                f"{n:.1f} s", f"{o:.1f} s", "from a directory outside both trees"))

        frames = 50_000 if quick else 300_000
        scale_json = {side: tmp / f"against_scale_{side}.json" for side in trees}

        def scan(side: str, tree: Path):
            def run() -> float:
                _, done = _run([sys.executable, "benchmarks/bench.py", "--scale", frames, "--json", scale_json[side], "--tmp", tmp], tree, tree)
                if done.returncode != 0:
                    raise _failed("bench.py --scale", tree, done)
                return json.loads(scale_json[side].read_text())["sections"]["scale"]["figures"]["seconds"]
            return run

        best = best_of_alternating({side: scan(side, tree) for side, tree in trees.items()}, rounds, better=min)
        n, o = best["new"]["best"], best["old"]["best"]
        res.figures["scan"] = best
        res.rows.append(Row("against", "against_scan", f"compat data pass {frames:,} frames, seconds today / {rev}", n / o,
                            f"{n:.1f} s", f"{o:.1f} s", "2 workers, float16 synthetic corpus"))

        if tests:
            def suite(tree: Path):
                def run() -> float:
                    cmd = [sys.executable, "-m", "pytest", "-n", 2, "-q", "-p", "no:cacheprovider"] + (["-m", "not slow"] if _slow_is_real_data(tree) else [])
                    seconds, done = _run(cmd, tree, tree)
                    res.figures.setdefault("tests_tail", {})[tree.name] = done.stdout.strip().splitlines()[-1:] if done.stdout.strip() else []
                    if done.returncode != 0:
                        raise _failed("the test command", tree, done)
                    return seconds
                return run
            best = best_of_alternating({side: suite(tree) for side, tree in trees.items()}, rounds, better=min)
            n, o = best["new"]["best"], best["old"]["best"]
            res.figures["tests"] = best
            res.rows.append(Row("against", "against_tests", f"test command, seconds today / {rev}", n / o, f"{n:.0f} s", f"{o:.0f} s",
                                "python -m pytest -n 2 (-m 'not slow' where slow is real data end to end)"))
    finally:
        remove_worktree(old)
    return res


def _slow_is_real_data(tree: Path) -> bool:
    """Whether the tree's README test command leaves the slow tests out (its `-m "not slow"`)."""
    readme = (tree / "README.md").read_text(encoding="utf-8") if (tree / "README.md").is_file() else ""
    return re.search(r"python -m pytest -n 2 -m \"not slow\"", readme) is not None
