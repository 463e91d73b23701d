"""What a model was trained on, as a small JSON document that travels with it (a checkpoint's
"data_profile"), so that new data can be compared with it later (harness/checks/drift.py).

Computed from the corpus scan the compat checks already make (harness/scan.py: one FileScan a
file): no second pass over the files. Per-sample distributions are kept as sorted values capped
at MAX_VALUES (evenly spaced quantiles beyond), enough for a PSI over the reference's quantile
bins, plus 5/25/50/75/95 quantiles for people.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.scan import BLOCKS
from harness.thresholds import DEFAULTS

VERSION = 1
MAX_VALUES = 500
QUANTILES = (5, 25, 50, 75, 95)
HANDS = ("left_hand", "right_hand")


def distribution(values) -> dict:
    """{"n", "quantiles": {"5": .., ..}, "values": sorted (at most MAX_VALUES)} of finite values."""
    v = np.sort(np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64))
    if not len(v):
        return {"n": 0, "quantiles": {}, "values": []}
    kept = v if len(v) <= MAX_VALUES else np.quantile(v, np.linspace(0, 1, MAX_VALUES))
    return {
        "n": int(len(v)),
        "quantiles": {str(q): float(np.percentile(v, q)) for q in QUANTILES},
        "values": [float(x) for x in kept],
    }


def profile_from_scan(scan, records, split: str | None = "train", hand_lead: float = DEFAULTS["shift_hand_lead"]) -> dict:
    """The profile of one split of a scan (split=None: every file). `records` (data.corpus
    SampleRecord, any order) give the fps; a record without fps counts as unknown."""
    files = [f for f in scan.files if (split is None or f.split == split) and not f.error and f.frames]
    fps_by_id = {r.id: r.fps for r in records}
    frames = np.array([f.frames for f in files], dtype=np.float64)
    total = float(frames.sum())

    def frame_share(fn) -> float | None:
        return float(sum(fn(f) * f.frames for f in files) / total) if total else None

    presence = {b: frame_share(lambda f, b=b: 1.0 - f.missing.get(b, 1.0)) for b in BLOCKS}
    # the same among the samples that show the block at all: a per-frame dropout moves it, which
    # samples happen to use a hand (the population, the glosses) does not
    seen = {b: [f for f in files if f.missing.get(b, 1.0) < 1.0] for b in BLOCKS}
    when_seen = {b: (float(sum((1.0 - f.missing[b]) * f.frames for f in fs) / sum(f.frames for f in fs)) if fs else None) for b, fs in seen.items()}
    both = [(f.motion.get("left_hand", 0.0), f.motion.get("right_hand", 0.0)) for f in files]
    moving = [(a, b) for a, b in both if a + b > 0]
    led = [(a, b) for a, b in moving if max(a, b) >= hand_lead * min(a, b)]
    fps = [fps_by_id.get(f.id) for f in files]
    known = [x for x in fps if x]
    centers = [f.center for f in files if f.center is not None]
    return {
        "version": VERSION,
        "split": split or "all",
        "samples": len(files),
        "frames": int(total),
        "presence": presence,  # block -> share of frames (x landmarks) where it is detected
        "presence_when_seen": when_seen,
        "samples_showing": {b: len(fs) for b, fs in seen.items()},
        "lead": {  # among the samples one hand leads (moves `hand_lead` x as much as the other, or alone)
            "led_samples": len(led),
            "right": float(np.mean([b > a for a, b in led])) if led else None,
            "left": float(np.mean([a > b for a, b in led])) if led else None,
            "hand_lead": hand_lead,
        },
        "fps": {"known": len(known), "median": float(np.median(known)) if known else None},
        "length": distribution(frames),
        "speed": {  # mean x/y step a frame of a block's landmarks, per sample where it moves
            **{b: distribution([f.motion.get(b) for f in files if f.motion.get(b)]) for b in BLOCKS},
            "hands": distribution([max(a, b) for a, b in moving]),
        },
        "position": {"x": distribution([c[0] for c in centers]), "y": distribution([c[1] for c in centers])},
        "z_scale": distribution([f.z_max_abs for f in files if f.z_max_abs]),  # per-sample max |z|
        "xy_range": distribution([f.max_abs for f in files if f.max_abs]),  # per-sample max |x|, |y|
        "beyond_range": {  # share of present values beyond max_abs_coordinate / max_abs_z (scan limits)
            "xy": frame_share(lambda f: f.pixel_fraction),
            "z": frame_share(lambda f: f.z_fraction),
        },
    }


def profile_corpus(corpus_dir, split: str | None = None, workers: int = 0) -> dict:
    """The profile of a corpus directory in this project's format: one split, or all (None)."""
    from data.corpus import Corpus
    from harness.scan import scan_corpus

    corpus = Corpus(corpus_dir)
    if split is not None:
        corpus.records = [r for r in corpus.records if r.split == split]
    return profile_from_scan(scan_corpus(corpus, workers=workers), corpus.records, split)


def load_profile(path) -> dict:
    """A profile JSON file (checked for its version)."""
    prof = json.loads(Path(path).read_text())
    check_profile(prof, str(path))
    return prof


def check_profile(prof, where: str) -> None:
    if not isinstance(prof, dict) or "version" not in prof:
        raise ValueError(f"{where}: not a data profile (no 'version'); write one with harness.profile.profile_corpus")
    if prof["version"] != VERSION:
        raise ValueError(f"{where}: data profile version {prof['version']}, this harness reads version {VERSION}")
