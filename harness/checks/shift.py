"""The shift between splits, named before training: who signs in dev and test, and how, against
train. Pure function: a corpus scan and thresholds in, a Finding out (it warns, never fails: a
shift is a property of the data, not a bug, but it is where a model that fits train loses dev).
"""
from __future__ import annotations

import time

import numpy as np

from data.profile import leading_hand
from harness.findings import PASS, WARN, Finding

from harness.scan import BLOCKS as PARTS
from harness.thresholds import DEFAULTS


# What each kind of shift has cost on real data, from `python benchmarks/signers.py --stages folds
# report`: 5 signer folds of real Kaggle sentences (21 signers, each tested once; 500/80/80
# sentences a fold), the default recipe at 10 epochs; mean per-signer test WER of the signers for
# whom data/drift.py names that shift (their test sentences against the fold's train split)
# against the others'. Appended to the hint where the warning fires.
MEASURED_COST = {
    "presence": "measured on real signer folds: one hand seen far more or less than in train (13 of 21 "
                "signers, mostly of the other dominant hand) cost nothing under the default mirror "
                "(22% test WER against 48% for the others); hands detected in 0.4-0.55x the training "
                "share of frames (4 of 21) did: 53% against 27%",
    "handedness": "measured on real signer folds with mirror augmentation (the default): the 7 of 21 "
                  "signers of the other dominant hand had 19% test WER against 38% for the others; on "
                  "one split without it, 36% against 16% with it (README, Augmentation and unseen signers)",
    "speed": "measured on real signer folds: the 2 of 21 signers at another frame rate had 63% and 29% "
             "test WER against 31% for the others (too few to say)",
}


def split_profile(files, lead: float = DEFAULTS["shift_hand_lead"], min_led: int = DEFAULTS["shift_min_led"]) -> dict:
    """Per split: presence rate of each part (share of frames x landmarks seen), the share of
    the samples led by one hand that the right hand leads (NaN below `min_led` such samples), median hand speed (x/y step a frame),
    median length (frames), median signer position (pose centre x, y)."""
    ok = [f for f in files if not f.error and f.frames]
    if not ok:
        return {}
    hands = [(f.motion.get("left_hand", 0.0), f.motion.get("right_hand", 0.0)) for f in ok]
    moving = [(left, right) for left, right in hands if left + right > 0]
    # a sample is led by a hand that moves at least `lead` times as much as the other (or alone)
    led = [leading_hand(left, right, lead) for left, right in moving]
    led = [hand for hand in led if hand is not None]
    centers = np.array([f.center for f in ok if f.center is not None]) if any(f.center for f in ok) else np.zeros((0, 2))
    return {
        "samples": len(ok),
        "presence": {p: float(np.mean([1 - f.missing.get(p, 1.0) for f in ok])) for p in PARTS},
        "right_dominant": float(np.mean([hand == "right_hand" for hand in led])) if len(led) >= min_led else float("nan"),
        "hand_speed": float(np.median([max(left, right) for left, right in moving])) if moving else 0.0,
        "frames": float(np.median([f.frames for f in ok])),
        "center_x": float(np.median(centers[:, 0])) if len(centers) else float("nan"),
        "center_y": float(np.median(centers[:, 1])) if len(centers) else float("nan"),
    }


def check_shift(scan, thresholds: dict) -> Finding:
    """Dev and test against train: presence of each hand, handedness, hand speed, length and the
    signer's place in the frame; a difference beyond its threshold warns with the numbers and
    what to do about it."""
    start = time.perf_counter()
    prof = {s: split_profile(scan.by_split(s), thresholds["shift_hand_lead"], thresholds["shift_min_led"]) for s in ("train", "dev", "test")}
    prof = {s: p for s, p in prof.items() if p}
    train = prof.get("train")
    warns, hints = [], []
    if train:
        for split in ("dev", "test"):
            other = prof.get(split)
            if not other:
                continue
            for part in ("left_hand", "right_hand"):
                a, b = train["presence"][part], other["presence"][part]
                if abs(a - b) > thresholds["shift_presence"]:
                    warns.append(f"{split} sees the {part.replace('_', ' ')} in {b:.0%} of frames, train in {a:.0%}")
                    hints.append(f"more signers (and recordings) in train; hand dropout augmentation ({MEASURED_COST['presence']})")
            a, b = train["right_dominant"], other["right_dominant"]
            if np.isfinite(a) and np.isfinite(b) and abs(a - b) > thresholds["shift_handedness"]:
                warns.append(f"the right hand moves more in {b:.0%} of {split} samples, in {a:.0%} of train: other dominant hands")
                hints.append(f"mirror augmentation (left/right swapped), or signers of both dominant hands in train ({MEASURED_COST['handedness']})")
            for key, what in (("hand_speed", "hands move"), ("frames", "samples last")):
                a, b = train[key], other[key]
                if a > 0 and b > 0 and not 1 / thresholds["shift_ratio"] <= b / a <= thresholds["shift_ratio"]:
                    warns.append(f"{split}: {what} {b / a:.2f}x as {'fast' if key == 'hand_speed' else 'long'} as in train ({b:.3g} vs {a:.3g})")
                    hints.append(f"time resampling augmentation (speed) ({MEASURED_COST['speed']})")
            shift = np.hypot(other["center_x"] - train["center_x"], other["center_y"] - train["center_y"])
            if np.isfinite(shift) and shift > thresholds["shift_position"]:
                warns.append(f"{split}: the signer stands {shift:.2f} of the frame away from where train's do")
                hints.append("body-centred normalization (normalize = \"body\") and rotation / scale augmentation")
    rows = [[s, p["samples"], *(f"{p['presence'][q]:.0%}" for q in PARTS), f"{p['right_dominant']:.0%}", f"{p['hand_speed']:.4f}",
             int(p["frames"]), f"{p['center_x']:.2f}, {p['center_y']:.2f}"] for s, p in prof.items()]
    return Finding(
        check="shift",
        status=WARN if warns else PASS,
        summary="; ".join(warns) or (f"dev/test look like train ({', '.join(prof)} compared)" if len(prof) > 1 else "only one split: nothing to compare"),
        hint="; ".join(dict.fromkeys(hints)),
        values={"key": f"{len(warns)} shift(s)", "profiles": prof},
        tables={"Splits: presence, handedness, speed, length, position": {
            "columns": ["split", "samples", *(f"{q} seen" for q in PARTS), "right hand leads", "hand speed", "median frames", "centre x, y"],
            "rows": rows,
        }},
        seconds=time.perf_counter() - start,
    )
