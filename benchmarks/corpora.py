"""The corpora the benchmark measures on: synthetic landmark files written fast (no motion model)
for memory and scale, and the synthetic demo corpus (data.synthetic) for training."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.corpus import SampleRecord, atomic_save_npy, write_manifest
from data.layout import LAYOUT, RAW_DIM


def write_synthetic_corpus(root, n_samples: int, frames: int = 200, dtype: str = "float16", seed: int = 0,
                           glosses=("A", "B", "C", "D", "E", "F")) -> Path:
    """Write `n_samples` random [frames, 1629] landmark files and a manifest into `root`.

    Values lie in 0.2..0.8 around a per-sample pose (a small random walk per frame), the left hand
    is NaN (not detected) in a run of ~30% of the frames. Splits: every 10th sample dev, the next
    test, the rest train; dev/test use only glosses some earlier train sample has, 2-4 glosses
    each, so the corpus passes the label and CTC checks (200 frames -> 50 output steps).
    Fast on purpose (no motion model): it is for memory and scale measurements, not for training.
    """
    if n_samples < 1 or frames < 1:
        raise ValueError(f"write_synthetic_corpus needs n_samples >= 1 and frames >= 1, got {n_samples}, {frames}")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32 (the corpus format's dtypes), got {dtype!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    records, seen = [], []
    miss = max(1, round(0.3 * frames))
    for i in range(n_samples):
        split = {8: "dev", 9: "test"}.get(i % 10, "train") if seen else "train"
        pool = list(glosses) if split == "train" else seen
        seq = tuple(rng.choice(pool, size=int(rng.integers(2, 5))))
        if split == "train":
            seq = (glosses[i % len(glosses)],) + seq[1:]  # the first train samples cover the vocabulary
            seen.extend(g for g in seq if g not in seen)
        raw = rng.uniform(0.2, 0.8, size=(1, RAW_DIM)).astype(np.float32)
        raw = raw + np.cumsum(rng.standard_normal((frames, RAW_DIM), dtype=np.float32) * 0.002, axis=0)
        start = int(rng.integers(0, frames - miss + 1)) if frames > miss else 0
        raw[start : start + miss, LAYOUT.left_hand] = np.nan
        sid = f"syn{i:06d}"
        rel = f"features/{sid}.npy"
        atomic_save_npy(root / rel, raw.astype(dtype))
        signer = f"s{i % 5}" if split == "train" else f"{split}-signer"  # signer-independent splits, as the labels check expects
        records.append(SampleRecord(sid, split, seq, rel, signer=signer, fps=25.0))
    write_manifest(root, records)
    return root


def quick_training_corpus(tmp: Path) -> Path:
    from data.synthetic import generate_corpus

    return generate_corpus(tmp / "demo64", seed=0, n_train=64, n_dev=8, n_test=8)


def training_corpus(tmp: Path, quick: bool) -> Path:
    from data.synthetic import demo_corpus

    return quick_training_corpus(tmp) if quick else demo_corpus()
