"""Run a trained checkpoint on new input: glosses, per-gloss frame spans, a score.

    python -m model.recognize CHECKPOINT INPUT... [--out FILE.json] [--model-complexity 1]

INPUT is a video file, a folder of frame images (natural order), a pose-format `.pose` file or
a corpus feature file `.npy` ([T, 1629] raw landmarks with NaN, or [T, 6516] features).
Videos and frame folders go through the extraction of `python -m data.extract`
(data.extract.extract_sample: a fresh MediaPipe Holistic a sample, video mode); `.pose` files
through `python -m data.convert pose`'s reader. The landmarks then take the dataset's own path
(the checkpoint's leading-hand canonicalisation, data.augment.lead_canonical, if it has one;
data.dataset.model_features: temporal block, imputation; data.normalize.Normalizer with the
checkpoint's method, statistics, std floor and clip; the checkpoint's modalities) and the
configured batch_transform, so the model sees what it saw in evaluation.

Before the model runs, each input is compared with what the model was trained on (the
checkpoint's data_profile, data/drift.py in its sample mode): what one sample can show, its
declared frame rate (a video's or .pose file's fps against training's), z in other units, no
hand detected in any frame, the other leading hand than a one-handed training population's. A
named drift is printed under the input's first line, one line with its fix, before the glosses,
and kept in the JSON as "drift"; the distribution groups (length, speed, position) need more
samples and are left out without a word (listed in the JSON's "drift"."not_judged").
--no-drift turns it off.

Decoding is greedy (the CTC best path). Each gloss's span is the run of output frames whose
argmax is that gloss, mapped back to input frames through the model's temporal stride s
(from model.output_lengths; 4 for the I3D teacher): output frame k covers input frames
[k*s, (k+1)*s). `end_frame` is exclusive, like the demo corpus' `segments` column; start_s /
end_s are seconds when the frame rate is known. `score` is log P(best path) (natural log, the
sum over output frames of the largest log-probability), `confidence` a gloss's highest
probability over its span.

JSON (--out): a list, one object a input:
    {"input", "kind", "frames", "fps", "glosses", "text", "segments": [{"gloss", "start_frame",
     "end_frame", "start_s", "end_s", "confidence"}], "score", "score_per_frame", "decoder",
     "stride", "extract_seconds", "model_seconds", "drift": {"status": "drift" | "none" | "skipped",
     "findings": [{"group", "score", "text", "fix"}], "not_judged": [...]}}
("drift" only when the checkpoint carries a data profile and --no-drift is not given.)
An input that cannot be read is {"input", "error"} there, an error line on stderr, and exit 2.
No live camera mode.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from data.augment import lead_canonical
from data.corpus import CorpusError, atomic_write_text, load_features
from data.dataset import Sample, collate, model_features
from data.layout import FEATURE_DIM, modality_columns
from data.normalize import Normalizer
from model.checkpoint import Trained, UsageError, load_trained, resolve_device, set_threads

POSE_SUFFIX = ".pose"
NPY_SUFFIX = ".npy"


# ============================================================================ input -> landmarks


@dataclass
class Landmarks:
    raw: np.ndarray  # [T, 1629] (NaN where not detected) or [T, 6516]
    fps: float | None
    kind: str  # video | frames | pose | npy
    extract_seconds: float = 0.0


def read_input(path, model_complexity: int = 1) -> Landmarks:
    """Landmarks of one input; UsageError naming the file if it cannot be read."""
    from data.extract import ExtractError, extract_sample, video_fps

    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    t0 = time.perf_counter()
    suffix = path.suffix.lower()
    if path.is_file() and suffix == NPY_SUFFIX:
        try:
            raw = np.asarray(load_features(path, mmap=False))
        except CorpusError as exc:
            raise UsageError(str(exc)) from None
        return Landmarks(raw, None, "npy", time.perf_counter() - t0)
    if path.is_file() and suffix == POSE_SUFFIX:
        from data.convert.pose import ConvertError, _pose_array_and_fps

        try:
            raw, fps = _pose_array_and_fps(path)
        except ConvertError as exc:
            raise UsageError(str(exc)) from None
        return Landmarks(raw, fps or None, "pose", time.perf_counter() - t0)
    try:
        raw = extract_sample(path, model_complexity)
    except ExtractError as exc:
        raise UsageError(str(exc)) from None
    return Landmarks(raw, video_fps(path), "frames" if path.is_dir() else "video", time.perf_counter() - t0)


# ============================================================================ landmarks -> model input


def model_input(trained: Trained, raw: np.ndarray) -> np.ndarray:
    """[T, 1629 | 6516] landmarks -> the model-ready [T, F] features, exactly as
    data.dataset.MediaPipeFeatureDataset.features computes them for this checkpoint."""
    cfg = trained.cfg
    if cfg.lead_hand is not None:
        raw = lead_canonical(raw, cfg.lead_hand)
    feats, raw_nan = model_features(raw, cfg.impute)
    out = Normalizer(cfg.normalize, stats=trained.stats, std_floor=cfg.std_floor, clip=cfg.clip)(feats, raw=raw_nan)
    columns = modality_columns(cfg.modalities)
    return out[:, columns] if len(columns) != FEATURE_DIM else out


def temporal_stride(model, frames: int, out_frames: int) -> int:
    """Input frames per output frame: from model.output_lengths on a long input (4 for the I3D
    teacher), checked against this input's output length; else ceil(T / T')."""
    fallback = max(1, math.ceil(frames / max(out_frames, 1)))
    lengths_of = getattr(model, "output_lengths", None)
    if not callable(lengths_of):
        return fallback
    long = 1 << 14
    try:
        out = int(torch.as_tensor(lengths_of(torch.tensor([long])))[0])
    except Exception:  # noqa: BLE001 - a user model's output_lengths that does not take one long input
        return fallback
    if out <= 0 or long % out:
        return fallback
    stride = long // out
    return stride if math.ceil(frames / stride) == out_frames else fallback


@dataclass
class Recognition:
    input: str
    kind: str
    frames: int
    fps: float | None
    glosses: list
    text: str
    segments: list
    score: float
    score_per_frame: float
    decoder: str = "greedy"
    stride: int = 1
    extract_seconds: float = 0.0
    model_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


def segments_from_path(log_probs: torch.Tensor, vocab, stride: int, frames: int, fps: float | None) -> tuple[list, list]:
    """Greedy CTC path of one sample (log_probs [T', V], valid frames only) -> (glosses, segments)."""
    best, ids = log_probs.max(dim=-1)
    ids = ids.tolist()
    glosses, segments = [], []
    k = 0
    while k < len(ids):
        token, k_end = ids[k], k
        while k_end + 1 < len(ids) and ids[k_end + 1] == token:
            k_end += 1
        if token != vocab.blank_id:
            start, end = k * stride, min((k_end + 1) * stride, frames)
            gloss = vocab.itos[token]
            glosses.append(gloss)
            segments.append({
                "gloss": gloss, "start_frame": start, "end_frame": end,
                "start_s": round(start / fps, 3) if fps else None, "end_s": round(end / fps, 3) if fps else None,
                "confidence": round(float(log_probs[k:k_end + 1, token].max().exp()), 4),
            })
        k = k_end + 1
    return glosses, segments


@torch.no_grad()
def recognize_landmarks(trained: Trained, marks: Landmarks, name: str = "", device=None) -> Recognition:
    """Landmarks -> Recognition, through the dataset's features, the batch_transform, the model and greedy decoding."""
    from model import training

    if trained.cfg.dataset is not None:
        raise UsageError(
            f"{trained.path} was trained on a user dataset ({trained.cfg.dataset}): its features come from that dataset's own "
            "code, which recognize cannot reproduce for new input; run the model on that dataset's features"
        )
    device = device or torch.device("cpu")
    t0 = time.perf_counter()
    x = torch.from_numpy(np.ascontiguousarray(model_input(trained, marks.raw)))
    sample = Sample(id=name, features=x, targets=torch.zeros(0, dtype=torch.long), glosses=(), normalization=trained.cfg.normalize)
    batch = training.to_model_input(collate([sample]), device, training.batch_transform(trained.cfg))
    model = trained.model.to(device).eval()
    with training.autocast_context(device, trained.cfg):
        log_probs, out_lengths = model(batch.features, batch.lengths)
    out_len = int(out_lengths[0])
    lp = log_probs[0, :out_len].float().cpu()
    frames = int(x.shape[0])
    stride = temporal_stride(model, frames, out_len)
    glosses, segments = segments_from_path(lp, trained.vocab, stride, frames, marks.fps)
    score = float(lp.max(dim=-1).values.sum())
    return Recognition(
        input=name, kind=marks.kind, frames=frames, fps=marks.fps, glosses=glosses, text=" ".join(glosses), segments=segments,
        score=round(score, 4), score_per_frame=round(score / max(out_len, 1), 4), stride=stride,
        extract_seconds=round(marks.extract_seconds, 3), model_seconds=round(time.perf_counter() - t0, 3),
    )


def input_drift(reference: dict, marks: Landmarks, thresholds: dict | None = None, normalize: str | None = None) -> dict:
    """One input against the training profile (data.drift.compare, sample mode) as the JSON's "drift"."""
    from data.drift import compare
    from data.profile import HAND_LEAD, profile_sample

    hand_lead = reference.get("lead", {}).get("hand_lead", HAND_LEAD)
    d = compare(reference, profile_sample(marks.raw, marks.fps, hand_lead), thresholds, mode="sample", normalize=normalize)
    return {"status": d.status, "findings": d.fired, "not_judged": d.not_judged()}


def recognize_path(trained: Trained, path, model_complexity: int = 1, device=None, reference: dict | None = None) -> Recognition:
    """One input recognized; with `reference` (the checkpoint's data profile) compared with it first."""
    from data.drift import resolve

    marks = read_input(path, model_complexity)
    drift = input_drift(reference, marks, resolve(trained.cfg.thresholds), trained.cfg.normalize) if reference is not None else None
    rec = recognize_landmarks(trained, marks, str(path), device)
    if drift is not None:
        rec.extra["drift"] = drift
    return rec


def describe(rec: Recognition) -> str:
    duration = f" ({rec.frames / rec.fps:.2f} s at {rec.fps:.1f} fps)" if rec.fps else ""
    lines = [
        f"{rec.input}: {rec.kind}, {rec.frames} frames{duration}; extraction {rec.extract_seconds:.2f} s, model {rec.model_seconds:.2f} s",
        *(f"  drift: {f['text']}; fix: {f['fix']}" for f in rec.extra.get("drift", {}).get("findings", [])),
        f"  glosses: {rec.text or '(none: every output frame is blank)'}   score {rec.score:.3f} (log P of the greedy path)",
    ]
    for s in rec.segments:
        when = f", {s['start_s']:.2f}-{s['end_s']:.2f} s" if s["start_s"] is not None else ""
        lines.append(f"  {s['gloss']:<16} frames {s['start_frame']}-{s['end_frame']} (end exclusive{when})  confidence {s['confidence']:.2f}")
    return "\n".join(lines)


# ============================================================================ command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model.recognize",
        description="Glosses, per-gloss frame spans (greedy CTC alignment) and a score for videos, frame folders, .pose or .npy files.",
    )
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="best.pt or last.pt written by train.py")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="video, folder of frames, .pose file or corpus .npy")
    p.add_argument("--out", type=Path, metavar="FILE.json", help="write the results as a JSON list")
    p.add_argument("--model-complexity", dest="model_complexity", type=int, default=1, choices=(0, 1, 2),
                   help="MediaPipe Holistic model for videos and frames (default 1, as data.extract)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-drift", "--no_drift", dest="no_drift", action="store_true",
                   help="do not compare the inputs with the checkpoint's data profile")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        set_threads(args.threads)
        device = resolve_device(args.device)
        trained = load_trained(args.checkpoint)
        reference = None
        if not args.no_drift:
            from data.profile import checkpoint_profile

            try:
                reference = checkpoint_profile(trained.path)
            except ValueError as exc:  # an unreadable profile costs the comparison, not the recognition
                print(f"drift: not compared ({exc})")
        missing = [p for p in args.inputs if not p.exists()]
        if missing:
            raise UsageError(f"{missing[0]}: no such file or folder" + (f" (and {len(missing) - 1} more missing inputs)" if len(missing) > 1 else ""))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results, failed = [], 0
    for path in args.inputs:
        try:
            rec = recognize_path(trained, path, args.model_complexity, device, reference)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            results.append({"input": str(path), "error": str(exc)})
            failed += 1
            continue
        print(describe(rec), flush=True)
        results.append(rec.to_json())
    if args.out:
        atomic_write_text(args.out, json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        print(f"results: {args.out}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
