"""The gate in front of train.py: run the compat + smoke checks for the exact configuration,
in-process through pytest and the harness plugin, and refuse to train if any fails.

The configuration goes to the run as an object and the findings come back as Finding objects
(harness.plugin.ConfiguredRun). The verdict is cached under a fingerprint of the corpus
(manifest bytes, file sizes and mtimes), the configuration, the project's code (hash of data/,
model/, harness/), the source of the user's model, dataset, batch_transform, collate_fn and
train_step, and the user's vocabulary (the bytes of a vocab file, else its glosses and blank),
so an unchanged setup does not re-run the checks and a changed one always does.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from data.corpus import Corpus, atomic_write_bytes, atomic_write_text
from harness.findings import FAIL, WARN
from model import training
from model.components import ComponentError, _search_dirs, load_user_vocab, source_digest
from model.distill import file_digest
from model.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
CODE_DIRS = ("data", "model", "harness")
REPORT_FILES = ("gate_report.html", "gate_findings.json")


def code_version() -> str:
    h = hashlib.sha256()
    for d in CODE_DIRS:
        for p in sorted((REPO / d).rglob("*.py")):
            h.update(p.relative_to(REPO).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def fingerprint(cfg: TrainConfig) -> str:
    gate_relevant = cfg.to_dict()
    for k in ("output_dir", "epochs", "num_workers", "beam_width"):  # do not change what is checked
        gate_relevant.pop(k, None)
    corpus = None
    if cfg.dataset is None or cfg.data_dir is not None:
        c = Corpus(training.corpus_dir(cfg), validate=False)
        corpus = c.fingerprint()
        gate_relevant["data_dir"] = str(Path(c.dir).resolve())
    # a user dataset's data is read by its own code: its source is fingerprinted, its files cannot be
    user_code = source_digest([cfg.model, cfg.dataset, cfg.batch_transform, cfg.collate_fn, cfg.train_step], cfg.config_dir)
    # a distillation run's verdict depends on the teacher file's content, not only its path
    teacher = file_digest(cfg.teacher) if getattr(cfg, "teacher", None) and Path(cfg.teacher).is_file() else None
    blob = json.dumps({"corpus": corpus, "config": gate_relevant, "code": code_version(), "user_code": user_code, "teacher": teacher,
                       "vocab": vocab_digest(cfg)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def vocab_digest(cfg: TrainConfig) -> str | None:
    """What the configured vocabulary (cfg.vocab) is: the sha256 of a vocab file's bytes (found
    where model.components.load_user_vocab looks), else of its glosses and blank as loaded (a
    "module.path:attribute", a list, a table); one that does not load gives its error, for the
    contract check to report. None without a vocabulary."""
    spec = cfg.vocab
    if spec is None:
        return None
    if isinstance(spec, str):
        candidates = [Path(spec)] if Path(spec).is_absolute() else [Path(d) / spec for d in _search_dirs(cfg.config_dir)]
        found = next((p for p in candidates if p.is_file()), None)
        if found is not None:
            return file_digest(found)
    try:
        vocab = load_user_vocab(spec, cfg.blank, cfg.config_dir)
    except ComponentError as exc:
        return f"does not load: {exc}"
    return hashlib.sha256(json.dumps([vocab.names, vocab.blank]).encode()).hexdigest()


@dataclass
class GateResult:
    passed: bool
    failed: list = field(default_factory=list)  # finding dicts with status fail
    warned: list = field(default_factory=list)
    report: str = ""
    cached: bool = False
    seconds: float = 0.0
    exitstatus: int = 0
    findings: list = field(default_factory=list, repr=False)  # Finding objects of this run (empty when cached)
    # the train split's data profile (harness/profile.py) read off this run's corpus scan, kept with
    # the cached verdict; None without a corpus in this project's format
    data_profile: dict | None = None

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
    kept = {name: cache_dir / f"{key}.{name}" for name in REPORT_FILES}  # the report files of the run that gave the verdict
    if cached.is_file():
        d = json.loads(cached.read_text(encoding="utf-8"))
        # this run gets its own copy of the report: the run that was cached may be long gone
        out_dir.mkdir(parents=True, exist_ok=True)
        report = ""
        for name, src in kept.items():
            if src.is_file():
                atomic_write_bytes(out_dir / name, src.read_bytes())
                report = str(out_dir / REPORT_FILES[0]) if (out_dir / REPORT_FILES[0]).is_file() else report
        return GateResult(d["passed"], d["failed"], d["warned"], report, True, time.perf_counter() - start, d["exitstatus"],
                          data_profile=d.get("data_profile"))

    import pytest

    from harness.causes import link_causes
    from harness.plugin import ConfiguredRun
    from harness.pytest_suite import standalone_args

    out_dir.mkdir(parents=True, exist_ok=True)
    report, diag = (out_dir / name for name in REPORT_FILES)
    run = ConfiguredRun(cfg)
    args = standalone_args() + [
        "-m", "compat or smoke", "--configured-only", "--diag-json", str(diag), "--html", str(report), "--self-contained-html",
    ]
    if quiet:
        args += ["-q", "--no-header"]
    exitstatus = int(pytest.main(args, plugins=[run]))
    run.findings = link_causes(run.findings)  # root causes first, the rest say what caused them
    failed = [f.to_json() for f in run.findings if f.status == FAIL]
    warned = [f.to_json() for f in run.findings if f.status == WARN]
    passed = exitstatus == 0 and not failed
    profile = _data_profile(run.context)
    result = GateResult(passed, failed, warned, str(report) if report.is_file() else "", False, time.perf_counter() - start, exitstatus,
                        findings=run.findings, data_profile=profile)
    for name, dst in kept.items():
        if (out_dir / name).is_file():
            atomic_write_bytes(dst, (out_dir / name).read_bytes())
    atomic_write_text(cached, json.dumps({"passed": passed, "failed": failed, "warned": warned, "exitstatus": exitstatus, "data_profile": profile}))
    return result


def _data_profile(ctx) -> dict | None:
    """The train split's profile from the scan the checks made (no second pass over the files);
    None without a context or a corpus in this project's format."""
    if ctx is None or ctx.raw_scan is None:
        return None
    from harness.profile import profile_from_scan

    return profile_from_scan(ctx.raw_scan, ctx.corpus.records, split="train")
