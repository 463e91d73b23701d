"""The demo corpus on disk: its plan (sentences, splits, signers), the cached default corpus and its lock."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from data.corpus import (
    FEATURES_DIR,
    MANIFEST,
    CorpusError,
    SampleRecord,
    atomic_save_npy,
    atomic_write_text,
    feature_path,
    write_manifest,
)
from data.synthetic.dropout import MEASURED_KAGGLE_MISSING, missing_fractions
from data.synthetic.glosses import GLOSSES
from data.synthetic.render import FPS, render_sentence
from data.synthetic.signers import make_signers

GENERATOR_VERSION = "1.0"
DEMO_META = "demo.json"
DEMO_DIR_NAME = "demo_corpus_v1"

SIZES = {
    "small": {"n_train": 24, "n_dev": 6, "n_test": 6},
    "default": {"n_train": 240, "n_dev": 40, "n_test": 40},
}


def _sample_sequences(rng, n: int, vocab, lo: int, hi: int, required=()) -> list[tuple[str, ...]]:
    """n gloss sequences of lo..hi glosses, no gloss twice in a row; `required` glosses go first."""
    todo = list(required)
    seqs = []
    for _ in range(n):
        length = int(rng.integers(lo, hi + 1))
        seq: list[str] = []
        while len(seq) < length:
            if todo and (not seq or todo[-1] != seq[-1]):
                seq.append(todo.pop())
                continue
            choices = [g for g in vocab if not seq or g != seq[-1]] or list(vocab)  # a one-gloss vocabulary must repeat
            seq.append(choices[int(rng.integers(len(choices)))])
        seqs.append(tuple(seq))
    return seqs


def _plan_corpus(params: dict):
    """[(id, split, glosses, signer)] for the whole corpus and the signer list."""
    seed = params["seed"]
    n_seen, n_unseen = params["n_signers"], params["n_unseen_signers"]
    signers = make_signers(seed, n_seen + n_unseen)
    seen, unseen = signers[:n_seen], signers[n_seen:]
    rng = np.random.default_rng([seed, 7003])
    lo, hi = params["min_glosses"], params["max_glosses"]
    required = [GLOSSES[i] for i in rng.permutation(len(GLOSSES))]
    train = _sample_sequences(rng, params["n_train"], GLOSSES, lo, hi, required)
    in_train = tuple(g for g in GLOSSES if any(g in s for s in train))  # dev/test never leave it
    plan = []
    for split, seqs in (("train", train),
                        ("dev", _sample_sequences(rng, params["n_dev"], in_train, lo, hi)),
                        ("test", _sample_sequences(rng, params["n_test"], in_train, lo, hi))):
        order = rng.permutation(len(seen))
        for i, seq in enumerate(seqs):
            # Half of the test set (rounded up) comes from signers never seen in training.
            if split == "test" and unseen and i < (len(seqs) + 1) // 2:
                who = unseen[i % len(unseen)]
            else:
                who = seen[order[i % len(seen)]]
            plan.append((f"demo-{split}-{i:04d}", split, seq, who))
    return plan, signers


def _params(seed, n_train, n_dev, n_test, min_glosses, max_glosses, n_signers, n_unseen_signers, fps) -> dict:
    checks = {"n_train": (n_train, 1), "n_dev": (n_dev, 0), "n_test": (n_test, 0), "min_glosses": (min_glosses, 1),
              "n_signers": (n_signers, 1), "n_unseen_signers": (n_unseen_signers, 0)}
    for name, (value, least) in checks.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
            raise ValueError(f"generate_corpus: {name} must be an integer >= {least}, got {value!r}")
    if not isinstance(max_glosses, (int, np.integer)) or max_glosses < min_glosses:
        raise ValueError(f"generate_corpus: max_glosses must be an integer >= min_glosses ({min_glosses}), got {max_glosses!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"generate_corpus: seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise ValueError(f"generate_corpus: fps must be a positive number, got {fps!r}")
    return {"seed": int(seed), "n_train": int(n_train), "n_dev": int(n_dev), "n_test": int(n_test),
            "min_glosses": int(min_glosses), "max_glosses": int(max_glosses), "n_signers": int(n_signers),
            "n_unseen_signers": int(n_unseen_signers), "fps": float(fps)}


def read_meta(out: Path) -> dict | None:
    try:
        return json.loads((out / DEMO_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _source_digest() -> str:
    """Hash of the generator's source files: any edit of the generator invalidates corpora it wrote before."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _is_current(out: Path, params: dict) -> bool:
    """True if out holds a complete corpus made by this generator (version and source) with these parameters."""
    meta = read_meta(out)
    if not meta or meta.get("params") != params:
        return False
    if meta.get("version") != GENERATOR_VERSION or meta.get("source") != _source_digest():
        return False
    if not (out / MANIFEST).is_file():
        return False
    return all((out / feature_path(sid)).is_file() for sid, *_ in _plan_corpus(params)[0])


@contextlib.contextmanager
def _lock(out: Path):
    """Exclusive lock on out/.demo.lock, so parallel test workers generate a corpus only once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking (atomic writes still keep files whole)
        yield
        return
    with open(out / ".demo.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def generate_corpus(out_dir, seed: int = 0, n_train: int = 240, n_dev: int = 40, n_test: int = 40,
                    min_glosses: int = 2, max_glosses: int = 4, n_signers: int = 6, n_unseen_signers: int = 1,
                    fps: float = FPS, force: bool = False) -> Path:
    """Write the demo corpus into out_dir and return it as a Path.

    Train/dev sentences come from n_signers signers; half of the test sentences (rounded up) from
    n_unseen_signers further signers never seen in training. Every gloss of dev/test occurs in train.
    A directory that already holds the corpus of the same generator (version and source hash) and
    parameters, as recorded in its demo.json, is left as it is unless force=True. Features are written first, demo.json and the
    manifest last, all atomically, so an interrupted run is simply regenerated next time. A
    directory holding some other corpus (a manifest but no demo.json) is refused.
    """
    params = _params(seed, n_train, n_dev, n_test, min_glosses, max_glosses, n_signers, n_unseen_signers, fps)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out}: exists and is not a directory; pass a directory for the demo corpus")
    out.mkdir(parents=True, exist_ok=True)
    with _lock(out):
        if not force and _is_current(out, params):
            return out
        if (out / MANIFEST).exists() and read_meta(out) is None:
            raise CorpusError(f"{out}: holds a corpus that the demo generator did not write (no {DEMO_META}); "
                              "choose an empty or new directory for the demo corpus")
        for name in (MANIFEST, DEMO_META):  # invalidate first: a crash below leaves no stale 'complete' corpus
            (out / name).unlink(missing_ok=True)
        plan, signers = _plan_corpus(params)
        records, arrays, lefties = [], [], []
        for i, (sid, split, seq, who) in enumerate(plan):
            rng = np.random.default_rng([params["seed"], 7004, i])
            feats, segments = render_sentence(seq, who, rng, fps=params["fps"])
            rel = feature_path(sid)
            atomic_save_npy(out / rel, feats)
            arrays.append(feats)
            lefties.append(who.left_handed)
            records.append(SampleRecord(sid, split, seq, rel, signer=who.name, fps=params["fps"],
                                        extra={"segments": " ".join(f"{a}-{b}" for a, b in segments)}))
        keep = {f"{sid}.npy" for sid, *_ in plan}
        for stale in (out / FEATURES_DIR).glob("demo-*.npy"):  # left over from other sizes
            if stale.name not in keep:
                stale.unlink(missing_ok=True)
        lengths = [a.shape[0] for a in arrays]
        meta = {
            "version": GENERATOR_VERSION,
            "source": _source_digest(),
            "params": params,
            "glosses": list(GLOSSES),
            "signers": [asdict(s) for s in signers],
            "stats": {
                "samples": len(records),
                "frames": {"min": int(min(lengths)), "mean": float(np.mean(lengths)), "max": int(max(lengths))},
                "missing": missing_fractions(arrays, lefties),
                "kaggle_missing": MEASURED_KAGGLE_MISSING,
            },
        }
        atomic_write_text(out / DEMO_META, json.dumps(meta, indent=1) + "\n")
        write_manifest(out, records)
    return out


def default_cache_root() -> Path:
    """$CSLR_CACHE if set, else <repo>/.cache."""
    env = os.environ.get("CSLR_CACHE")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".cache"


def demo_corpus(cache_dir=None) -> Path:
    """The default demo corpus, generated on first use into <cache>/demo_corpus_v1.

    cache_dir defaults to $CSLR_CACHE, else <repo>/.cache. Later calls return at once.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    return generate_corpus(root / DEMO_DIR_NAME, seed=0, **SIZES["default"])
