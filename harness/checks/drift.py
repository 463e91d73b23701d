"""Drift: new data against the profile of what a model was trained on (harness/profile.py), named
before it costs accuracy. Pure function: two profiles and thresholds in, a Finding out.

Per feature group a score: PSI (population stability index over the reference's quantile bins)
for distributions (length, hand speed, signer position, z scale), plain differences / ratios for
rates (hand presence, which hand leads, fps). A named drift fires when its score passes its
threshold (harness/thresholds.py, drift_*: set above what random re-splits of the same signers
reach on the real Kaggle clips); the Finding warns (drift does not break a run, it costs
accuracy), each fired drift with what to do.
"""
from __future__ import annotations

import time

import numpy as np

from harness.findings import PASS, SKIP, WARN, Finding

HANDS = ("left_hand", "right_hand")


def psi(reference, new, bins: int | None = None) -> float:
    """Population stability index of `new` over the reference's quantile bins: sum (q - p) ln(q / p),
    p, q the bins' shares (add-half smoothed, so an empty bin stays finite). NaN when either side
    is empty."""
    ref, cur = np.asarray(reference, dtype=np.float64), np.asarray(new, dtype=np.float64)
    if not len(ref) or not len(cur):
        return float("nan")
    bins = bins or int(np.clip(len(ref) // 6, 3, 10))
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    k = len(edges) + 1
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=k) + 0.5
    q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=k) + 0.5
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def _values(prof, *keys):
    d = prof
    for k in keys:
        d = (d or {}).get(k)
    return (d or {}).get("values", [])


def _median(prof, *keys):
    v = _values(prof, *keys)
    return float(np.median(v)) if len(v) else float("nan")


def drift_scores(reference: dict, new: dict) -> dict:
    """Every score, by group (JSON-serialisable; NaN -> None)."""
    s = {}
    ra = [reference["presence"].get(h) for h in HANDS]
    rb = [new["presence"].get(h) for h in HANDS]
    s["presence.hands.ratio"] = sum(rb) / sum(ra) if None not in ra + rb and sum(ra) > 0 else None
    for hand in HANDS:
        a, b = reference["presence"].get(hand), new["presence"].get(hand)
        s[f"presence.{hand}"] = None if a is None or b is None else b - a
        # presence if the new data's hands were swapped (a mirrored camera)
        b2 = new["presence"].get(HANDS[1 - HANDS.index(hand)])
        s[f"presence_swapped.{hand}"] = None if a is None or b2 is None else b2 - a
    a, b = reference["lead"]["right"], new["lead"]["right"]
    s["lead.right"] = None if a is None or b is None else b - a
    fa, fb = reference["fps"]["median"], new["fps"]["median"]
    s["fps.ratio"] = fb / fa if fa and fb else None
    s["length.ratio"] = _median(new, "length") / _median(reference, "length")
    s["length.psi"] = psi(_values(reference, "length"), _values(new, "length"))
    s["speed.ratio"] = _median(new, "speed", "hands") / _median(reference, "speed", "hands")
    s["speed.psi"] = psi(_values(reference, "speed", "hands"), _values(new, "speed", "hands"))
    for axis in ("x", "y"):
        s[f"position.{axis}.psi"] = psi(_values(reference, "position", axis), _values(new, "position", axis))
    # x of the new data mirrored (1 - x): where the signer would stand without the mirror
    s["position.x_mirrored.psi"] = psi(_values(reference, "position", "x"), [1 - v for v in _values(new, "position", "x")])
    s["position.psi"] = max(s["position.x.psi"], s["position.y.psi"])
    s["z.ratio"] = _median(new, "z_scale") / _median(reference, "z_scale")
    s["z.psi"] = psi(_values(reference, "z_scale"), _values(new, "z_scale"))
    s["xy_range.ratio"] = _median(new, "xy_range") / _median(reference, "xy_range")
    return {k: (None if v is None or not np.isfinite(v) else round(float(v), 4)) for k, v in s.items()}


def check_drift(reference: dict, new: dict, thresholds: dict) -> Finding:
    start = time.perf_counter()
    n_ref, n_new, least = reference.get("samples", 0), new.get("samples", 0), thresholds["drift_min_samples"]
    if n_ref < least or n_new < least:
        return Finding(check="drift", status=SKIP, summary=f"too few samples to compare: {n_new} new vs {n_ref} in training (need {least} each; threshold drift_min_samples)",
                       values={"samples": {"reference": n_ref, "new": n_new}}, seconds=time.perf_counter() - start)
    s = drift_scores(reference, new)
    fired = []

    def fire(group, score, text, fix):
        fired.append({"group": group, "score": score, "text": text, "fix": fix})

    # which hand leads: a mirrored camera swaps left and right
    mirrored = False
    a, b = reference["lead"]["right"], new["lead"]["right"]
    enough = min(reference["lead"]["led_samples"], new["lead"]["led_samples"]) >= thresholds["drift_min_led"]
    if enough and s["lead.right"] is not None and abs(s["lead.right"]) > thresholds["drift_handedness"]:
        swapped = all(v is not None and abs(v) <= thresholds["drift_presence"] for v in (s["presence_swapped.left_hand"], s["presence_swapped.right_hand"]))
        # a mirror turns a population with a dominant hand into one with the other dominant hand;
        # a mixed reference (Kaggle: ~50/50) changing its mix is another population
        dom = thresholds["drift_dominant_share"] - 0.5
        mirrored = (a - 0.5) * (b - 0.5) < 0 and min(abs(a - 0.5), abs(b - 0.5)) >= dom
        what = "left and right swapped: a mirrored camera?" if mirrored else "other dominant hands"
        fire("lead", s["lead.right"],
             f"{what} (the right hand leads in {b:.0%} of samples vs {a:.0%} in training" + (", and each hand is seen as often as the other one was)" if mirrored and swapped else ")"),
             "mirror the new data (data.augment.mirror) if the camera mirrors; else train with mirror augmentation or signers of both dominant hands")
    mirrored = mirrored and all(v is not None and abs(v) <= thresholds["drift_presence"] for v in (s["presence_swapped.left_hand"], s["presence_swapped.right_hand"]))

    # hand presence: both hands together (a detector losing hands), then each hand (a hand lost
    # entirely; a swapped pair is the mirror's, named above)
    h = s["presence.hands.ratio"]
    if h is not None and not thresholds["drift_presence_ratio"] <= h <= 1 / thresholds["drift_presence_ratio"]:
        ra, rb = (sum(p["presence"][x] for x in HANDS) / 2 for p in (reference, new))
        fire("presence", h, f"hands detected in {rb:.0%} of frames vs {ra:.0%} in training ({h:.2f}x)",
             "check the extraction (MediaPipe confidence, resolution, lighting, hands out of frame); train with hand dropout augmentation" if h < 1
             else "new data sees the hands far more often: check the extraction settings; more such recordings in training")
    elif not mirrored:
        for hand in HANDS:
            d = s[f"presence.{hand}"]
            if d is not None and abs(d) > thresholds["drift_presence"]:
                ra, rb = reference["presence"][hand], new["presence"][hand]
                fire("presence", d, f"{hand.replace('_', ' ')} detected in {rb:.0%} of frames vs {ra:.0%} in training",
                     "check the extraction (MediaPipe confidence, resolution, lighting, hands out of frame); train with hand dropout augmentation" if d < 0
                     else "new data sees the hand far more often: check the extraction settings; more such recordings in training")

    # frame rate: declared, or inferred (samples k x as long with ~1/k the motion a frame)
    r = thresholds["drift_fps_ratio"]
    fa, fb = reference["fps"]["median"], new["fps"]["median"]
    lr, sr = s["length.ratio"], s["speed.ratio"]
    # k x the frame rate: k x the frames, 1/k the motion a frame; their geometric mean estimates k
    # (steadier than either alone), and the total motion (lr * sr) stays about the same
    k = s["tempo"] = None if lr is None or sr is None or sr <= 0 else round(float(np.sqrt(lr / sr)), 4)
    t = thresholds["drift_tempo_ratio"]
    inferred = k is not None and (lr - 1) * (sr - 1) < 0 and not 1 / t <= k <= t and 0.5 <= lr * sr <= 2
    if s["fps.ratio"] is not None and not 1 / r <= s["fps.ratio"] <= r:
        fire("fps", s["fps.ratio"], f"fps {fb:g} vs {fa:g} in training", f"resample to {fa:g} fps (data.augment.resample)")
    elif inferred:
        rate = f" (fps ~{fa * k:g} vs {fa:g} in training)" if fa else ""
        fire("fps", k, f"samples {lr:.2f}x as long with {sr:.2f}x the motion a frame: another frame rate, ~{k:.2g}x the training one{rate}",
             f"resample to {fa:g} fps" if fa else f"resample by {1 / k:.2g} (the training frame rate), data.augment.resample")

    # z in other units
    z = s["z.ratio"]
    if z is not None and not 1 / thresholds["drift_z_ratio"] <= z <= thresholds["drift_z_ratio"]:
        fire("z", z, f"z {z:.3g}x the training scale: other units", "convert z to MediaPipe's units (relative depth, ~x scale) or drop z")

    # where the signers stand (the mirrored x is the mirror's, named above)
    pos = s["position.psi"] if not mirrored else max(s["position.x_mirrored.psi"], s["position.y.psi"])
    if pos is not None and pos > thresholds["drift_position_psi"]:
        dx = _median(new, "position", "x") - _median(reference, "position", "x")
        dy = _median(new, "position", "y") - _median(reference, "position", "y")
        fire("position", pos, f"signers stand elsewhere in the frame / another population (position PSI {pos:.2f}; median centre moved by {dx:+.2f}, {dy:+.2f})",
             "body-centred normalization (normalize = \"body\"), shift / scale augmentation, more signers in training")

    groups = {
        "presence_hands_ratio": s["presence.hands.ratio"],
        "presence_hand_diff": max((abs(s[f"presence.{h}"]) for h in HANDS if s[f"presence.{h}"] is not None), default=None),
        "lead": None if s["lead.right"] is None else abs(s["lead.right"]),
        "fps": s["fps.ratio"], "tempo": s.get("tempo"), "length_psi": s["length.psi"], "speed_psi": s["speed.psi"],
        "position_psi": s["position.psi"], "z_ratio": s["z.ratio"], "z_psi": s["z.psi"],
    }
    rows = [[k, v] for k, v in s.items()]
    return Finding(
        check="drift",
        status=WARN if fired else PASS,
        summary="; ".join(f["text"] for f in fired) or f"no drift: {n_new} new samples look like the {n_ref} of training (PSI and rates within thresholds)",
        hint="; ".join(dict.fromkeys(f["fix"] for f in fired)),
        values={"key": f"{len(fired)} drift(s)", "groups": groups, "scores": s, "fired": fired,
                "samples": {"reference": n_ref, "new": n_new}},
        tables={"Drift scores (PSI over the reference's quantile bins; rates as new - reference, ratios new / reference)": {"columns": ["score", "value"], "rows": rows}},
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------- the CLI


def load_reference(ref) -> dict:
    """A profile JSON file, a corpus directory (its train split), or a checkpoint .pt with a
    "data_profile" entry. ValueError (one line) when it is none of these."""
    from pathlib import Path

    from harness.profile import check_profile, load_profile, profile_corpus

    ref = Path(ref)
    if ref.is_dir():
        if not (ref / "manifest.csv").is_file():
            raise ValueError(f"--reference {ref}: a directory without manifest.csv, not a corpus")
        return profile_corpus(ref, "train")
    if not ref.is_file():
        raise ValueError(f"--reference {ref}: no such file or directory")
    if ref.suffix in (".pt", ".pth", ".ckpt"):
        import torch

        try:
            ckpt = torch.load(ref, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one line
            raise ValueError(f"--reference {ref}: not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        if not isinstance(ckpt, dict) or "data_profile" not in ckpt:
            raise ValueError(f"--reference {ref}: the checkpoint holds no \"data_profile\" (saved before profiles were recorded); pass the training corpus directory or a profile JSON instead")
        check_profile(ckpt["data_profile"], str(ref))
        return ckpt["data_profile"]
    try:
        return load_profile(ref)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"--reference {ref}: {exc}" if str(ref) not in str(exc) else str(exc)) from None


def run_drift(argv) -> int:
    """`python -m harness drift --reference REF --data DIR [--split S] [--json OUT]`: 0 no drift, 1 drift named, 2 bad arguments."""
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
    ap.add_argument("--data", required=True, type=Path, help="corpus directory of the new data")
    ap.add_argument("--split", choices=("train", "dev", "test"), help="compare only this split of --data (default: all)")
    ap.add_argument("--json", type=Path, help="write the finding as JSON here")
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    try:
        reference = load_reference(args.reference)
        if not (args.data / "manifest.csv").is_file():
            raise ValueError(f"--data {args.data}: no manifest.csv there, not a corpus directory")
        new = profile_corpus(args.data, args.split)
    except Exception as exc:  # noqa: BLE001 - bad arguments or data: one line, exit 2
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    finding = check_drift(reference, new, DEFAULTS)
    print(f"[{finding.status.upper()}] drift: {new['samples']} new samples ({args.data}{', ' + args.split if args.split else ''}) vs {reference['samples']} in training")
    for f in finding.values.get("fired", []):
        print(f"  - {f['text']}: {f['fix']}  [{f['group']}, score {f['score']}]")
    if not finding.values.get("fired"):
        print(f"  {finding.summary}")
    if args.json:
        from data.corpus import atomic_write_text

        atomic_write_text(args.json, json.dumps(finding.to_json(), indent=1))
    return 1 if finding.status == WARN else 0
