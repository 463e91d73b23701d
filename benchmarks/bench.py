"""Throughput and scale benchmarks: every figure is a ratio of two things measured side by side.

    python benchmarks/bench.py [--quick] [--json PATH] [--only SECTION ...] [--rounds N] [--tmp DIR]
    python benchmarks/bench.py --scale 1000000 [--json PATH]      # the 1M-frame streaming data pass
    python benchmarks/bench.py --only against --against REV [--against-data CORPUS] [--against-tests]   # today's tree vs REV

The machine may be shared with other CPU-heavy work, so no figure is an absolute speed: each
row is A / B where A and B ran in the same process tree one after the other, alternating for
`rounds` rounds, best of each side kept (fastest time, lowest peak memory). The 1-minute load
average at the start and end of each section is reported with its rows.

Sections (goals in GOALS):
  extraction  frames/s of data.extract.extract_sample vs a bare MediaPipe Holistic loop over the
              same decoded frames; wall time of `python -m data.extract --workers 2` vs 1
  loader      batches/s of the training DataLoader (MediaPipeFeatureDataset with on-the-fly
              temporal features + collate; num_workers 0 and 2) vs batches/s of
              model.training.train_step with the default model on the same batches
  trainer     frames/s of `python train.py --skip-gate` (metrics.jsonl) vs a bare loop on the same
              model, batches and threads: collated batches in memory, plain forward / CTC /
              backward / AdamW, no diagnostics
  compat      wall time of `pytest -m "compat or smoke" tests/compat` serially and with -n 2 on the
              demo corpus, and of `python -m harness check` from outside the repository against
              the serial run; harness.gate.run_gate cold vs its cached re-run
  memory      peak RSS of harness.scan.scan_corpus, data.dataset.compute_train_stats and of
              iterating the training dataset, on synthetic corpora of N and 10N samples
  disk        bytes a frame on disk: [T, 1629] float32 and float16 vs [T, 6516] float32
  use         the trained-model commands, default-size model (untrained weights: timing only):
              model.recognize real-time factor on a 30 fps video (extraction and model apart),
              model.evaluate frames/s vs a bare forward pass, ONNX Runtime vs PyTorch latency
              for one sentence (model.export's ONNX file) and its parity
  guard       seconds a step of a bare training loop (small conv + BiLSTM CTC model) vs the same
              loop checking every step with harness.guard (g.step and g.watch) on healthy steps
  against     (--against REV) today's tree vs an earlier revision of it, the same commands side by
              side: trainer frames/s, `python -m harness check` seconds on the examples and the
              incident-sized user project, the compat data pass; the test command with
              --against-tests (benchmarks/against.py)
  scale       (--scale FRAMES) wall time and peak memory of the streaming compat data pass
              (scan_corpus with 2 workers + clean features + CTC feasibility + labels)

Every measurement that needs its own memory figures or a fresh interpreter runs as a child
`python benchmarks/bench.py --child JSON`, which prints one `BENCH_CHILD {...}` line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.children import child_main  # noqa: E402
from benchmarks.measure import GOALS, load_average  # noqa: E402
from benchmarks.sections import RUNNERS, run_section, section_scale  # noqa: E402
from data.corpus import atomic_write_text  # noqa: E402

SECTIONS = tuple(RUNNERS)


def format_table(results: list, header: str = "") -> str:
    cols = ("section", "measure", "ratio", "A", "B", "goal", "met", "load", "note")
    lines = []
    body = []
    for res in results:
        load = f"{res.load[0]:.1f}->{res.load[1]:.1f}" if res.load else ""
        if res.skipped:
            body.append((res.name, "(skipped)", "", "", "", "", "", load, res.skipped))
        for r in res.rows:
            met = "" if r.met is None else ("yes" if r.met else "NO")
            body.append((r.section, r.label, f"{r.value:.3f}" if abs(r.value) < 1e4 else f"{r.value:.3g}", r.a, r.b, r.goal, met, load, r.note))
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    if header:
        lines.append(header)
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)).rstrip() for b in body]
    return "\n".join(lines)


def to_json(results: list, meta: dict) -> dict:
    return {
        **meta,
        "goals": {k: f"{op} {v:g}" for k, (op, v) in GOALS.items()},
        "rows": [asdict(r) for res in results for r in res.rows],
        "sections": {res.name: {"figures": res.figures, "load_average": list(res.load), "seconds": res.seconds, "skipped": res.skipped} for res in results},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/bench.py", description=__doc__.split("\n\n")[0],
                                epilog="sections: " + ", ".join(SECTIONS))
    p.add_argument("--quick", action="store_true", help="the CI budget (~2-3 min on 2 cores): small corpus and model, one round")
    p.add_argument("--json", type=Path, help="also write every figure as JSON to this path")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    p.add_argument("--rounds", type=int, help="alternating A/B rounds, best kept (default 1 with --quick, else 2)")
    p.add_argument("--scale", type=int, metavar="FRAMES", help="run the streaming compat data pass on a synthetic corpus of FRAMES frames")
    p.add_argument("--scale-dtype", choices=("float16", "float32"), default="float16", help="dtype of the --scale corpus files")
    p.add_argument("--trainer-workers", type=int, default=0, help="DataLoader num_workers of the trainer comparison (train.py's default is 0)")
    p.add_argument("--trainer-threads", type=int, help="torch threads of both sides of the trainer comparison (default: train.py's, the CPU count)")
    p.add_argument("--against", metavar="REV", help="the against section: compare today's tree with this revision (a commit, tag or branch)")
    p.add_argument("--against-data", type=Path, metavar="CORPUS", help="the against section's trainer rows: this corpus too (e.g. real sentences)")
    p.add_argument("--against-tests", action="store_true", help="the against section times the test command too (minutes a run)")
    p.add_argument("--tmp", type=Path, help="directory for the temporary corpora (default: the system temp dir); removed afterwards")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child_main(args.child)
    if args.rounds is not None and args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    rounds = args.rounds or (1 if args.quick else 2)
    if args.scale is not None and args.scale < 1:
        p.error(f"--scale must be a positive number of frames, got {args.scale}")
    names = list(args.only or ([] if args.scale else SECTIONS))
    if args.tmp:
        args.tmp.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="cslr_bench_", dir=args.tmp))
    load_start, t_start = load_average(), time.perf_counter()
    results = []
    try:
        for name in names:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            kwargs = {"num_workers": args.trainer_workers, "threads": args.trainer_threads} if name == "trainer" else {}
            if name == "against":
                kwargs = {"rev": args.against, "tests": args.against_tests, "data_dir": args.against_data}
            results.append(run_section(name, RUNNERS[name], tmp, args.quick, rounds, **kwargs))
        if args.scale:
            print(f"[bench] scale {args.scale:,} frames ...", file=sys.stderr, flush=True)
            results.append(run_section("scale", section_scale, tmp, args.scale, dtype=args.scale_dtype))
    finally:
        if args.keep:
            print(f"[bench] kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    meta = {
        "quick": args.quick, "rounds": rounds, "cpu_count": os.cpu_count(), "load_average": [load_start, load_average()],
        "seconds": round(time.perf_counter() - t_start, 1), "python": sys.version.split()[0],
    }
    header = (f"benchmarks/bench.py{' --quick' if args.quick else ''}: {meta['cpu_count']} CPUs, best of {rounds} alternating round(s), "
              f"1-min load average {load_start:.1f} -> {meta['load_average'][1]:.1f}, {meta['seconds']:.0f} s")
    print(format_table(results, header))
    if args.json:
        atomic_write_text(args.json, json.dumps(to_json(results, meta), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
