"""What a model was trained on, as a small JSON document that travels with it (a checkpoint's
"data_profile"), so that new data can be compared with it later (data/drift.py).

A profile is made of per-sample measurements (SampleMeasures: frames, the share of each landmark
block missing, its motion, where the signer stands, the largest |x|, |y| and |z|). They are taken
here from raw landmarks (measure_sample: the model commands' path, no harness), or by the
harness' corpus scan (harness/scan.py: FileScan carries the same attributes), and summed up by
profile_of. Per-sample distributions are kept as sorted values capped at MAX_VALUES (evenly
spaced quantiles beyond), enough for a PSI over the reference's quantile bins, plus 5/25/50/75/95
quantiles for people.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.layout import COORDS, LANDMARK_BLOCKS, LAYOUT, RAW_DIM

VERSION = 1
MAX_VALUES = 500
QUANTILES = (5, 25, 50, 75, 95)
HANDS = ("left_hand", "right_hand")
BLOCKS = LANDMARK_BLOCKS
# A hand leads a sample when it moves at least this many times as much as the other (or alone).
# The harness' threshold shift_hand_lead has the same default; a profile records the value it used.
HAND_LEAD = 1.5
# x/y (image-normalised) and z beyond these count as out of range (the harness' max_abs_coordinate
# and max_abs_z defaults, the limits of its corpus scan)
MAX_ABS_COORDINATE = 4.0
MAX_ABS_Z = 10.0


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


# ----------------------------------------------------------------------------- one sample


@dataclass
class SampleMeasures:
    """What a profile needs of one sample (harness.scan.FileScan holds the same attributes)."""

    id: str
    frames: int = 0
    missing: dict = field(default_factory=dict)  # block -> share of (frame, landmark) not detected
    motion: dict = field(default_factory=dict)  # block -> mean |x/y step| of its landmarks between consecutive frames where seen
    center: tuple | None = None  # median (x, y) of the pose landmarks seen
    max_abs: float = 0.0  # largest present |x|, |y|
    pixel_fraction: float = 0.0  # share of present x/y beyond max_abs_coordinate
    z_max_abs: float = 0.0
    z_fraction: float = 0.0  # share of present z beyond max_abs_z
    error: str = ""


def block_motion(points: np.ndarray) -> float:
    """Mean |x/y step| between consecutive frames of [T, N, 3] landmarks where both frames have
    the landmark; 0 when no landmark is seen in two consecutive frames."""
    step = np.abs(np.diff(points[:, :, :2], axis=0))  # NaN where either frame lacks the landmark
    return float(np.nanmean(step)) if np.isfinite(step).any() else 0.0


def measure_sample(raw, sample_id: str = "", max_abs_coordinate: float = MAX_ABS_COORDINATE, max_abs_z: float = MAX_ABS_Z) -> SampleMeasures:
    """The measurements of one sample's landmarks: [T, 1629] raw (NaN where not detected) or
    [T, 6516] features (their raw block), float32 or float16."""
    data = np.asarray(raw, dtype=np.float32)
    if data.ndim != 2 or data.shape[1] < RAW_DIM:
        return SampleMeasures(sample_id, error=f"shape {data.shape}, expected [T, {RAW_DIM}] landmarks")
    m = SampleMeasures(sample_id, frames=int(data.shape[0]))
    points = data[:, :RAW_DIM].reshape(m.frames, -1, COORDS)
    undetected = np.isnan(points).all(axis=2)
    for name, block, _ in LAYOUT.landmark_blocks:
        first, last = block.start // COORDS, block.stop // COORDS
        m.missing[name] = float(undetected[:, first:last].mean())
        m.motion[name] = block_motion(points[:, first:last])
    body = points[:, LAYOUT.pose.start // COORDS : LAYOUT.pose.stop // COORDS, :2].reshape(-1, 2)
    body = body[np.isfinite(body).all(axis=1)]
    m.center = (float(np.median(body[:, 0])), float(np.median(body[:, 1]))) if len(body) else None
    for axes, limit in (((0, 1), max_abs_coordinate), ((2,), max_abs_z)):
        size = np.abs(points[:, :, list(axes)])
        seen = size[np.isfinite(size)]
        if not seen.size:
            continue
        peak, beyond = float(seen.max()), float((seen > limit).mean())
        if axes == (2,):
            m.z_max_abs, m.z_fraction = peak, beyond
        else:
            m.max_abs, m.pixel_fraction = peak, beyond
    return m


def leading_hand(left_motion: float, right_motion: float, hand_lead: float = HAND_LEAD) -> str | None:
    """"left_hand" or "right_hand" when that hand leads a sample (moves `hand_lead` x as much as the
    other, or alone), None when neither does or no hand moves. Motions as SampleMeasures.motion."""
    a, b = float(left_motion or 0.0), float(right_motion or 0.0)
    if a + b <= 0 or max(a, b) < hand_lead * min(a, b):
        return None
    return "right_hand" if b > a else "left_hand"


def sample_leading_hand(raw, hand_lead: float = HAND_LEAD) -> str | None:
    """leading_hand of one sample's landmarks ([T, 1629] raw or [T, 6516] features), from the hand
    motion measure_sample takes."""
    data = np.asarray(raw, dtype=np.float32)
    points = data[:, :RAW_DIM].reshape(data.shape[0], -1, COORDS)
    left, right = (block_motion(points[:, b.start // COORDS : b.stop // COORDS]) for b in (LAYOUT.left_hand, LAYOUT.right_hand))
    return leading_hand(left, right, hand_lead)


# ----------------------------------------------------------------------------- a set of samples


def profile_of(samples, fps_by_id: dict, split: str = "all", hand_lead: float = HAND_LEAD) -> dict:
    """The profile of a set of samples: SampleMeasures (or FileScan) without error or with frames;
    `fps_by_id` gives each sample's frame rate (a sample without one counts as unknown)."""
    files = [f for f in samples if not f.error and f.frames]
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
    led = [(a, b) for a, b in moving if leading_hand(a, b, hand_lead)]
    known = [x for x in (fps_by_id.get(f.id) for f in files) if x]
    centers = [f.center for f in files if f.center is not None]
    return {
        "version": VERSION,
        "split": split,
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


def profile_records(corpus, records, split: str = "all", hand_lead: float = HAND_LEAD) -> dict:
    """The profile of some records of a data.corpus.Corpus, one file at a time (a file that does
    not load is left out, as the harness' scan leaves out a file with an error)."""
    from data.corpus import CorpusError, load_features

    measured = []
    for rec in records:
        try:
            raw = load_features(corpus.file(rec))
        except CorpusError as exc:
            measured.append(SampleMeasures(rec.id, error=str(exc)))
            continue
        measured.append(measure_sample(raw, rec.id))
    return profile_of(measured, {r.id: r.fps for r in records}, split, hand_lead)


def profile_corpus(corpus_dir, split: str | None = None, hand_lead: float = HAND_LEAD) -> dict:
    """The profile of a corpus directory in this project's format: one split, or all (None)."""
    from data.corpus import Corpus

    corpus = Corpus(corpus_dir)
    records = [r for r in corpus.records if split is None or r.split == split]
    return profile_records(corpus, records, split or "all", hand_lead)


def profile_sample(raw, fps: float | None = None, hand_lead: float = HAND_LEAD, name: str = "input") -> dict:
    """The profile of one sample (a recognize input): its frame rate, if known, as its fps."""
    return profile_of([measure_sample(raw, name)], {name: fps}, "input", hand_lead)


# ----------------------------------------------------------------------------- what a dataset yields

# A user's dataset yields its own features, after its own processing (imputed, normalized, of
# any width): landmark measures (presence, which hand leads, position) do not read there. Its
# profile ("kind": "dataset") holds what any features show: sample lengths, the width, each
# column's mean and std over the split's frames (finite values), and the share of values not
# finite. data/drift.py compares two such profiles.
DATASET_KIND = "dataset"
# items a dataset profile reads at most, evenly spread over the split (each is a __getitem__ of
# the user's dataset: loading and processing one sample)
DATASET_MAX_SAMPLES = 2000


def profile_dataset(dataset, split: str = "train", max_samples: int | None = DATASET_MAX_SAMPLES) -> dict:
    """The profile of what `dataset` yields: dataset[i].features ([T, F] array or tensor; a
    model.components.ExternalDataset, or any dataset whose items have .features), at most
    `max_samples` items evenly spread over the split (None: all). Per-column moments are taken
    in float64 over the finite values."""
    n = len(dataset)
    picks = range(n) if max_samples is None or max_samples >= n else np.linspace(0, n - 1, max_samples).round().astype(int)
    lengths, width = [], None
    total = total_sq = counts = None
    nonfinite = values_seen = 0
    for i in picks:
        x = dataset[int(i)].features
        x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
        if x.ndim != 2 or not x.shape[0]:
            continue
        if width is None:
            width = x.shape[1]
            total, total_sq, counts = np.zeros(width), np.zeros(width), np.zeros(width)
        elif x.shape[1] != width:
            raise ValueError(f"{split} item {int(i)}: features have F={x.shape[1]} per frame, other items {width}: every item needs the same width")
        finite = np.isfinite(x)
        nonfinite += int(x.size - finite.sum())
        values_seen += x.size
        x = np.where(finite, x, 0.0)
        total += x.sum(axis=0)
        total_sq += (x * x).sum(axis=0)
        counts += finite.sum(axis=0)
        lengths.append(x.shape[0])
    mean = np.divide(total, counts, out=np.zeros_like(total), where=counts > 0) if width else np.zeros(0)
    var = np.divide(total_sq, counts, out=np.zeros_like(total), where=counts > 0) - mean * mean if width else np.zeros(0)
    return {
        "version": VERSION,
        "kind": DATASET_KIND,
        "split": split,
        "samples": len(lengths),
        "frames": int(sum(lengths)),
        "width": width or 0,
        "length": distribution(lengths),
        "columns": {  # per feature column over the split's frames (finite values; 0 where none)
            "mean": [float(f"{v:.6g}") for v in mean],
            "std": [float(f"{v:.6g}") for v in np.sqrt(np.maximum(var, 0.0))],
        },
        "nonfinite": nonfinite / values_seen if values_seen else 0.0,
    }


# ----------------------------------------------------------------------------- reading one


def check_profile(prof, where: str) -> None:
    """ValueError naming `where` when `prof` is not a data profile of this VERSION."""
    if not isinstance(prof, dict) or "version" not in prof:
        raise ValueError(f"{where}: not a data profile (no 'version'); write one with harness.profile.profile_corpus")
    if prof["version"] != VERSION:
        raise ValueError(f"{where}: data profile version {prof['version']}, this version reads version {VERSION}; profile the training data again")


def load_profile(path) -> dict:
    """A profile JSON file (checked for its version)."""
    prof = json.loads(Path(path).read_text())
    check_profile(prof, str(path))
    return prof


def checkpoint_profile(path) -> dict | None:
    """The "data_profile" a train.py checkpoint carries (None when it holds none), read with
    torch.load(weights_only=True, mmap=True): the weights stay on disk. ValueError naming the
    file when it is not a readable checkpoint or its profile is not one."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one line
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("data_profile") is None:
        return None
    check_profile(ckpt["data_profile"], str(path))
    return ckpt["data_profile"]
