"""Running the catalogue: inject a fault into a copy of a healthy setup, run the checks exactly
as tests/compat/test_compat.py calls them, and tabulate which check caught which fault, and how
fast (`python -m harness.faults`)."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.corpus import atomic_write_text
from harness import suite
from harness.causes import link_causes
from harness.context import HarnessContext
from harness.faults.base import Fault, Setup
from harness.faults.catalogue import CATALOGUE, HEALTHY
from harness.faults.setups import BASE_MODEL, KAGGLE_DIR, default_base_config, kaggle_corpus, small_demo_corpus
from harness.findings import FAIL, PASS, SKIP, WARN, Finding
from harness.suite import check_name, crashed
from model.config import TrainConfig

# The table the pytest tests and the gate run (harness/suite.py), by name.
CHECKS = tuple(c.name for c in suite.CHECKS)
# Everything but the overfit run (seconds to minutes); the table runs that one only where expected.
CHEAP_CHECKS = suite.CHEAP


def run_check(name: str, ctx: HarnessContext) -> Finding:
    """One check of the table with the parameter the gate checks last for this configuration
    (its normalization method, batch size 4); never an exception (harness.suite.run_check)."""
    check = suite.BY_NAME[name]
    return suite.run_check(check, ctx, check.expand(ctx.cfg, configured_only=True)[-1])


@dataclass
class FaultRun:
    fault: Fault
    findings: list  # Finding, one per check run
    touched: list  # ids of the samples the fault altered
    seconds: float  # injection + all checks (time to verdict)

    def finding(self, name: str) -> Finding | None:
        return next((f for f in self.findings if check_name(f) == name), None)

    def caught_by(self, name: str) -> bool:
        f = self.finding(name)
        return f is not None and f.status == FAIL and not crashed(f)

    @property
    def caught(self) -> bool:
        return all(self.caught_by(name) for name in self.fault.expected_checks)

    @property
    def false_alarms(self) -> list:
        """For the healthy setup: every failing finding."""
        return [f for f in self.findings if f.status == FAIL]


def inject_and_run(fault: Fault, base_corpus, base_cfg: TrainConfig, checks=None, workdir=None) -> FaultRun:
    """Copy base_corpus, inject the fault, run `checks` (default: the fault's expected checks)."""
    start = time.perf_counter()
    checks = tuple(checks or fault.expected_checks)
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; known: {list(CHECKS)}")
    with tempfile.TemporaryDirectory(prefix=f"fault-{fault.name}-", dir=workdir) as tmp:
        corpus = Path(tmp) / "corpus"
        shutil.copytree(base_corpus, corpus)
        cfg = base_cfg.replace(data_dir=str(corpus), device="cpu", thresholds={**base_cfg.thresholds, **fault.thresholds})
        setup = Setup(corpus, cfg)
        # injected faults divide by zero on purpose; numpy's warnings would only repeat the findings
        with fault.inject(setup) as broken, np.errstate(divide="ignore", invalid="ignore"):
            ctx = HarnessContext(broken.cfg, "cpu")
            findings = link_causes([run_check(name, ctx) for name in checks])
            touched = list(broken.touched)
    return FaultRun(fault, findings, touched, time.perf_counter() - start)


def run_fault(fault: Fault, base_corpus, base_cfg: TrainConfig, checks=None) -> list[Finding]:
    """The findings of `checks` (default: the fault's expected ones) on the broken setup."""
    return inject_and_run(fault, base_corpus, base_cfg, checks).findings


def table_checks(fault: Fault, quick: bool) -> tuple:
    """Quick: the expected checks only. Full: every cheap check, plus overfit where expected."""
    if quick:
        return fault.expected_checks
    return CHEAP_CHECKS + tuple(c for c in fault.expected_checks if c not in CHEAP_CHECKS)


def detection_table(faults=CATALOGUE, base_corpus=None, base_cfg: TrainConfig | None = None, quick: bool = False, progress=None) -> list[dict]:
    """One row a fault: {fault, expected, verdict (caught/missed), statuses {check: pass/warn/fail/error}, seconds, cause}."""
    base_corpus = base_corpus or small_demo_corpus()
    base_cfg = base_cfg or default_base_config()
    rows = []
    for fault in faults:
        run = inject_and_run(fault, base_corpus, base_cfg, table_checks(fault, quick))
        statuses = {check_name(f): ("error" if crashed(f) else f.status) for f in run.findings}
        expected = [run.finding(c) for c in fault.expected_checks]
        rows.append({
            "fault": fault.name,
            "expected": list(fault.expected_checks),
            "verdict": "caught" if run.caught else "missed",
            "statuses": statuses,
            "seconds": round(run.seconds, 2),
            "cause": " | ".join(f.summary for f in expected if f is not None and f.status == FAIL),
        })
        if progress:
            progress(rows[-1])
    return rows


def healthy_run(base_corpus, base_cfg: TrainConfig, checks=tuple(CHECKS)) -> FaultRun:
    """Every check (overfit included) on the unmodified setup: any FAIL is a false alarm."""
    return inject_and_run(HEALTHY, base_corpus, base_cfg, checks)


# ----------------------------------------------------------------------------- CLI

ABBREV = {"contract": "contr", "model_input": "input", "shift": "shift", "clean_features": "clean", "labels": "label", "ctc_feasibility": "ctc", "normalization": "norm",
          "forward": "fwd", "loss_at_init": "init", "gradients": "grad", "batch_size": "batch",
          "modalities": "modal", "smoke": "smoke", "overfit": "overf", "padding": "pad"}
ABBREV.update({"teacher": "teach", "teacher_competence": "tcomp", "distill_loss": "kd", "teacher_frozen": "tfroz", "train_step": "step"})
MARK = {FAIL: "FAIL", WARN: "warn", PASS: "ok", SKIP: "skip", "error": "ERR"}


def format_table(rows: list[dict]) -> str:
    """fault x check: the status of every check run, [brackets] on the expected ones."""
    width = max(len(r["fault"]) for r in rows)
    head = f"{'fault':<{width}}  verdict  {'s':>5}  " + " ".join(f"{ABBREV[c]:>7}" for c in CHECKS)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for c in CHECKS:
            s = r["statuses"].get(c)
            text = "" if s is None else MARK[s]
            cells.append(f"{f'[{text}]' if c in r['expected'] else text:>7}")
        lines.append(f"{r['fault']:<{width}}  {r['verdict']:<7}  {r['seconds']:>5.1f}  " + " ".join(cells))
    return "\n".join(lines)


def _healthy_summary(label: str, run: FaultRun) -> dict:
    return {
        "corpus": label,
        "false_alarms": len(run.false_alarms),
        "failed": [f.message() for f in run.false_alarms],
        "warned": [f"{f.check}: {f.summary}" for f in run.findings if f.status == WARN],
        "seconds": round(run.seconds, 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.faults", description="Inject every catalogued fault and print which check catches it.")
    ap.add_argument("--quick", action="store_true", help="run only each fault's expected checks (no cross-table)")
    ap.add_argument("--json", type=Path, help="write the table and totals as JSON to this path")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these faults")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: tiny models, shared cores)")
    ap.add_argument("--no-healthy", action="store_true", help="skip the false-alarm runs on healthy corpora")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    faults = CATALOGUE
    if args.only:
        names = {f.name for f in CATALOGUE}
        unknown = sorted(set(args.only) - names)
        if unknown:
            print(f"error: unknown fault(s) {unknown}; known: {sorted(names)}", file=sys.stderr)
            return 2
        faults = tuple(f for f in CATALOGUE if f.name in args.only)
    start = time.perf_counter()
    base, cfg = small_demo_corpus(), default_base_config()
    mode = "expected checks only" if args.quick else "all cheap checks + overfit where expected"
    print(f"base setup: {base} (small demo corpus), model {BASE_MODEL}, {mode}")
    healthy = []
    if not args.no_healthy:  # first, so its one-off warm-up (imports, allocator) is not charged to a fault
        healthy.append(_healthy_summary("demo (small)", healthy_run(base, cfg)))
    rows = detection_table(faults, base, cfg, quick=args.quick,
                           progress=lambda r: print(f"  {r['fault']}: {r['verdict']} ({r['seconds']:.1f} s)", flush=True))
    print()
    print(format_table(rows))
    if not args.no_healthy:
        with tempfile.TemporaryDirectory(prefix="kaggle-corpus-") as tmp:
            kaggle = kaggle_corpus(Path(tmp) / "kaggle")
            if kaggle is not None:
                healthy.append(_healthy_summary("kaggle_asl_signs (real)", healthy_run(kaggle, cfg)))
            else:
                print(f"\n(no real data at {KAGGLE_DIR.resolve()}: Kaggle false-alarm run skipped)")
    caught = sum(r["verdict"] == "caught" for r in rows)
    print(f"\ndetection: {caught}/{len(rows)} faults caught ({caught / len(rows):.0%}); "
          f"time to verdict: max {max(r['seconds'] for r in rows):.1f} s, total {sum(r['seconds'] for r in rows):.1f} s")
    for h in healthy:
        print(f"false alarms on healthy {h['corpus']}: {h['false_alarms']} ({h['seconds']:.1f} s, all {len(CHECKS)} checks)")
        for msg in h["failed"]:
            print("  " + msg.replace("\n", "\n  "))
        for w in h["warned"]:
            print(f"  warn {w}")
    missed = [r["fault"] for r in rows if r["verdict"] == "missed"]
    if missed:
        print(f"MISSED: {missed}")
    print(f"total {time.perf_counter() - start:.1f} s")
    if args.json:
        atomic_write_text(args.json, json.dumps({"rows": rows, "healthy": healthy, "caught": caught, "faults": len(rows)}, indent=1))
    return 0 if not missed and not any(h["false_alarms"] for h in healthy) else 1
