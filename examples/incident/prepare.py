"""Build the incident's corpus once: the project's small synthetic demo corpus, with the left
hand never detected in the train split (NaN in its 63 columns, x/y/z of 21 landmarks, in every
train file), as when the train recordings' framing cuts that hand off. Dev and test keep it.

This is tooling, not the user's training code: it may use the project (data.synthetic). The
corpus goes to examples/incident/.corpus/incident-v<VERSION>, written to a temporary directory
first and renamed into place, so a half-written corpus is never seen and parallel callers build
it at most a few times, never corrupt it.

    python examples/incident/prepare.py        # prints the corpus directory
"""
from __future__ import annotations

import csv
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

VERSION = 1
LEFT_HAND = slice(99, 162)  # after 33 pose landmarks * 3: left hand x/y/z of 21 landmarks
ROOT = Path(__file__).resolve().parent / ".corpus"


def _build(out: Path) -> None:
    from data.synthetic import SIZES, generate_corpus

    generate_corpus(out, seed=0, **SIZES["small"])
    for name in ("demo.json", ".demo.lock"):  # the generator's bookkeeping; its stats no longer hold
        (out / name).unlink(missing_ok=True)
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if row["split"] == "train":
            path = out / row["path"]
            x = np.load(path)
            x[:, LEFT_HAND] = np.nan  # undetected in every frame of every train sample
            np.save(path, x)
    (out / "README.txt").write_text(
        "Synthetic demo corpus (data.synthetic, seed 0, size small) with the left hand (columns 99:162)\n"
        "set to NaN in every train file. Built by examples/incident/prepare.py; safe to delete.\n",
        encoding="utf-8",
    )


def corpus_dir(root=None) -> Path:
    """The incident corpus directory (manifest.csv + features/*.npy), built on first call."""
    root = Path(root) if root is not None else ROOT
    final = root / f"incident-v{VERSION}"
    if (final / "manifest.csv").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        _build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "manifest.csv").is_file():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


if __name__ == "__main__":
    print(corpus_dir(sys.argv[1] if len(sys.argv) > 1 else None))
