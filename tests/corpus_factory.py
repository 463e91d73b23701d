"""Small hand-made corpora for unit tests (the demo corpus generator has its own tests)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.corpus import SampleRecord, atomic_save_npy, write_manifest
from data.layout import LAYOUT, RAW_DIM


def random_raw(rng: np.random.Generator, t: int, missing_left: float = 0.3) -> np.ndarray:
    """[t, 1629] plausible landmark values in 0..1, left hand missing in a run of frames."""
    base = rng.uniform(0.2, 0.8, size=RAW_DIM).astype(np.float32)
    walk = np.cumsum(rng.normal(0, 0.004, size=(t, RAW_DIM)), axis=0).astype(np.float32)
    raw = base + walk
    n_miss = int(round(missing_left * t))
    if n_miss:
        start = int(rng.integers(0, t - n_miss + 1))
        raw[start : start + n_miss, LAYOUT.left_hand] = np.nan
    return raw


def make_corpus(root: Path, n_train: int = 6, n_dev: int = 2, n_test: int = 2, seed: int = 0, lengths=(20, 40), glosses=("A", "B", "C")) -> Path:
    rng = np.random.default_rng(seed)
    records = []
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        for i in range(n):
            sid = f"{split}{i:03d}"
            t = int(rng.integers(lengths[0], lengths[1] + 1))
            atomic_save_npy(root / "features" / f"{sid}.npy", random_raw(rng, t))
            seq = tuple(rng.choice(glosses, size=int(rng.integers(1, 4))))
            records.append(SampleRecord(sid, split, seq, f"features/{sid}.npy", signer=f"s{i % 2}", fps=25.0))
    write_manifest(root, records)
    return root
