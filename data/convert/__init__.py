"""Importers from public sign-language data formats into the project corpus, and a .pose exporter.

Every importer writes `features/<id>.npy` ([T, 1629] float32 raw landmarks, NaN for every
landmark that was not detected, all three coordinates), merges rows into `manifest.csv`
(data.corpus.update_manifest, so re-running replaces rows instead of duplicating them) and
records what was imported in `corpus.json` next to the manifest (atomic).

Formats:

- Kaggle "Isolated Sign Language Recognition" landmark parquets (`kaggle_to_corpus`,
  `read_kaggle_parquet`). The sign becomes a one-gloss sequence, upper-cased ("hello" -> "HELLO")
  so it reads like a gloss; splits are made by participant (no signer in two splits).
- pose-format `.pose` files made by MediaPipe Holistic (`pose_files_to_corpus`, `pose_to_array`),
  labelled by a CSV `id,glosses[,split,signer]`; header versions 0.0, 0.1 and 0.2 (all that
  pose-format 0.15.0 reads). A file cut short, garbage under a .pose name or a newer version is
  reported naming the file, the version found and what to do (`check_pose_bytes`).
- RWTH-PHOENIX-Weather 2014 / 2014-T frame folders (`phoenix_to_corpus`), run through MediaPipe by
  data.extract.
- Export: `array_to_pose` / `export_pose` write a .pose with the holistic component names of
  pose-format, so its viewers and tools open the project's samples.
- Continuous sentences from a corpus of isolated clips (`build_sentences`), split by signer.

One module a format (kaggle.py, pose.py, phoenix.py, sentences.py); the split by signer in
splits.py, gloss statistics in stats.py, what they share (errors, ConvertReport, corpus.json) in
common.py, the command in __main__.py.

Bad input never stops an import half-way: the file/line is recorded with the reason and the fix in
a `ConvertReport` (pass one in to see it), the rest is imported, `corpus.json` lists the failures,
and the CLI (`python -m data.convert ...`) prints the summary and exits with status 1.
An import with nothing importable raises ConvertError instead.
"""
from __future__ import annotations

from data.convert.common import ConvertError, ConvertReport, IncompleteImportWarning
from data.convert.kaggle import kaggle_to_corpus, read_kaggle_parquet
from data.convert.phoenix import PhoenixLine, phoenix_split_dir, phoenix_to_corpus, read_phoenix_corpus
from data.convert.pose import POSE_VERSIONS, array_to_pose, check_pose_bytes, export_pose, pose_files_to_corpus, pose_to_array
from data.convert.sentences import SentenceError, build_sentences
from data.convert.splits import DEFAULT_FRACTIONS, check_fractions, signer_splits
from data.convert.stats import gloss_statistics, records_statistics

__all__ = [
    "DEFAULT_FRACTIONS", "POSE_VERSIONS", "ConvertError", "ConvertReport", "IncompleteImportWarning", "PhoenixLine", "SentenceError",
    "array_to_pose", "build_sentences", "check_fractions", "check_pose_bytes", "export_pose", "gloss_statistics", "kaggle_to_corpus",
    "phoenix_split_dir", "phoenix_to_corpus", "pose_files_to_corpus", "pose_to_array", "read_kaggle_parquet", "read_phoenix_corpus",
    "records_statistics", "signer_splits",
]
