"""Everything the checks need for one training configuration, built lazily and once.

The pytest plugin's session fixtures and train.py's first-batch diagnostics both draw from a
HarnessContext, so the checks always see the corpus, datasets and model training will use.
"""
from __future__ import annotations

import functools

import torch

from data.corpus import Corpus
from data.dataset import MediaPipeFeatureDataset, Vocabulary
from data.normalize import METHODS
from harness.scan import scan_corpus
from harness.thresholds import resolve
from model import training
from model.config import TrainConfig


class HarnessContext:
    def __init__(self, cfg: TrainConfig, device: torch.device | str = "cpu", workers: int = 0):
        self.cfg = cfg
        self.device = torch.device(device)
        self.workers = workers
        self.thresholds = resolve(cfg.thresholds)

    @functools.cached_property
    def corpus(self) -> Corpus:
        # validate=False: manifest problems become findings of the labels check, not a crash
        return Corpus(training.corpus_dir(self.cfg), validate=False)

    @functools.cached_property
    def scan(self):
        return scan_corpus(self.corpus, self.thresholds["max_abs_coordinate"], self.cfg.impute, self.workers)

    @functools.cached_property
    def vocab(self) -> Vocabulary:
        return Vocabulary.from_records(self.corpus.records)

    @property
    def train_frames(self) -> int:
        return sum(f.frames for f in self.scan.by_split("train") if not f.error)

    @functools.lru_cache(maxsize=None)
    def dataset(self, method: str | None = None, split: str = "train", modalities=None) -> MediaPipeFeatureDataset:
        method = method or self.cfg.normalize
        if method not in METHODS:
            raise ValueError(f"unknown normalization {method!r}")
        return MediaPipeFeatureDataset(
            self.corpus.dir, split, vocab=self.vocab, normalization=method,
            modalities=modalities or self.cfg.modalities, impute_method=self.cfg.impute,
            stats=self.scan.train_stats if method == "global" else None,
            std_floor=self.cfg.std_floor, clip=self.cfg.clip, corpus=self.corpus,
        )

    def model(self, modalities=None, seed: int | None = None) -> torch.nn.Module:
        torch.manual_seed(self.cfg.seed if seed is None else seed)
        cfg = self.cfg if modalities is None else self.cfg.replace(modalities=modalities)
        return training.build_model(cfg, len(self.vocab)).to(self.device)

    def probe_indices(self, method: str | None = None, k_random: int = 4) -> list[int]:
        from harness.training_checks import extreme_indices

        return extreme_indices(self.scan.files, self.dataset(method).records, k_random=k_random, seed=self.cfg.seed)

    def overfit_indices(self) -> list[int]:
        """The fixed tiny subset the overfit check trains on: the shortest train samples (fast)."""
        ds = self.dataset()
        lengths = ds.lengths()
        return sorted(range(len(ds)), key=lambda i: (lengths[i], ds.records[i].id))[: self.thresholds["overfit_samples"]]

    def probe_batch(self, method: str | None = None, n: int = 4):
        from data.dataset import collate

        ds = self.dataset(method)
        return training.to_model_input(collate([ds[i] for i in self.probe_indices(method)[:n]]), self.device)
