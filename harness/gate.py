"""The gate in front of train.py: run the compat + smoke checks for the exact configuration,
in-process through pytest and the harness plugin, and refuse to train if any fails.

The verdict is cached under a fingerprint of the corpus (manifest bytes, file sizes and
mtimes), the configuration and the code (hash of data/, model/, harness/, tests/compat/), so
an unchanged setup does not re-run the checks.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from data.corpus import Corpus, atomic_write_text
from model import training
from model.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
CODE_DIRS = ("data", "model", "harness", "tests/compat")


def code_version() -> str:
    h = hashlib.sha256()
    for d in CODE_DIRS:
        for p in sorted((REPO / d).rglob("*.py")):
            h.update(p.relative_to(REPO).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def fingerprint(cfg: TrainConfig) -> str:
    corpus = Corpus(training.corpus_dir(cfg), validate=False)
    gate_relevant = cfg.to_dict()
    for k in ("output_dir", "epochs", "num_workers", "beam_width"):  # do not change what is checked
        gate_relevant.pop(k, None)
    gate_relevant["data_dir"] = str(Path(corpus.dir).resolve())
    blob = json.dumps({"corpus": corpus.fingerprint(), "config": gate_relevant, "code": code_version()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class GateResult:
    passed: bool
    failed: list = field(default_factory=list)  # finding dicts with status fail
    warned: list = field(default_factory=list)
    report: str = ""
    cached: bool = False
    seconds: float = 0.0
    exitstatus: int = 0

    def describe(self) -> str:
        head = "compatibility gate: " + ("PASSED" if self.passed else "FAILED") + (" (cached verdict)" if self.cached else "") + f" in {self.seconds:.1f}s"
        lines = [head]
        if self.failed:
            width = max(len(f["check"]) for f in self.failed)
            lines.append(f"  {'check':<{width}}  cause -> what to do")
            for f in self.failed:
                ids = f" [samples: {', '.join(map(str, f['samples'][:5]))}{' ...' if len(f['samples']) > 5 else ''}]" if f.get("samples") else ""
                lines.append(f"  {f['check']:<{width}}  {f['summary']}{ids}")
                if f.get("hint"):
                    lines.append(f"  {'':<{width}}  -> {f['hint']}")
        elif not self.passed:
            lines.append(f"  the checks could not run (pytest exit status {self.exitstatus}); see the report")
        for f in self.warned:
            lines.append(f"  warn {f['check']}: {f['summary']}")
        if self.report:
            lines.append(f"  report: {self.report}")
        if not self.passed:
            lines.append("  refusing to train; fix the causes above, or pass --skip-gate to train anyway (recorded in the checkpoint)")
        return "\n".join(lines)


def run_gate(cfg: TrainConfig, out_dir, cache_dir=None, quiet: bool = True) -> GateResult:
    start = time.perf_counter()
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir else REPO / ".cache" / "gate"
    key = fingerprint(cfg)
    cached = cache_dir / f"{key}.json"
    if cached.is_file():
        d = json.loads(cached.read_text(encoding="utf-8"))
        return GateResult(d["passed"], d["failed"], d["warned"], d["report"], True, time.perf_counter() - start, d["exitstatus"])

    import pytest

    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_path, diag, report = out_dir / "gate_config.json", out_dir / "gate_findings.json", out_dir / "gate_report.html"
    gate_cfg = cfg.to_dict()
    gate_cfg["device"] = "cpu" if training.resolve_device(cfg.device).type == "cpu" else "cuda"
    atomic_write_text(cfg_path, json.dumps(gate_cfg, indent=1))
    args = [
        str(REPO / "tests" / "compat"), "-m", "compat or smoke", "--config", str(cfg_path), "--configured-only",
        "--diag-json", str(diag), "--html", str(report), "--self-contained-html",
        "-p", "no:cacheprovider", "--rootdir", str(REPO), "-c", str(REPO / "pytest.ini"),
    ]
    if gate_cfg["device"] == "cuda":
        args.append("--gpu")
    if quiet:
        args += ["-q", "--no-header"]
    exitstatus = int(pytest.main(args))
    findings = json.loads(diag.read_text(encoding="utf-8"))["findings"] if diag.is_file() else []
    failed = [f for f in findings if f["status"] == "fail"]
    warned = [f for f in findings if f["status"] == "warn"]
    passed = exitstatus == 0 and not failed
    result = GateResult(passed, failed, warned, str(report), False, time.perf_counter() - start, exitstatus)
    atomic_write_text(cached, json.dumps({"passed": passed, "failed": failed, "warned": warned, "report": str(report), "exitstatus": exitstatus}))
    return result
