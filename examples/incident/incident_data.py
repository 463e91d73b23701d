"""The user's dataset, as the incident report's `MediaPipeFeatureDataset` does it.

Self-contained user code (numpy, torch, csv): it reads a corpus directory (manifest.csv with
id,split,glosses,path; one [T, 1629] .npy per sample, NaN where a landmark was not detected:
33 pose + 21 left hand + 21 right hand + 468 face landmarks, x/y/z each), zero-fills the NaN,
appends velocity, acceleration and displacement (-> 6516 features a frame, the report's width)
and z-scores every channel with the train split's mean and std, exactly like the report:

    if self.normalize and hasattr(self, 'feature_mean'):
        features = (features - self.feature_mean) / self.feature_std

with no floor on the std. A channel that is constant over the train split (a hand never
detected there, zero-filled) has std 0, and (0 - 0) / 0 = NaN.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

RAW_DIM = 1629
DISPLACEMENT_WINDOW = 4
_STATS: dict = {}  # (corpus dir, temporal) -> (mean, std) of the train split, computed once


def add_temporal(x: np.ndarray) -> np.ndarray:
    """[T, 1629] -> [T, 6516]: raw | velocity | acceleration | displacement over 4 frames."""
    vel, acc, disp = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    vel[1:] = x[1:] - x[:-1]
    acc[2:] = x[2:] - 2 * x[1:-1] + x[:-2]
    disp[DISPLACEMENT_WINDOW:] = x[DISPLACEMENT_WINDOW:] - x[:-DISPLACEMENT_WINDOW]
    return np.concatenate([x, vel, acc, disp], axis=1)


class MediaPipeFeatureDataset(torch.utils.data.Dataset):
    def __init__(self, data_dir, split="train", normalize=True, temporal=True, std_floor=None, zero_constant=False):
        self.data_dir = Path(data_dir)
        self.split = split
        self.normalize = normalize
        self.temporal = temporal
        self.zero_constant = zero_constant
        with open(self.data_dir / "manifest.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        self.samples = [r for r in rows if r["split"] == split]
        if not self.samples:
            raise KeyError(f"no {split!r} samples in {self.data_dir / 'manifest.csv'}")
        if normalize:
            mean, std = self._train_stats([r for r in rows if r["split"] == "train"])
            self.constant = torch.from_numpy(std == 0)  # channels constant over the train split
            if std_floor:
                std = np.maximum(std, std_floor)  # the fix
            self.feature_mean = torch.from_numpy(mean.astype(np.float32))
            self.feature_std = torch.from_numpy(std.astype(np.float32))

    def _load(self, row) -> np.ndarray:
        x = np.load(self.data_dir / row["path"]).astype(np.float32)
        x = np.nan_to_num(x, nan=0.0)  # undetected landmarks -> 0 (the report's convention)
        return add_temporal(x) if self.temporal else x

    def _train_stats(self, train_rows):
        key = (str(self.data_dir.resolve()), self.temporal)
        if key not in _STATS:
            frames = np.concatenate([self._load(r) for r in train_rows]).astype(np.float64)
            _STATS[key] = (frames.mean(axis=0), frames.std(axis=0))
        return _STATS[key]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, idx):
        row = self.samples[idx]
        features = torch.from_numpy(self._load(row))
        if self.normalize and hasattr(self, "feature_mean"):
            features = (features - self.feature_mean) / self.feature_std
            if self.zero_constant:
                features[:, self.constant] = 0.0  # what train never varied carries no information
        return {"id": row["id"], "features": features, "glosses": row["glosses"]}


def _corpus(data_dir):
    if data_dir is not None:
        return data_dir
    from prepare import corpus_dir  # the example's tooling: builds the corpus on first use

    return corpus_dir()


def make_dataset(split, data_dir=None):
    """The dataset as reported: global z-score with the raw train std."""
    return MediaPipeFeatureDataset(_corpus(data_dir), split, normalize=True)


def make_dataset_floored(split, data_dir=None):
    """The fix: the same z-score with the train std floored at 1e-3."""
    return MediaPipeFeatureDataset(_corpus(data_dir), split, normalize=True, std_floor=1e-3)


def make_dataset_zero_constant(split, data_dir=None):
    """The floor, and channels constant over the train split set to 0 in every split (a dev/test
    sample in which the left hand appears would otherwise reach |x| ~ 2e3 there: x / 1e-3)."""
    return MediaPipeFeatureDataset(_corpus(data_dir), split, normalize=True, std_floor=1e-3, zero_constant=True)


def make_dataset_unnormalized(split, data_dir=None):
    """The write-up's fix (normalize=False): no dataset-level z-score at all."""
    return MediaPipeFeatureDataset(_corpus(data_dir), split, normalize=False)
