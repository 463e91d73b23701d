"""Drift: new data against the profile of what a model was trained on (harness/profile.py), named
before it costs accuracy, as a Finding. The comparison itself is data/drift.py's (pure: two
profiles and thresholds in, a Drift out; model.evaluate and model.recognize run it too): here
it becomes a Finding that warns (drift does not break a run, it costs accuracy), with a table of
the feature groups and, on request, one plot a drifted group (training vs new) for the HTML
report (harness/report.py: drift_section).
"""
from __future__ import annotations

import time

import numpy as np

from data.drift import SKIPPED, compare, drift_scores, psi, quantile_edges, values
from harness.findings import PASS, SKIP, WARN, Finding

__all__ = ["check_drift", "drift_plots", "drift_scores", "load_reference", "psi", "run_drift"]

ROWS_TABLE = "Drift by feature group"
SCORES_TABLE = "Drift scores (PSI over the reference's quantile bins; rates as new - reference, ratios new / reference)"


def check_drift(reference: dict, new: dict, thresholds: dict, plots: bool = False) -> Finding:
    """data.drift.compare in its corpus mode as a Finding: SKIP below drift_min_samples on either
    side, WARN naming each drift with its fix, else PASS. `plots`: one PNG a drifted group."""
    start = time.perf_counter()
    d = compare(reference, new, thresholds, mode="corpus")
    if d.status == SKIPPED:
        return Finding(check="drift", status=SKIP, summary=d.summary, values={"samples": d.samples}, seconds=time.perf_counter() - start)
    rows = [[r["group"], r["measure"], r["score"], r["threshold"], r["verdict"], r["finding"]] for r in d.rows]
    return Finding(
        check="drift",
        status=WARN if d.fired else PASS,
        summary=d.summary,
        hint=d.hint,
        values={"key": f"{len(d.fired)} drift(s)", "groups": d.groups, "scores": d.scores, "fired": d.fired,
                "samples": d.samples, "rows": d.rows},
        tables={ROWS_TABLE: {"columns": ["group", "measure", "score", "threshold", "verdict", "finding"], "rows": rows},
                SCORES_TABLE: {"columns": ["score", "value"], "rows": [[k, v] for k, v in d.scores.items()]}},
        plots=drift_plots(reference, new, d.fired) if plots else {},
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------- plots


def _overlay(ax, reference: list, new: list, xlabel: str, log: bool = False) -> None:
    """Training and new per-sample values as histograms on shared bins, each side's bars its share
    of its samples (so sides of any size compare, on a log axis too), the training side's
    quantile-bin edges (the bins the PSI counts in) as dotted lines."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(new, dtype=np.float64)
    both = np.concatenate([ref, cur])
    log = log and len(both) and both.min() > 0 and both.max() > 20 * both.min()  # a log axis only over a wide range
    if not len(both):
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        return
    lo, hi = both.min(), both.max()
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.geomspace(lo, hi, 31) if log else np.linspace(lo, hi, 31)
    if len(ref):
        ax.hist(ref, bins=bins, weights=np.full(len(ref), 1 / len(ref)), histtype="stepfilled", alpha=0.35, color="tab:blue", label=f"training ({len(ref)})")
        for edge in quantile_edges(ref):
            ax.axvline(edge, color="tab:blue", linestyle=":", linewidth=0.8)
    if len(cur):
        ax.hist(cur, bins=bins, weights=np.full(len(cur), 1 / len(cur)), histtype="step", linewidth=2, color="tab:red", label=f"new ({len(cur)})")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of samples")
    ax.legend(fontsize=7)


def _bars(ax, labels, reference: list, new: list, ylabel: str) -> None:
    """Training and new side by side, one pair of bars a label (None drawn as 0)."""
    x = np.arange(len(labels))
    ax.bar(x - 0.2, [v or 0 for v in reference], 0.4, color="tab:blue", alpha=0.6, label="training")
    ax.bar(x + 0.2, [v or 0 for v in new], 0.4, color="tab:red", alpha=0.8, label="new")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def drift_plots(reference: dict, new: dict, fired: list) -> dict:
    """One PNG a drifted group (title "<group>: <what>", the group first), training vs new."""
    from harness.plots import new_figure, png_bytes

    def figure(panels: int):
        fig, _ = new_figure((4.2 * panels, 3))  # the Agg figure, re-divided into panels
        fig.clear()
        return fig, np.atleast_1d(fig.subplots(1, panels))

    out = {}
    for group in dict.fromkeys(f["group"] for f in fired):
        if group == "presence":
            fig, (ax,) = figure(1)
            blocks = ("pose", "left_hand", "right_hand", "face")
            _bars(ax, [b.replace("_", " ") for b in blocks], [reference["presence"].get(b) for b in blocks],
                  [new["presence"].get(b) for b in blocks], "share of frames detected")
            ax.set_ylim(0, 1.05)
            out["presence: share of frames each block is detected, training vs new"] = png_bytes(fig)
        elif group == "lead":
            fig, (ax,) = figure(1)
            _bars(ax, ["right hand leads", "left hand leads"], [reference["lead"]["right"], reference["lead"]["left"]],
                  [new["lead"]["right"], new["lead"]["left"]], "share of the led samples")
            ax.set_ylim(0, 1.05)
            out["lead: which hand leads the samples, training vs new"] = png_bytes(fig)
        elif group == "fps":
            fig, (a0, a1, a2) = figure(3)
            _bars(a0, ["median fps"], [reference["fps"]["median"]], [new["fps"]["median"]], "frames a second (declared)")
            _overlay(a1, values(reference, "length"), values(new, "length"), "frames a sample")
            _overlay(a2, values(reference, "speed", "hands"), values(new, "speed", "hands"), "hand speed (x/y step a frame)", log=True)
            out["fps: declared frame rate, sample length and hand speed, training vs new"] = png_bytes(fig)
        elif group == "z":
            fig, (ax,) = figure(1)
            _overlay(ax, values(reference, "z_scale"), values(new, "z_scale"), "per-sample max |z|", log=True)
            out["z: per-sample max |z|, training vs new"] = png_bytes(fig)
        elif group == "position":
            fig, (ax, ay) = figure(2)
            _overlay(ax, values(reference, "position", "x"), values(new, "position", "x"), "body centre x (image width)")
            _overlay(ay, values(reference, "position", "y"), values(new, "position", "y"), "body centre y (image height)")
            out["position: where the signer stands, training vs new"] = png_bytes(fig)
    return out


# ----------------------------------------------------------------------------- the CLI


def load_reference(ref) -> dict:
    """A profile JSON file, a corpus directory (its train split), or a checkpoint .pt with a
    "data_profile" entry. ValueError (one line) when it is none of these."""
    from pathlib import Path

    from data.profile import checkpoint_profile
    from harness.profile import load_profile, profile_corpus

    ref = Path(ref)
    if ref.is_dir():
        if not (ref / "manifest.csv").is_file():
            raise ValueError(f"--reference {ref}: a directory without manifest.csv, not a corpus")
        return profile_corpus(ref, "train")
    if not ref.is_file():
        raise ValueError(f"--reference {ref}: no such file or directory")
    if ref.suffix in (".pt", ".pth", ".ckpt"):
        try:
            prof = checkpoint_profile(ref)
        except ValueError as exc:
            raise ValueError(f"--reference {exc}") from None
        if prof is None:
            raise ValueError(f"--reference {ref}: the checkpoint holds no \"data_profile\" (saved before profiles were recorded); pass the training corpus directory or a profile JSON instead")
        return prof
    try:
        return load_profile(ref)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"--reference {ref}: {exc}" if str(ref) not in str(exc) else str(exc)) from None


def config_profile(path, split: str | None = None) -> tuple[dict, str]:
    """The profile of a training configuration's data, one split or all: its corpus as a corpus,
    a user's dataset by what it yields (data/profile.py: profile_dataset); and what it is, for messages."""
    from data.profile import profile_dataset
    from harness.profile import profile_corpus
    from model.config import load_config
    from model.training import build_data

    data = build_data(load_config(path))
    if data.corpus is not None:
        return profile_corpus(data.corpus.dir, split), str(data.corpus.dir)
    if split is not None and split not in data.splits:
        raise ValueError(f"--split {split}: the dataset of {path} has no {split} split (it has {', '.join(data.splits)})")
    names = [split] if split else list(data.splits)
    return profile_dataset(_Chain([data.splits[n] for n in names]), split or "all"), data.source


class _Chain:
    """Several datasets read as one (the splits of a user's dataset)."""

    def __init__(self, parts):
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, i: int):
        for part in self.parts:
            if i < len(part):
                return part[i]
            i -= len(part)
        raise IndexError(i)


def run_drift(argv) -> int:
    """`python -m harness drift --reference REF (--data DIR | --config FILE) [--split S] [--json OUT] [--html OUT]`: 0 no drift,
    1 drift named, 2 bad arguments."""
    import argparse
    import json
    import sys
    from pathlib import Path

    from harness.profile import profile_corpus
    from harness.thresholds import DEFAULTS

    class OneLine(argparse.ArgumentParser):
        def error(self, message):  # bad arguments: one line, exit 2
            print(f"error: python -m harness drift: {message}", file=sys.stderr)
            raise SystemExit(2)

    ap = OneLine(prog="python -m harness drift", description="new data against what a model was trained on; exit 1 when a drift is named")
    ap.add_argument("--reference", required=True, type=Path, help="profile JSON, corpus directory (its train split) or checkpoint .pt with a data_profile")
    data = ap.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", type=Path, help="corpus directory of the new data")
    data.add_argument("--config", type=Path, help="training configuration (JSON/TOML) whose data is the new data: its corpus, or what its dataset yields")
    ap.add_argument("--split", choices=("train", "dev", "test"), help="compare only this split of --data (default: all)")
    ap.add_argument("--json", type=Path, help="write the finding as JSON here")
    ap.add_argument("--html", type=Path, help="write an HTML page here: the feature groups' scores and a plot a drifted group")
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    try:
        for option, out in (("--json", args.json), ("--html", args.html)):
            if out is not None and not out.parent.is_dir():
                raise ValueError(f"{option} {out}: no directory {out.parent} to write it in; create it or pick another path")
        reference = load_reference(args.reference)
        if args.config is not None:
            new, source = config_profile(args.config, args.split)
        elif not (args.data / "manifest.csv").is_file():
            raise ValueError(f"--data {args.data}: no manifest.csv there, not a corpus directory")
        else:
            new, source = profile_corpus(args.data, args.split), str(args.data)
    except Exception as exc:  # noqa: BLE001 - bad arguments or data: one line, exit 2
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    finding = check_drift(reference, new, DEFAULTS, plots=args.html is not None)
    print(f"[{finding.status.upper()}] drift: {new['samples']} new samples ({source}{', ' + args.split if args.split else ''}) vs {reference['samples']} in training")
    for f in finding.values.get("fired", []):
        print(f"  - {f['text']}: {f['fix']}  [{f['group']}, score {f['score']}]")
    if not finding.values.get("fired"):
        print(f"  {finding.summary}")
    if args.json:
        from data.corpus import atomic_write_text

        atomic_write_text(args.json, json.dumps(finding.to_json(), indent=1))
    if args.html:
        from data.corpus import atomic_write_text
        from harness.report import drift_page

        where = source + (f" ({args.split} split)" if args.split else "")
        atomic_write_text(args.html, drift_page(finding, reference=str(args.reference), data=where))
        print(f"  report: {args.html}")
    return 1 if finding.status == WARN else 0
