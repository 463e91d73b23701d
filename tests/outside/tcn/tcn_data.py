"""Keypoint sequences for the TCN (user code: numpy, torch, csv).

From each [T, 1629] MediaPipe .npy (NaN = not detected) take pose and both hands, x/y/z
(225 values a frame); fill a missing landmark with its last seen position (its first seen one
before that; never seen -> 0); express x/y relative to the nose (pose landmark 0) of the same
frame; append frame-to-frame velocity -> 450 features a frame. No statistics are computed, so
nothing divides by a standard deviation.
"""
import csv
import importlib.util
from pathlib import Path

import numpy as np
import torch

KEEP = 225  # 33 pose + 21 left + 21 right hand landmarks, x/y/z


def _corpus(data_dir=None):
    """data_dir if given, else the demo corpus of examples/incident/prepare.py (built on first use)."""
    if data_dir is not None:
        return Path(data_dir)
    prepare_py = Path(__file__).resolve().parents[3] / "examples" / "incident" / "prepare.py"
    spec = importlib.util.spec_from_file_location("_outside_incident_prepare", prepare_py)
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    return prepare.corpus_dir()


def fill_gaps(x):
    """Forward-fill NaN along time, then back-fill the start; columns never seen -> 0."""
    x = x.copy()
    for c in range(x.shape[1]):
        col = x[:, c]
        seen = ~np.isnan(col)
        if not seen.any():
            col[:] = 0.0
            continue
        idx = np.where(seen, np.arange(len(col)), 0)
        np.maximum.accumulate(idx, out=idx)
        first = np.argmax(seen)
        idx[:first] = first
        x[:, c] = col[idx]
    return x


class KeypointSequences(torch.utils.data.Dataset):
    def __init__(self, root, split):
        self.root = Path(root)
        with open(self.root / "manifest.csv", newline="") as f:
            self.rows = [r for r in csv.DictReader(f) if r["split"] == split]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        x = fill_gaps(np.load(self.root / row["path"]).astype(np.float32)[:, :KEEP])
        pts = x.reshape(len(x), -1, 3)
        pts[:, :, :2] -= pts[:, :1, :2]  # relative to the nose
        x = pts.reshape(len(x), -1)
        velocity = np.diff(x, axis=0, prepend=x[:1])
        return {"id": row["id"], "features": np.concatenate([x, velocity], axis=1), "glosses": row["glosses"].split()}


def load_split(split, data_dir=None):
    ds = KeypointSequences(_corpus(data_dir), split)
    return ds if len(ds) else None
