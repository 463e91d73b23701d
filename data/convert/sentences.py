"""Continuous sentences built from a corpus of isolated real clips, split by signer.

    python -m data.convert sentences SOURCE_CORPUS --out CORPUS [--lengths 2-5] [--sizes 500 80 80] [--seed S]

The source is any corpus of isolated signs in the project format, with a `signer` column: the
Kaggle importer's output (`python -m data.convert kaggle KAGGLE_DIR --out DIR`) or imported
`.pose` signs. Each sentence is one signer's clips, 2-5 of them (drawn with replacement), played
one after the other with a short transition between two clips: `transition` frames that move
every landmark linearly from its position in the last frame of one clip to the first frame of
the next, where it is present at both ends, and are NaN (missing) where it is not. Inside a clip
nothing is changed: NaN stays where the source has it. glosses = the clips' labels in order.

Splits are disjoint by signer: the signers of the source's `signer` column are assigned to
train/dev/test with `fractions` (default 0.6/0.2/0.2: 13/4/4 of the Kaggle sample's 21 signers;
data/convert/splits.py: signer_splits), or kept as the source assigned them (`keep_splits`). The source's
own split is otherwise ignored: a sentence corpus is scored on signers it never saw in training.
Within a split sentences are spread evenly over its signers, and no (signer, clip sequence) is
drawn twice while unused ones remain.

Deterministic by `seed` (same source, arguments and seed -> byte-identical files). Every file is
written atomically (data/corpus.py). `corpus.json` is written first with the parameters, so
re-running the same command is a no-op for files already written with the same content
(resumable after a crash), and a different command into the same directory is refused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.convert.common import ConvertReport
from data.convert.splits import check_fractions, signer_splits
from data.corpus import (
    CORPUS_INFO,
    MANIFEST,
    SPLITS,
    Corpus,
    CorpusError,
    SampleRecord,
    atomic_save_npy,
    atomic_write_text,
    feature_path,
    write_manifest,
)
from data.layout import RAW_DIM

DEFAULT_LENGTHS = (2, 5)
DEFAULT_SIZES = (500, 80, 80)
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)  # 13 / 4 / 4 of 21 signers
DEFAULT_TRANSITION = (2, 6)  # frames of movement between two clips
DATASET_NAME = "sentences"
MAX_REDRAWS = 50  # draws to find a (signer, clip sequence) not used yet before accepting a repeat


class SentenceError(ValueError):
    """A source or an output directory the builder cannot use; the message says why and what to do."""


@dataclass(frozen=True)
class Sentence:
    id: str
    split: str
    signer: str
    clips: tuple[SampleRecord, ...]
    transitions: tuple[int, ...]  # frames between clip k and k+1

    @property
    def glosses(self) -> tuple[str, ...]:
        return tuple(g for clip in self.clips for g in clip.glosses)


def parse_range(text, what: str = "lengths") -> tuple[int, int]:
    """'2-5' or '3' (or a pair) -> (lo, hi) with 1 <= lo <= hi (transition: 0 <= lo)."""
    if isinstance(text, (tuple, list)):
        lo, hi = (int(v) for v in text)
    else:
        parts = str(text).replace(" ", "").split("-")
        try:
            lo, hi = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (None, None)
        except ValueError:
            lo = hi = None
        if lo is None:
            raise SentenceError(f"--{what} {text!r}: write a range like 2-5 or a single number")
    least = 0 if what == "transition" else 1
    if not least <= lo <= hi:
        raise SentenceError(f"--{what} {text!r}: need {least} <= low <= high")
    return lo, hi


def transition_frames(last: np.ndarray, first: np.ndarray, frames: int) -> np.ndarray:
    """[frames, 1629] linear movement from `last` to `first` (both [1629]), endpoints excluded.

    A landmark missing at either end (NaN) is missing in every transition frame: the builder
    never invents a position MediaPipe did not see.
    """
    if frames <= 0:
        return np.zeros((0, RAW_DIM), np.float32)
    alpha = (np.arange(1, frames + 1, dtype=np.float32) / (frames + 1))[:, None]
    return ((1 - alpha) * last[None].astype(np.float32) + alpha * first[None].astype(np.float32)).astype(np.float32)


def sentence_array(clips: list[np.ndarray], transitions) -> np.ndarray:
    """The clips ([T_k, 1629] raw, NaN = missing) one after the other with transitions between."""
    parts = [np.asarray(clips[0], dtype=np.float32)]
    for clip, frames in zip(clips[1:], transitions):
        clip = np.asarray(clip, dtype=np.float32)
        parts.append(transition_frames(parts[-1][-1], clip[0], frames))
        parts.append(clip)
    return np.concatenate(parts, axis=0)


def _source_clips(source: Corpus) -> dict[str, list[SampleRecord]]:
    by_signer: dict[str, list[SampleRecord]] = {}
    unsigned = [r.id for r in source.records if not r.signer]
    if unsigned:
        shown = ", ".join(unsigned[:5]) + (f" and {len(unsigned) - 5} more" if len(unsigned) > 5 else "")
        raise SentenceError(
            f"{source.dir}: {len(unsigned)} clip(s) without a signer ({shown}); sentences are one signer's clips and "
            "splits are made by signer: fill the manifest's signer column"
        )
    for rec in sorted(source.records, key=lambda r: r.id):
        by_signer.setdefault(rec.signer, []).append(rec)
    return by_signer


def assign_splits(source: Corpus, signers, seed: int, fractions, keep_splits: bool) -> dict[str, str]:
    """signer -> split: the source's assignment (keep_splits) or a fresh one by `fractions`."""
    if not keep_splits:
        try:
            return signer_splits(signers, seed=seed, fractions=check_fractions(fractions))
        except ValueError as exc:
            raise SentenceError(str(exc)) from None
    split_of: dict[str, set] = {}
    for rec in source.records:
        split_of.setdefault(rec.signer, set()).add(rec.split)
    mixed = sorted(s for s, splits in split_of.items() if len(splits) > 1)
    if mixed:
        raise SentenceError(
            f"{source.dir}: signer(s) {mixed[:5]} appear in more than one split of the source, so keeping its splits "
            "would not be signer-independent; drop --keep-splits to split by signer here"
        )
    return {s: next(iter(splits)) for s, splits in split_of.items()}


def plan_sentences(source: Corpus, lengths=DEFAULT_LENGTHS, sizes=DEFAULT_SIZES, seed: int = 0, fractions=DEFAULT_FRACTIONS,
                   transition=DEFAULT_TRANSITION, keep_splits: bool = False) -> tuple[list[Sentence], dict[str, list[str]]]:
    """What the corpus will hold (no feature file is read): the sentences and each split's signers."""
    lo, hi = parse_range(lengths, "lengths")
    t_lo, t_hi = parse_range(transition, "transition")
    sizes = [int(n) for n in sizes]
    if len(sizes) != 3 or min(sizes) < 0 or sizes[0] == 0:
        raise SentenceError(f"--sizes {sizes}: give three counts (train dev test), train > 0")
    clips = _source_clips(source)
    split_of = assign_splits(source, sorted(clips), seed, fractions, keep_splits)
    signers = {s: sorted(g for g, sp in split_of.items() if sp == s) for s in SPLITS}
    sentences = []
    for si, (split, n) in enumerate(zip(SPLITS, sizes)):
        if n == 0:
            continue
        pool = signers[split]
        if not pool:
            raise SentenceError(
                f"{source.dir}: no signer for the {split} split ({len(clips)} signer(s) in all, split {dict((s, len(v)) for s, v in signers.items())}); "
                "add signers, change --fractions, or ask for 0 sentences there (--sizes)"
            )
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, si, 0x5E17])
        seen: set = set()
        order: list[str] = []
        for k in range(n):
            if not order:  # each signer once per round, in a fresh order: sentences spread evenly
                order = [pool[j] for j in rng.permutation(len(pool))]
            signer = order.pop()
            own = clips[signer]
            for _ in range(MAX_REDRAWS):
                count = int(rng.integers(lo, hi + 1))
                picks = tuple(int(j) for j in rng.integers(0, len(own), size=count))
                if (signer, picks) not in seen:
                    break
            seen.add((signer, picks))
            gaps = tuple(int(g) for g in rng.integers(t_lo, t_hi + 1, size=count - 1))
            sentences.append(Sentence(f"{split}-{k:04d}-{signer}", split, signer, tuple(own[j] for j in picks), gaps))
    return sentences, signers


def _source_fingerprint(source: Corpus) -> str:
    """sha256 of the source's manifest and feature bytes (not mtimes: a re-import of the same data matches)."""
    h = hashlib.sha256((source.dir / "manifest.csv").read_bytes())
    for rec in sorted(source.records, key=lambda r: r.id):
        h.update(rec.id.encode() + b"\0" + source.file(rec).read_bytes())
    return h.hexdigest()[:16]


def _params(source: Corpus, lengths, sizes, seed, fractions, transition, keep_splits) -> dict:
    return {
        "source": str(source.dir.resolve()),
        "source_fingerprint": _source_fingerprint(source),
        "lengths": list(parse_range(lengths, "lengths")),
        "sizes": [int(n) for n in sizes],
        "seed": int(seed),
        "fractions": None if keep_splits else [float(f) for f in fractions],
        "keep_splits": bool(keep_splits),
        "transition": list(parse_range(transition, "transition")),
    }


def _check_output(out_dir: Path, params: dict) -> None:
    """Refuse to write into a directory holding something else; same parameters resume."""
    info_path = out_dir / CORPUS_INFO
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except ValueError:
            info = {}
        if info.get("dataset") != DATASET_NAME:
            raise SentenceError(f"{out_dir}: holds a corpus of another kind ({info.get('dataset')!r}); choose a new --out")
        if info.get("params") != params:
            changed = sorted(k for k in params if (info.get("params") or {}).get(k) != params[k])
            raise SentenceError(
                f"{out_dir}: holds sentences built with other parameters ({', '.join(changed)} differ); "
                "choose a new --out, or delete the directory to rebuild it"
            )
    elif (out_dir / MANIFEST).is_file():
        raise SentenceError(f"{out_dir}: holds a corpus without {CORPUS_INFO} (not made by this builder); choose a new --out")


def _same_file(path: Path, array: np.ndarray) -> bool:
    if not path.is_file():
        return False
    try:
        old = np.load(path, allow_pickle=False)
    except Exception:
        return False  # cut short by a crash before the atomic rename cannot happen, but be safe
    return old.dtype == array.dtype and old.shape == array.shape and np.array_equal(old, array, equal_nan=True)


def build_sentences(source_dir, out_dir, lengths=DEFAULT_LENGTHS, sizes=DEFAULT_SIZES, seed: int = 0,
                    fractions=DEFAULT_FRACTIONS, transition=DEFAULT_TRANSITION, keep_splits: bool = False, report=None) -> Path:
    """Write the sentence corpus `out_dir` from the isolated-clip corpus `source_dir`. Returns `out_dir`.

    `report` (data.convert.common.ConvertReport) gets each sentence id as converted (written) or skipped
    (already there with the same content).
    """
    report = ConvertReport() if report is None else report
    out_dir = Path(out_dir)
    try:
        source = Corpus(source_dir)
    except CorpusError as exc:
        raise SentenceError(f"source corpus: {exc}") from None
    if out_dir.resolve() == source.dir.resolve():
        raise SentenceError(f"{out_dir}: the output must be a new directory, not the source corpus")
    sentences, signers = plan_sentences(source, lengths, sizes, seed, fractions, transition, keep_splits)
    params = _params(source, lengths, sizes, seed, fractions, transition, keep_splits)
    _check_output(out_dir, params)
    info = {"dataset": DATASET_NAME, "split_by": "signer", "params": params, "signers": signers, "complete": False}
    atomic_write_text(out_dir / CORPUS_INFO, json.dumps(info, indent=2) + "\n")

    fps = {c.fps for s in sentences for c in s.clips}
    cache: dict[str, np.ndarray] = {}
    records = []
    for s in sentences:
        arrays = []
        for clip in s.clips:
            if clip.id not in cache:
                cache[clip.id] = np.asarray(source.load(clip, mmap=False)[:, :RAW_DIM], dtype=np.float32)
            arrays.append(cache[clip.id])
        array = sentence_array(arrays, s.transitions)
        rel = feature_path(s.id)
        if _same_file(out_dir / rel, array):
            report.skipped.append(s.id)
        else:
            atomic_save_npy(out_dir / rel, array)
            report.converted.append(s.id)
        records.append(SampleRecord(
            s.id, s.split, s.glosses, rel, signer=s.signer, fps=next(iter(fps)) if len(fps) == 1 else None,
            extra={"clips": " ".join(c.id for c in s.clips), "transitions": " ".join(str(t) for t in s.transitions)},
        ))
    write_manifest(out_dir, records)
    info.update(complete=True, sentences={sp: sum(r.split == sp for r in records) for sp in SPLITS},
                frames=int(sum(int(np.load(out_dir / r.path, mmap_mode="r").shape[0]) for r in records)),
                content=_content_hash(out_dir, records))
    atomic_write_text(out_dir / CORPUS_INFO, json.dumps({**info, "import": report.as_dict()}, indent=2) + "\n")
    return out_dir


def _content_hash(out_dir: Path, records) -> str:
    """sha256 over the manifest and every feature file's bytes: equal for equal builds."""
    h = hashlib.sha256((out_dir / MANIFEST).read_bytes())
    for rec in records:
        h.update((out_dir / rec.path).read_bytes())
    return h.hexdigest()[:16]
