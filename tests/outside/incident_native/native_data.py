"""Sign videos as keypoint sequences (user code: numpy, torch, csv only).

A corpus directory holds manifest.csv (id, split, glosses, path) and one [T, 1629] .npy a video:
MediaPipe Holistic landmarks (33 pose, 21 left hand, 21 right hand, 468 face; x, y, z), NaN
where a landmark was not detected. Each item is

    {"video_id": str, "features": [T, 150] float tensor, "labels": [int]}

features: x/y of the pose and both hands, relative to the mean position of the sample's pose,
0 where undetected. labels: line numbers in vocab.txt (0-based); its last line is the CTC blank.
"""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
POSE, HANDS = 33, 42  # landmarks kept: the pose, then the left and right hand


def read_vocab(path=HERE / "vocab.txt") -> list[str]:
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def _corpus(data_dir=None) -> Path:
    """data_dir, or the demo corpus built by examples/incident/prepare.py (on first use)."""
    if data_dir is not None:
        return Path(data_dir)
    prepare_py = HERE.parents[2] / "examples" / "incident" / "prepare.py"
    spec = importlib.util.spec_from_file_location("_native_incident_prepare", prepare_py)
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    return prepare.corpus_dir()


def keypoints(raw: np.ndarray) -> np.ndarray:
    """[T, 1629] landmarks -> [T, 150]: x/y of pose and hands around the pose's mean, 0 if missing."""
    xy = raw.reshape(len(raw), -1, 3)[:, : POSE + HANDS, :2].astype(np.float32)
    pose = xy[:, :POSE].reshape(-1, 2)
    origin = np.nanmean(pose, axis=0) if np.isfinite(pose).any() else np.zeros(2, np.float32)
    return np.nan_to_num(xy - origin, nan=0.0).reshape(len(raw), -1)


class SignVideos(torch.utils.data.Dataset):
    def __init__(self, root, split, label_offset=0):
        self.root = Path(root)
        self.vocab = read_vocab()
        with open(self.root / "manifest.csv", newline="") as f:
            self.rows = [r for r in csv.DictReader(f) if r["split"] == split]
        if not self.rows:
            raise KeyError(f"no videos in split {split!r}")
        self.label_offset = label_offset

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        x = keypoints(np.load(self.root / row["path"]))
        labels = [self.vocab.index(g) + self.label_offset for g in row["glosses"].split()]
        return {"video_id": row["id"], "features": torch.from_numpy(x), "labels": labels}


def make_dataset(split, data_dir=None):
    return SignVideos(_corpus(data_dir), split)


def make_dataset_shifted(split, data_dir=None):
    """Labels one past their line in vocab.txt, as if id 0 were reserved for the blank."""
    return SignVideos(_corpus(data_dir), split, label_offset=1)


def collate(items):
    """-> (features [B, T, 150] zero-padded, lengths [B], labels [B, S] padded with -1, label lengths [B], video ids)"""
    lengths = torch.tensor([len(it["features"]) for it in items])
    features = torch.zeros(len(items), int(lengths.max()), items[0]["features"].shape[1])
    label_lengths = torch.tensor([len(it["labels"]) for it in items])
    labels = torch.full((len(items), int(label_lengths.max())), -1, dtype=torch.long)
    for i, it in enumerate(items):
        features[i, : lengths[i]] = it["features"]
        labels[i, : label_lengths[i]] = torch.tensor(it["labels"])
    return features, lengths, labels, label_lengths, [it["video_id"] for it in items]
