"""The healthy setups faults are injected into: the small demo corpus, the real Kaggle landmarks
where they exist, and the base configuration (the i3d_small model on the CPU)."""
from __future__ import annotations

from pathlib import Path

from data.layout import MODALITIES
from model.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
KAGGLE_DIR = REPO / ".." / "shared" / "data" / "kaggle_asl_signs"
# A model small enough that every fault reaches its verdict in seconds on one CPU thread.
BASE_MODEL = "i3d_small"


def default_base_config(**changes) -> TrainConfig:
    """The catalogue's pipeline: the incident's input, all 6516 features (temporal block included)."""
    return TrainConfig(model=BASE_MODEL, device="cpu", **{"modalities": MODALITIES, **changes})


def small_demo_corpus(cache_dir=None) -> Path:
    """The small demo corpus (24/6/6 sentences), generated once into the cache."""
    from data.synthetic import SIZES, default_cache_root, generate_corpus

    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    return generate_corpus(root / "faults_demo_small", seed=0, **SIZES["small"])


def kaggle_corpus(out_dir) -> Path | None:
    """The real Kaggle ASL landmarks (../shared/data) converted into out_dir; None if absent."""
    from data.convert import kaggle_to_corpus

    if not (KAGGLE_DIR / "train.csv").is_file():
        return None
    if (Path(out_dir) / "manifest.csv").is_file():
        return Path(out_dir)
    return kaggle_to_corpus(KAGGLE_DIR, out_dir)
