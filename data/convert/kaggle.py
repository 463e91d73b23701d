"""Kaggle "Isolated Sign Language Recognition" landmark parquets -> corpus, split by participant."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.convert.common import BLOCK_COUNT, BLOCK_START, N_LANDMARKS, ConvertError, ConvertReport, finish_import, read_csv
from data.convert.splits import DEFAULT_FRACTIONS, check_fractions, signer_splits
from data.corpus import SampleRecord, atomic_save_npy, feature_path, update_manifest
from data.layout import COORDS, RAW_DIM

KAGGLE_COLUMNS = ("frame", "type", "landmark_index", "x", "y", "z")  # row_id is redundant and not needed
KAGGLE_CSV_COLUMNS = ("path", "participant_id", "sequence_id", "sign")


def read_kaggle_parquet(path) -> np.ndarray:
    """One Kaggle ISLR landmark file -> [T, 1629] float32 in the project layout, NaN where undetected.

    Rows are placed by (`type`, `landmark_index`), never by row order; frames are sorted by `frame`
    (T = number of distinct frame values). A landmark with any NaN coordinate is NaN as a whole.
    """
    import pandas as pd  # only this importer needs pandas/pyarrow

    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: no such file; check the path column of train.csv and the Kaggle directory")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # truncated download, not parquet at all
        raise ConvertError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc}); download it again") from None
    missing = [c for c in KAGGLE_COLUMNS if c not in df.columns]
    if missing:
        raise ConvertError(
            f"{path}: missing column(s) {missing} (has {list(df.columns)}); a Kaggle ISLR landmark file is long format "
            f"with columns frame,row_id,type,landmark_index,x,y,z, one row per landmark per frame"
        )
    if df.empty:
        raise ConvertError(f"{path}: no rows; the sequence has no frames, drop it from train.csv")

    types = df["type"].astype(str).to_numpy()
    start = np.full(len(df), -1, np.int64)
    count = np.zeros(len(df), np.int64)
    for name in BLOCK_START:
        sel = types == name
        start[sel], count[sel] = BLOCK_START[name], BLOCK_COUNT[name]
    if (start < 0).any():
        unknown = sorted(set(types[start < 0]))
        raise ConvertError(f"{path}: unknown landmark type(s) {unknown}; expected {sorted(BLOCK_START)}")
    index, frame = (_whole_numbers(path, df, name) for name in ("landmark_index", "frame"))
    bad = (index < 0) | (index >= count)
    if bad.any():
        i = int(np.argmax(bad))
        raise ConvertError(
            f"{path}: landmark_index {index[i]} out of range for type {types[i]!r} (0..{count[i] - 1}); "
            "the file is not MediaPipe Holistic output without iris refinement"
        )
    frames, frame_pos = np.unique(frame.astype(np.int64), return_inverse=True)
    slot = start + index
    key = frame_pos * N_LANDMARKS + slot
    if len(np.unique(key)) != len(key):
        raise ConvertError(f"{path}: the same (frame, type, landmark_index) appears twice; the file is corrupt, download it again")
    out = np.full((len(frames), N_LANDMARKS, COORDS), np.nan, np.float32)
    out[frame_pos, slot] = df[["x", "y", "z"]].to_numpy(np.float32)
    out[np.isnan(out).any(axis=-1)] = np.nan
    return out.reshape(len(frames), RAW_DIM)


def _whole_numbers(path: Path, df, column: str) -> np.ndarray:
    try:
        values = df[column].to_numpy(np.float64)
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if not np.isfinite(values).all() or (values % 1 != 0).any():
        raise ConvertError(f"{path}: column {column} has empty or non-integer values; it must hold whole numbers")
    return values.astype(np.int64)


def kaggle_to_corpus(kaggle_dir, out_dir, seed: int = 0, fractions=DEFAULT_FRACTIONS, report: ConvertReport | None = None) -> Path:
    """Import a Kaggle ISLR directory (train.csv + train_landmark_files/) into the corpus `out_dir`.

    id = `<participant_id>-<sequence_id>`, glosses = (sign.upper(),), signer = participant_id,
    split by participant (`signer_splits(seed, fractions)` over all participants in train.csv),
    fps left empty (the competition does not state it). Returns `out_dir`.
    """
    kaggle_dir, out_dir = Path(kaggle_dir), Path(out_dir)
    report = ConvertReport() if report is None else report
    rows = read_csv(kaggle_dir / "train.csv", KAGGLE_CSV_COLUMNS)
    split_of = signer_splits([r["participant_id"] for r in rows], seed=seed, fractions=fractions)
    records, seen = [], set()
    for line, row in enumerate(rows, start=2):
        sid = f"{row['participant_id']}-{row['sequence_id']}"
        sign = row["sign"].upper()
        if sid in seen:
            report.failed[sid] = f"train.csv line {line}: duplicate participant/sequence; remove the repeated line"
            continue
        seen.add(sid)
        if not sign or len(sign.split()) != 1:
            report.failed[sid] = f"train.csv line {line}: sign {row['sign']!r} is not one word; fix the sign column"
            continue
        try:
            raw = read_kaggle_parquet(kaggle_dir / row["path"])
        except ConvertError as exc:
            report.failed[sid] = str(exc)
            continue
        atomic_save_npy(out_dir / feature_path(sid), raw)
        records.append(SampleRecord(sid, split_of[row["participant_id"]], (sign,), feature_path(sid),
                                    signer=row["participant_id"], extra={"source": row["path"]}))
        report.converted.append(sid)
    if not records:
        raise ConvertError(f"{kaggle_dir}: nothing imported:\n{report.summary()}")
    update_manifest(out_dir, records)
    info = {"dataset": "kaggle_islr", "source": str(kaggle_dir.resolve()), "split_by": "signer", "seed": seed,
            "fractions": list(check_fractions(fractions))}
    return finish_import(out_dir, report, info)
