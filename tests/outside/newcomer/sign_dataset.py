"""My dataset: 2D pose + hand keypoints from the MediaPipe .npy files.

Each .npy is [T, 1629]: 543 landmarks (33 pose, 21 left hand, 21 right hand, 468 face) times
x, y, z, NaN when MediaPipe missed the landmark. I keep x and y of the pose and both hands
(75 landmarks -> 150 numbers a frame), center every sample on its own mean position so it does
not matter where the signer stands, and put 0 where a landmark is missing.
"""
import csv
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

N_KEEP = 33 + 21 + 21  # pose, left hand, right hand come first in the file


def _corpus(data_dir=None):
    """Where the data is: data_dir, or the demo corpus examples/incident/prepare.py builds (once)."""
    if data_dir is not None:
        return Path(data_dir)
    prepare_py = Path(__file__).resolve().parents[3] / "examples" / "incident" / "prepare.py"
    spec = importlib.util.spec_from_file_location("_outside_incident_prepare", prepare_py)
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    return prepare.corpus_dir()


class SignDataset(Dataset):
    def __init__(self, folder, split):
        folder = Path(folder)
        self.items = []
        with open(folder / "manifest.csv") as f:
            for row in csv.DictReader(f):
                if row["split"] != split:
                    continue
                arr = np.load(folder / row["path"]).astype(np.float32)
                xy = arr.reshape(len(arr), -1, 3)[:, :N_KEEP, :2]  # [T, 75, 2]
                center = np.nanmean(xy.reshape(-1, 2), axis=0)  # mean x, y over everything detected
                xy = np.nan_to_num(xy - center)
                self.items.append({"id": row["id"], "features": torch.tensor(xy.reshape(len(arr), -1)), "glosses": row["glosses"]})
        if not self.items:
            raise KeyError(split)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        return self.items[idx]


def get_dataset(split, data_dir=None):
    return SignDataset(_corpus(data_dir), split)
