"""Sign clips as landmark sequences, with their gloss ids (numpy, torch and csv only).

A corpus directory holds manifest.csv (columns id, split, glosses, path) and one [T, 1629] .npy a
clip: MediaPipe Holistic landmarks (33 pose, 21 left hand, 21 right hand, 468 face; x, y, z each),
NaN where a landmark was not detected. An item is

    {"video_id": str, "x": [T, 225] float tensor, "label_ids": [int]}

x: x, y, z of the pose and both hands, centred on the clip's mean shoulder midpoint and divided
by its mean shoulder width, 0 where a landmark was not detected. label_ids: line numbers (from 0)
of vocab.txt, whose last line is the CTC blank.
"""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
KEPT = 33 + 21 + 21  # landmarks kept: the pose, the left hand, the right hand
LEFT_SHOULDER, RIGHT_SHOULDER = 11, 12


def read_vocab(path=HERE / "vocab.txt") -> list[str]:
    """Line i is the gloss of id i; the last line is the blank."""
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def demo_corpus() -> Path:
    """The small demo corpus that examples/incident/prepare.py builds on first use."""
    prepare_py = HERE.parent / "incident" / "prepare.py"
    spec = importlib.util.spec_from_file_location("_own_loop_prepare", prepare_py)
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    return prepare.corpus_dir()


def landmarks_to_x(raw: np.ndarray) -> np.ndarray:
    """[T, 1629] with NaN -> [T, 225] finite: pose and hands around the shoulders, in shoulder widths."""
    points = raw.reshape(len(raw), -1, 3)[:, :KEPT].astype(np.float32)
    left, right = points[:, LEFT_SHOULDER], points[:, RIGHT_SHOULDER]
    seen = np.isfinite(left).all(axis=1) & np.isfinite(right).all(axis=1)
    if seen.any():
        centre = ((left[seen] + right[seen]) / 2).mean(axis=0)
        width = float(np.linalg.norm((left[seen] - right[seen])[:, :2], axis=1).mean())
    else:  # no shoulders in the whole clip: leave the coordinates as they are
        centre, width = np.zeros(3, np.float32), 1.0
    centre[2] = 0.0  # z is already relative (to the hips, or the wrist for a hand)
    x = (points - centre) / max(width, 1e-3)
    return np.nan_to_num(x, nan=0.0).reshape(len(raw), -1)


class SignClips(torch.utils.data.Dataset):
    def __init__(self, root, split: str):
        self.root = Path(root)
        self.vocab = read_vocab()
        with open(self.root / "manifest.csv", newline="", encoding="utf-8") as f:
            self.rows = [row for row in csv.DictReader(f) if row["split"] == split]
        if not self.rows:
            raise KeyError(f"no clips in split {split!r} of {self.root}")

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        x = landmarks_to_x(np.load(self.root / row["path"]))
        label_ids = [self.vocab.index(gloss) for gloss in row["glosses"].split()]
        return {"video_id": row["id"], "x": torch.from_numpy(x), "label_ids": label_ids}


def make_dataset(split: str, data_dir=None) -> SignClips:
    return SignClips(data_dir if data_dir is not None else demo_corpus(), split)


def collate(items: list[dict]) -> dict:
    """Items -> {"video_id": [str], "x": [B, T, 225] zero-padded, "lengths": [B],
    "label_ids": [sum of S] concatenated, "target_lengths": [B]} (what nn.CTCLoss takes)."""
    lengths = torch.tensor([len(item["x"]) for item in items])
    x = torch.zeros(len(items), int(lengths.max()), items[0]["x"].shape[1])
    for i, item in enumerate(items):
        x[i, : lengths[i]] = item["x"]
    return {
        "video_id": [item["video_id"] for item in items],
        "x": x,
        "lengths": lengths,
        "label_ids": torch.tensor([g for item in items for g in item["label_ids"]], dtype=torch.long),
        "target_lengths": torch.tensor([len(item["label_ids"]) for item in items]),
    }
