"""Landmark features for the I3D teacher (user code: numpy, torch, csv only).

Reads a corpus directory: manifest.csv (id,split,glosses,path) and one [T, 1629] .npy a sample,
MediaPipe Holistic landmarks (33 pose, 21 left hand, 21 right hand, 468 face; x, y, z each) with
NaN where a landmark was not detected. Per sample:

    NaN -> 0 (undetected landmarks)
    + velocity, acceleration, displacement (4 frames)  -> [T, 6516]
    (x - train_mean) / (train_std + 1e-8)               "+ 1e-8 so we never divide by zero"

make_dataset is what training used. make_dataset_fixed floors the std at 1e-3 and zeroes the
channels that are constant over the train split (in every split).
"""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import torch

RAW = 1629
EPS = 1e-8
_train_stats_cache = {}


def _corpus(data_dir=None) -> Path:
    """The corpus directory: data_dir if given, else the demo corpus of examples/incident/prepare.py
    (built on first use; its train split never detects the left hand)."""
    if data_dir is not None:
        return Path(data_dir)
    prepare_py = Path(__file__).resolve().parents[3] / "examples" / "incident" / "prepare.py"
    spec = importlib.util.spec_from_file_location("_outside_incident_prepare", prepare_py)
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    return prepare.corpus_dir()


def with_motion(x: np.ndarray) -> np.ndarray:
    """[T, 1629] -> [T, 6516]: position, velocity, acceleration, displacement over 4 frames."""
    velocity = np.zeros_like(x)
    velocity[1:] = x[1:] - x[:-1]
    acceleration = np.zeros_like(x)
    acceleration[2:] = x[2:] - 2 * x[1:-1] + x[:-2]
    displacement = np.zeros_like(x)
    displacement[4:] = x[4:] - x[:-4]
    return np.concatenate([x, velocity, acceleration, displacement], axis=1)


class SignFeatures(torch.utils.data.Dataset):
    def __init__(self, root, split, std_floor=None, zero_constant=False):
        self.root = Path(root)
        with open(self.root / "manifest.csv", newline="") as f:
            manifest = list(csv.DictReader(f))
        self.rows = [r for r in manifest if r["split"] == split]
        if not self.rows:
            raise KeyError(f"no samples for split {split!r}")
        mean, std = self.train_statistics([r for r in manifest if r["split"] == "train"])
        self.constant = std == 0
        if std_floor is not None:
            std = np.maximum(std, std_floor)
        self.mean = mean.astype(np.float32)
        self.std = std.astype(np.float32)
        self.zero_constant = zero_constant

    def read(self, row) -> np.ndarray:
        x = np.load(self.root / row["path"]).astype(np.float32)
        x = np.nan_to_num(x, nan=0.0)
        return with_motion(x)

    def train_statistics(self, train_rows):
        key = str(self.root.resolve())
        if key not in _train_stats_cache:
            allframes = np.concatenate([self.read(r) for r in train_rows]).astype(np.float64)
            _train_stats_cache[key] = (allframes.mean(0), allframes.std(0))
        return _train_stats_cache[key]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        x = (self.read(row) - self.mean) / (self.std + EPS)
        if self.zero_constant:
            x[:, self.constant] = 0.0
        return {"id": row["id"], "features": torch.from_numpy(x.astype(np.float32)), "glosses": row["glosses"]}


def make_dataset(split, data_dir=None):
    """As used in training: train mean/std, std + 1e-8, no floor."""
    return SignFeatures(_corpus(data_dir), split)


def make_dataset_fixed(split, data_dir=None):
    """std floored at 1e-3, channels constant over train set to 0 in every split."""
    return SignFeatures(_corpus(data_dir), split, std_floor=1e-3, zero_constant=True)
