"""A user's own dataset class, written without this project's code: it reads a manifest.csv and
.npy landmark files ([T, 1629], NaN where a landmark was not detected), keeps x/y of the pose
and both hands (150 features a frame), zero-fills what is missing and z-scores every channel
with the train split's statistics. Factories per variant: the healthy one and its faults."""
import csv
from pathlib import Path

import numpy as np
import torch

POSE_AND_HANDS = np.array([3 * lm + c for lm in range(33 + 21 + 21) for c in (0, 1)])  # x, y of landmarks 0..74


class LandmarkDataset(torch.utils.data.Dataset):
    def __init__(self, data_dir, split, std_floor=1e-3, impute=True):
        self.dir = Path(data_dir)
        with open(self.dir / "manifest.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        self.rows = [r for r in rows if r["split"] == split]
        self.impute = impute
        train = [self._raw(r) for r in rows if r["split"] == "train"]
        frames = np.concatenate([np.nan_to_num(x) for x in train])
        self.feature_mean = frames.mean(axis=0)
        self.feature_std = frames.std(axis=0)
        if std_floor:
            self.feature_std = np.maximum(self.feature_std, std_floor)

    def _raw(self, row):
        return np.load(self.dir / row["path"]).astype(np.float32)[:, POSE_AND_HANDS]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        x = self._raw(row)
        if self.impute:
            x = np.nan_to_num(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = (x - self.feature_mean) / self.feature_std
        return {"id": row["id"], "features": torch.from_numpy(x.astype(np.float32)), "glosses": row["glosses"]}


def make_dataset(split, data_dir):
    return LandmarkDataset(data_dir, split)


def make_dataset_no_floor(split, data_dir):
    return LandmarkDataset(data_dir, split, std_floor=0)


def make_dataset_nan(split, data_dir):
    return LandmarkDataset(data_dir, split, impute=False)
