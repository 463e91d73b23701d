"""Everything the checks need for one training configuration, built lazily and once.

The pytest plugin's session fixture, the gate, the fault catalogue and the benchmark all draw
from a HarnessContext, so the checks always see the data, transform and model training will
use: the project's corpus and MediaPipeFeatureDataset, or the user's own dataset factory,
batch_transform and model factory (model/components.py).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from data.corpus import MANIFEST, Corpus
from data.dataset import MediaPipeFeatureDataset, Vocabulary
from data.layout import MODALITIES
from data.layout import input_dim as layout_input_dim
from data.normalize import METHODS
from harness.scan import scan_corpus, scan_dataset
from harness.thresholds import resolve
from model import training
from model.components import (
    EXTERNAL, ComponentError, ExternalDataset, UserVocabulary, is_component_path, item_key_map,
    load_collate_fn, load_external_splits, load_train_step, to_device, user_batch_problems,
)
from model.config import TrainConfig


def harness_device(cfg: TrainConfig, gpu: bool = False) -> torch.device:
    """The one place the checks' device comes from: the configuration's device, as train.py
    resolves it; --gpu means cuda, exactly like train.py's --gpu."""
    return training.resolve_device("cuda" if gpu else cfg.device)


class HarnessContext:
    def __init__(self, cfg: TrainConfig, device: torch.device | str | None = None, workers: int = 0):
        self.cfg = cfg
        self.device = torch.device(device) if device is not None else harness_device(cfg)
        self.workers = workers
        self.thresholds = resolve(cfg.thresholds)
        self._datasets: dict = {}

    # ------------------------------------------------------------------ what is checked

    @property
    def external(self) -> bool:
        """True when the dataset is the user's own (cfg.dataset), not MediaPipeFeatureDataset."""
        return self.cfg.dataset is not None

    @functools.cached_property
    def corpus(self) -> Corpus | None:
        """The raw corpus (data_dir, or the demo corpus for the project's own dataset); None for
        a user dataset without data_dir. validate=False: manifest problems are the labels check's."""
        if self.external and (self.cfg.data_dir is None or not (Path(self.cfg.data_dir) / MANIFEST).is_file()):
            return None  # the user's dataset reads its own files, in a format of its own
        return Corpus(training.corpus_dir(self.cfg), validate=False)

    @functools.cached_property
    def _external_splits(self) -> dict:
        return load_external_splits(self.cfg.dataset, self.cfg.config_dir, self.cfg.data_dir)

    @functools.cached_property
    def _corpus_scan(self):
        t = self.thresholds
        return scan_corpus(self.corpus, t["max_abs_coordinate"], self.cfg.impute, self.workers, t["max_abs_z"])

    @functools.cached_property
    def _dataset_scan(self):
        vocab = Vocabulary([])  # the scan reads ids, features and glosses only
        splits = {s: ExternalDataset(ds, self.cfg.dataset, s, vocab, keys=self.item_keys, user_vocab=self.declared_vocab)
                  for s, ds in self._external_splits.items()}
        return scan_dataset(splits, self.cfg.dataset)

    # ------------------------------------------------------------------ the user's conventions

    @property
    def item_keys(self) -> dict:
        """This project's item keys -> the user's (cfg.item_keys; unnamed ones keep the project's names)."""
        return item_key_map(self.cfg.item_keys)

    @functools.cached_property
    def declared_vocab(self) -> UserVocabulary | None:
        """The vocabulary the configuration names (cfg.vocab, with cfg.blank), None without one."""
        return training.declared_vocab(self.cfg)

    @functools.cached_property
    def user_vocab(self) -> UserVocabulary | None:
        """The ids the user's labels, model output and training step use: the declared vocabulary,
        else (cfg.blank != 0) the project's glosses with the blank at cfg.blank; None when they are
        the project's own (blank 0, no vocabulary named)."""
        return training.user_vocabulary(self.cfg, self.vocab, self.declared_vocab)

    @functools.cached_property
    def collate_fn(self):
        """The user's collate_fn (cfg.collate_fn), None without one."""
        return load_collate_fn(self.cfg.collate_fn, self.cfg.config_dir)

    @functools.cached_property
    def train_step_fn(self):
        """The user's train_step (cfg.train_step), None without one."""
        return load_train_step(self.cfg.train_step, self.cfg.config_dir)

    def convention_report(self) -> tuple[list[str], list[str]]:
        """(what the declared conventions were found to be, what breaks them) for the contract
        check: the vocabulary loads, collate_fn keeps its contract on the first two train items,
        train_step loads and takes (model, batch, optimizer)."""
        notes, problems = [], []
        try:
            if self.user_vocab is not None:
                notes.append(self.user_vocab.describe())
        except ComponentError as exc:
            return notes, [str(exc)]
        if self.cfg.collate_fn is not None:
            try:
                ds = self.dataset()
                indices = list(range(min(2, len(ds))))
                samples = [ds[i] for i in indices]
                raw = self.collate_fn([ds.inner[i] for i in indices])
                uv = self.user_vocab
                labels = [uv.user_ids(ds.item(i)[2]) if uv is not None else ds.vocab.encode(ds.item(i)[2], samples[k].id, "skip")
                          for k, i in enumerate(indices)]
                found = user_batch_problems(raw, samples, labels, self.item_keys, self.cfg.collate_fn)
                problems += found
                if not found:
                    notes.append(f"collate_fn {self.cfg.collate_fn!r} batches the items ({len(indices)} tried)")
            except ComponentError as exc:
                problems.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - the user's collate: report it in one line
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                problems.append(f"collate_fn = {self.cfg.collate_fn!r} raised {type(exc).__name__} on the first train items: {first}")
        if self.cfg.train_step is not None:
            try:
                self.train_step_fn
                notes.append(f"train_step {self.cfg.train_step!r} loads (the train_step check runs it)")
            except ComponentError as exc:
                problems.append(str(exc))
        return notes, problems

    @property
    def raw_scan(self):
        """The scan of the raw corpus files (clean_features), None without a corpus."""
        return self._corpus_scan if self.corpus is not None else None

    @property
    def scan(self):
        """The scan of what the dataset yields: the corpus files, or the user dataset's items."""
        return self._dataset_scan[0] if self.external else self._corpus_scan

    @property
    def records(self) -> list:
        """One record (id, split, glosses) per sample, in each split's index order."""
        return self._dataset_scan[1] if self.external else self.corpus.records

    @property
    def label_source(self):
        """The corpus directory whose manifest the labels check reads, or None for a user dataset."""
        return None if self.external else self.corpus.dir

    @functools.cached_property
    def vocab(self) -> Vocabulary:
        """The vocabulary every check encodes with, blank 0: the declared one in this project's
        order (UserVocabulary.internal), else built from the train glosses."""
        if self.declared_vocab is not None:
            return self.declared_vocab.internal
        if self.external:
            bad = {f.id for f in self.scan.files if f.error}
            return Vocabulary.from_records([r for r in self.records if r.id not in bad])
        return Vocabulary.from_records(self.corpus.records)

    @property
    def train_frames(self) -> int:
        return sum(f.frames for f in self.scan.by_split("train") if not f.error)

    @functools.cached_property
    def input_dim(self) -> int:
        """Features per frame the model receives from the dataset (before batch_transform)."""
        if self.external:
            widths = [f.width for f in self.scan.files if not f.error]
            if not widths:
                raise ComponentError(f"dataset = {self.cfg.dataset!r}: no item could be read (see the contract check)")
            return widths[0]
        return layout_input_dim(self.cfg.modalities)

    @property
    def distributed(self) -> bool:
        """Whether the configured run trains under DDP (cfg.ddp, else torchrun's WORLD_SIZE)."""
        if self.cfg.ddp is not None:
            return bool(self.cfg.ddp)
        return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1

    @functools.cached_property
    def layout_modalities(self) -> tuple[str, ...] | None:
        """The modalities whose MediaPipe layout (data/layout.py) the features follow: cfg.modalities;
        for a user's dataset yielding all 6516 features a frame, all four; else None."""
        if self.input_dim == layout_input_dim(self.cfg.modalities):
            return tuple(self.cfg.modalities)
        if self.external and self.input_dim == layout_input_dim(MODALITIES):
            return MODALITIES
        return None

    @property
    def follows_layout(self) -> bool:
        """Whether the features follow a MediaPipe layout (layout_modalities)."""
        return self.layout_modalities is not None

    # ------------------------------------------------------------------ datasets, model, batches

    def dataset(self, method: str | None = None, split: str = "train", modalities=None):
        key = (method, split, tuple(modalities) if modalities else None)
        if key not in self._datasets:
            self._datasets[key] = self._build_dataset(method, split, modalities)
        return self._datasets[key]

    def _build_dataset(self, method, split, modalities):
        if self.external:
            if method not in (None, EXTERNAL):
                raise ValueError(f"the dataset is the user's ({self.cfg.dataset}); normalization {method!r} is not the harness's to choose")
            return ExternalDataset(self._external_splits[split], self.cfg.dataset, split, self.vocab, self.input_dim,
                                   keys=self.item_keys, user_vocab=self.declared_vocab)
        method = method or self.cfg.normalize
        if method not in METHODS:
            raise ValueError(f"unknown normalization {method!r}")
        return MediaPipeFeatureDataset(
            self.corpus.dir, split, vocab=self.vocab, normalization=method,
            modalities=modalities or self.cfg.modalities, impute_method=self.cfg.impute,
            # the scan's statistics are of the files as stored; under lead_hand the dataset computes
            # those of the canonical samples, as training does
            stats=self.scan.train_stats if method == "global" and self.cfg.lead_hand is None else None,
            std_floor=self.cfg.std_floor, clip=self.cfg.clip, corpus=self.corpus, lead_hand=self.cfg.lead_hand,
        )

    def split_records(self, split: str = "train") -> list:
        return [r for r in self.records if r.split == split]

    def model(self, modalities=None, seed: int | None = None, input_dim: int | None = None) -> torch.nn.Module:
        """A freshly initialised model (seeded). A user's factory is held to the model contract
        through the declared conventions (model.components.build_user_model: the user's module,
        or a UserModel around it, whose output has the blank at 0)."""
        torch.manual_seed(self.cfg.seed if seed is None else seed)
        cfg = self.cfg if modalities is None else self.cfg.replace(modalities=modalities)
        uv = self.user_vocab if is_component_path(cfg.model) else None  # the user's blank moved to 0
        return training.build_model(cfg, len(self.vocab), input_dim or self.input_dim, uv).to(self.device)

    @functools.cached_property
    def transform(self):
        """The configured batch_transform as batch -> batch, or None."""
        return training.batch_transform(self.cfg)

    def to_input(self, batch):
        """Exactly what training feeds the model: the loader batch on the device, transformed."""
        return training.to_model_input(batch, self.device, self.transform)

    def probe_indices(self, method: str | None = None, k_random: int = 4, split: str = "train") -> list[int]:
        """Indices into a split's dataset: its longest, shortest, most-missing and largest-valued
        samples, then `k_random` random ones."""
        from harness.checks.training import extreme_indices

        return extreme_indices(self.scan.files, self.split_records(split), k_random=k_random, seed=self.cfg.seed)

    def overfit_indices(self) -> list[int]:
        """The fixed tiny subset the overfit check trains on: the shortest train samples (fast)."""
        frames = {f.id: f.frames for f in self.scan.files if not f.error}
        usable = [(frames[r.id], r.id, i) for i, r in enumerate(self.split_records("train")) if r.id in frames]
        return [i for _, _, i in sorted(usable)[: self.thresholds["overfit_samples"]]]

    @functools.cached_property
    def batches(self) -> training.Batches:
        """How batches are made, exactly as training makes them (model.training.Batches)."""
        return training.Batches(self.collate_fn, self.cfg.collate_fn, self.item_keys, self.user_vocab)

    def batch(self, indices: list[int], split: str = "train", method: str | None = None):
        """The loader batch of these samples (on the CPU): the user's collate_fn's (its features,
        lengths and order; model.components.batch_from_user), else the project's collate."""
        return self.batches.batch(self.dataset(method, split), indices)

    def step_batch(self, indices: list[int], split: str = "train", method: str | None = None) -> tuple[object, object]:
        """(what the user's train_step gets, on the device: the user's collate_fn's batch, else
        model.components.step_batch's dict; the Batch of the same samples, on the CPU)."""
        entries = self.batches.entries(self.dataset(method, split))
        raw, batch = self.batches.for_train_step()([entries[i] for i in indices])
        return to_device(raw, self.device), batch

    def probe_batch(self, method: str | None = None, n: int = 4):
        return self.to_input(self.batch(self.probe_indices(method)[:n], method=method))
