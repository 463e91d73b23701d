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

Bad input never stops an import half-way: the file/line is recorded with the reason and the fix in
a `ConvertReport` (pass one in to see it), the rest is imported, `corpus.json` lists the failures,
and the CLI (`python -m data.convert ...`) prints the summary and exits with status 1.
An import with nothing importable raises ConvertError instead.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.corpus import (
    MANIFEST,
    SPLITS,
    SampleRecord,
    atomic_save_npy,
    atomic_write_bytes,
    atomic_write_text,
    load_features,
    read_manifest,
    update_manifest,
)
from data.layout import COORDS, FEATURE_DIM, LAYOUT, N_FACE, RAW_DIM

CORPUS_INFO = "corpus.json"
N_LANDMARKS = RAW_DIM // COORDS  # 543
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
PHOENIX_FPS = 25.0
FEATURES_DIR = "features"

# First landmark (not column) of each block in the project layout, and its landmark count.
_BLOCK_START = {name: block.start // COORDS for name, block, _ in LAYOUT.landmark_blocks}
_BLOCK_COUNT = {name: count for name, _, count in LAYOUT.landmark_blocks}


class ConvertError(ValueError):
    """Input that cannot be imported as it is; the message names the file/line and the fix."""


class IncompleteImportWarning(UserWarning):
    """Some input was not imported; the message lists what and why (also in corpus.json)."""


@dataclass
class ConvertReport:
    """What an import did. `failed` maps a sample id (or file) to the reason; `missing` lists
    labelled samples whose source (frame folder, .pose file) is absent."""

    converted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the corpus (extraction resumed)
    failed: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    missing_reason: dict[str, str] = field(default_factory=dict)  # id -> where the source was expected

    def add_missing(self, sample_id: str, reason: str) -> None:
        self.missing.append(sample_id)
        self.missing_reason[sample_id] = reason

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing

    def summary(self, show: int = 20) -> str:
        lines = [f"converted {len(self.converted)}, skipped {len(self.skipped)} (already present), "
                 f"failed {len(self.failed)}, missing source {len(self.missing)}"]
        for key, reason in list(self.failed.items())[:show]:
            lines.append(f"  FAILED {key}: {reason}")
        if len(self.failed) > show:
            lines.append(f"  ... and {len(self.failed) - show} more failures (all listed in {CORPUS_INFO})")
        for name in self.missing[:show]:
            reason = self.missing_reason.get(name)
            lines.append(f"  MISSING {name}: {reason}" if reason else f"  MISSING {name}")
        if len(self.missing) > show:
            lines.append(f"  ... and {len(self.missing) - show} more missing (all listed in {CORPUS_INFO})")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"converted": len(self.converted), "skipped": len(self.skipped),
                "failed": dict(self.failed), "missing": list(self.missing)}


def _finish(out_dir: Path, report: ConvertReport, info: dict) -> Path:
    """Write corpus.json (dataset name + import summary) and warn when something was not imported."""
    atomic_write_text(out_dir / CORPUS_INFO, json.dumps({**info, "import": report.as_dict()}, indent=2) + "\n")
    if not report.ok:
        warnings.warn(f"{out_dir}: import incomplete:\n{report.summary()}", IncompleteImportWarning, stacklevel=3)
    return out_dir


def _feature_path(sample_id: str) -> str:
    return f"{FEATURES_DIR}/{sample_id}.npy"


# ---------------------------------------------------------------------------- splits by signer


def _split_counts(n: int, fractions) -> list[int]:
    """Signers a split: largest-remainder rounding, then every split with a positive fraction
    gets at least one signer while another split can spare one (train first, then dev, test)."""
    raw = [n * f for f in fractions]
    counts = [int(np.floor(r)) for r in raw]
    by_remainder = sorted(range(3), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    for i in range(3):
        if fractions[i] > 0 and counts[i] == 0:
            # a donor can spare a signer if it keeps one, or if it is a lower-priority split
            # (train before dev before test): 2 signers end up in train and dev
            donors = [j for j in range(3) if j != i and (counts[j] > 1 or (counts[j] == 1 and j > i))]
            if donors:
                donor = max(donors, key=lambda j: (counts[j], j))
                counts[donor] -= 1
                counts[i] += 1
    return counts


def check_fractions(fractions) -> tuple[float, float, float]:
    """(train, dev, test) fractions, non-negative, train > 0; normalised to sum 1 (70/15/15 works)."""
    try:
        fr = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ConvertError(f"fractions {fractions!r}: give three numbers (train, dev, test), e.g. 0.7 0.15 0.15") from None
    if len(fr) != 3 or any(not np.isfinite(f) or f < 0 for f in fr) or fr[0] <= 0:
        raise ConvertError(f"fractions {fractions!r}: need three non-negative numbers (train, dev, test) with train > 0")
    total = sum(fr)
    return tuple(f / total for f in fr)


def signer_splits(signers, seed: int = 0, fractions=DEFAULT_FRACTIONS) -> dict[str, str]:
    """Assign each distinct signer to train/dev/test, so no signer is in two splits.

    Signers are shuffled with `seed` (same seed and signer set -> same assignment). With at least
    3 signers and positive fractions every split is non-empty; with 2 they go to train and dev,
    with 1 to train.
    """
    fr = check_fractions(fractions)
    unique = sorted({str(s) for s in signers})
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    counts = _split_counts(len(unique), fr)
    out, start = {}, 0
    for split, count in zip(SPLITS, counts):
        for signer in order[start : start + count]:
            out[signer] = split
        start += count
    return out


# ---------------------------------------------------------------------------- Kaggle ISLR parquet

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
    for name in _BLOCK_START:
        sel = types == name
        start[sel], count[sel] = _BLOCK_START[name], _BLOCK_COUNT[name]
    if (start < 0).any():
        unknown = sorted(set(types[start < 0]))
        raise ConvertError(f"{path}: unknown landmark type(s) {unknown}; expected {sorted(_BLOCK_START)}")
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


def _read_csv(path: Path, required, delimiter: str = ",") -> list[dict]:
    if not path.is_file():
        raise ConvertError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "|" else csv.QUOTE_MINIMAL)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise ConvertError(f"{path}: missing column(s) {missing} (header {header}); it needs {list(required)}, separated by {delimiter!r}")
        return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def kaggle_to_corpus(kaggle_dir, out_dir, seed: int = 0, fractions=DEFAULT_FRACTIONS, report: ConvertReport | None = None) -> Path:
    """Import a Kaggle ISLR directory (train.csv + train_landmark_files/) into the corpus `out_dir`.

    id = `<participant_id>-<sequence_id>`, glosses = (sign.upper(),), signer = participant_id,
    split by participant (`signer_splits(seed, fractions)` over all participants in train.csv),
    fps left empty (the competition does not state it). Returns `out_dir`.
    """
    kaggle_dir, out_dir = Path(kaggle_dir), Path(out_dir)
    report = ConvertReport() if report is None else report
    rows = _read_csv(kaggle_dir / "train.csv", KAGGLE_CSV_COLUMNS)
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
        atomic_save_npy(out_dir / _feature_path(sid), raw)
        records.append(SampleRecord(sid, split_of[row["participant_id"]], (sign,), _feature_path(sid),
                                    signer=row["participant_id"], extra={"source": row["path"]}))
        report.converted.append(sid)
    if not records:
        raise ConvertError(f"{kaggle_dir}: nothing imported:\n{report.summary()}")
    update_manifest(out_dir, records)
    info = {"dataset": "kaggle_islr", "source": str(kaggle_dir.resolve()), "split_by": "signer", "seed": seed,
            "fractions": list(check_fractions(fractions))}
    return _finish(out_dir, report, info)


# ---------------------------------------------------------------------------- pose-format .pose

# pose-format's MediaPipe Holistic component names -> project landmark blocks.
POSE_COMPONENTS = {
    "POSE_LANDMARKS": "pose",
    "FACE_LANDMARKS": "face",
    "LEFT_HAND_LANDMARKS": "left_hand",
    "RIGHT_HAND_LANDMARKS": "right_hand",
}


# Header versions pose-format 0.15.0 reads (pose_format/pose_body.py: read_v0_0 .. read_v0_2). They
# differ only in the body: v0.0 stores each frame with its people and per-person ids (fps and
# frame count as ushort), v0.1 all coordinates then all confidences (fps, frames, people ushort;
# pose-format ignores the frame count and divides the size), v0.2 the same with fps float32 and
# frames uint32. The header (version float32, width/height/depth, components) is the same in all.
POSE_VERSIONS = (0.0, 0.1, 0.2)
_POSE_REMAKE = "re-create it from its video: `video_to_pose --format mediapipe -i VIDEO.mp4 -o {name}` (pose-format's command)"


def _pose_format_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pose-format")
    except PackageNotFoundError:
        return "?"


def _known_pose_version(version: float) -> float | None:
    if version == 0.0:  # pose-format tests v0.0 exactly, the others rounded to 3 decimals
        return 0.0
    for known in POSE_VERSIONS[1:]:
        if round(version, 3) == known:
            return known
    return None


def check_pose_bytes(path: Path, buffer: bytes) -> float:
    """The header version of a .pose file's bytes, after checking they hold a whole file of it.

    Raises ConvertError naming the file, the version found and what to do for a file too short
    to be a .pose, one whose first 4 bytes are no known header version (garbage, or a version
    newer than the installed pose-format reads), a header cut short, and a body shorter than the
    frames its header announces (pose-format itself would fail there with a bare struct.error,
    or, for v0.1, silently read confidences from the wrong place).
    """
    import struct

    from pose_format.pose_header import PoseHeader
    from pose_format.utils.reader import BufferReader

    size, remake = len(buffer), _POSE_REMAKE.format(name=path.name)
    if size < 4:
        raise ConvertError(f"{path}: not a readable .pose file: {size} byte(s), too short for a pose-format header (it starts with a 4-byte version); {remake}")
    (version,) = struct.unpack_from("<f", buffer)
    known = _known_pose_version(version)
    if known is None:
        readable = ", ".join(f"{v:.1f}" for v in POSE_VERSIONS)
        if 0.3 <= round(version, 3) < 10.0 and round(version, 1) == round(version, 3):  # a plausible later version number
            raise ConvertError(
                f"{path}: not a readable .pose file: pose-format header version {version:.1f}, which the installed "
                f"pose-format {_pose_format_version()} cannot read (it reads {readable}); the file comes from a newer "
                "pose-format: install one that reads it (`pip install -U pose-format`) and import again"
            )
        raise ConvertError(
            f"{path}: not a readable .pose file: its first 4 bytes read as header version {version:.6g}, not one of {readable} "
            f"(garbage, or another format under a .pose name); check it is the right file, or {remake}"
        )
    reader = BufferReader(buffer)
    try:
        header = PoseHeader.read(reader)
    except Exception:  # struct.error / TypeError past the end, UnicodeDecodeError on garbage names
        raise ConvertError(
            f"{path}: not a readable .pose file: pose-format v{known:.1f} header cut short or corrupt ({size} bytes in all); the file was truncated "
            f"(an interrupted copy, download or write) or damaged: copy it again, or {remake}"
        ) from None
    _check_pose_body(path, header, known, buffer, reader.read_offset, remake)
    return known


def _check_pose_body(path: Path, header, version: float, buffer: bytes, offset: int, remake: str) -> None:
    import struct

    size = len(buffer)
    points = sum(len(c.points) for c in header.components)
    dims = max((len(c.format) for c in header.components), default=1) - 1
    short = f"{path}: not a readable .pose file: truncated: its pose-format v{version:.1f} body "
    fix = f"; the file was cut short (an interrupted copy, download or write): copy it again, or {remake}"
    if points == 0 or dims < 1:
        raise ConvertError(f"{path}: pose-format v{version:.1f} header with {points} point(s) of {dims} coordinate(s); nothing to import, drop this file")
    if version == 0.0:  # [ushort fps][ushort frames], each frame [ushort people], each person [short id] + components
        if size < offset + 4:
            raise ConvertError(f"{short}ends before its frame count ({size} bytes){fix}")
        _, frames = struct.unpack_from("<HH", buffer, offset)
        if frames == 0:
            raise ConvertError(f"{path}: pose-format v0.0 file with 0 frames; nothing to import, drop this file")
        person = 2 + 4 * sum(len(c.points) * len(c.format) for c in header.components)
        at = offset + 4
        for frame in range(frames):
            if size < at + 2:
                raise ConvertError(f"{short}announces {frames} frame(s), the data ends before frame {frame + 1} ({size} bytes){fix}")
            (people,) = struct.unpack_from("<H", buffer, at)
            at += 2 + people * person
            if at > size:
                raise ConvertError(f"{short}announces {frames} frame(s), the data ends inside frame {frame + 1} ({size} bytes){fix}")
        if len({len(c.format) for c in header.components}) > 1:
            raise ConvertError(
                f"{path}: not a readable .pose file: pose-format v0.0 file whose components have point formats of different lengths "
                f"({sorted({c.format for c in header.components})}), which pose-format {_pose_format_version()} cannot read; "
                "the importer needs every component in XYZC (MediaPipe Holistic)"
            )
        return
    if version == 0.1:  # [ushort fps][ushort frames][ushort people], then frames x people x points x (dims + 1) floats
        if size < offset + 6:
            raise ConvertError(f"{short}ends before its frame and people counts ({size} bytes){fix}")
        _, frames, people = struct.unpack_from("<HHH", buffer, offset)
        start = offset + 6
    else:  # 0.2: [float fps][uint frames][ushort people], then the same tensors
        if size < offset + 10:
            raise ConvertError(f"{short}ends before its frame and people counts ({size} bytes){fix}")
        _, frames, people = struct.unpack_from("<fIH", buffer, offset)
        start = offset + 10
    if people == 0:
        if version == 0.1 or frames == 0:
            raise ConvertError(f"{path}: pose-format v{version:.1f} file with 0 people ({frames} frame(s)); nothing to import, drop this file")
        return
    frame_bytes = people * points * (dims + 1) * 4
    left = size - start
    if version == 0.1:
        # the v0.1 frame count is a ushort (it wraps past 65535 frames): pose-format reads size // frame_bytes
        # frames; a size that is no whole number of frames, or disagrees with the count, is a cut file
        if left % frame_bytes or (left // frame_bytes) % 65536 != frames:
            raise ConvertError(
                f"{path}: not a readable .pose file: its pose-format v0.1 body does not match its header: it announces "
                f"{frames} frame(s) of {frame_bytes} bytes (coordinates, then confidences) but holds {left} bytes "
                f"({left / frame_bytes:.2f} frames); the file was cut short or damaged: copy it again, or {remake}"
            )
    elif left < frames * frame_bytes:
        raise ConvertError(f"{short}announces {frames} frame(s) ({frames * frame_bytes} bytes of landmarks) but holds {left} bytes{fix}")


def _read_pose(path: Path):
    from pose_format import Pose

    if not path.is_file():
        raise ConvertError(f"{path}: no such .pose file")
    buffer = path.read_bytes()
    version = check_pose_bytes(path, buffer)
    try:
        return Pose.read(buffer)
    except Exception as exc:  # layout checked above: what is left is a file pose-format itself rejects
        raise ConvertError(
            f"{path}: not a readable .pose file: pose-format {_pose_format_version()} cannot read this v{version:.1f} file ({type(exc).__name__}: {exc}); "
            f"re-save it with pose-format or {_POSE_REMAKE.format(name=path.name)}"
        ) from None


def _component_slots(path: Path, comp, block: str) -> tuple[np.ndarray, np.ndarray]:
    """(positions in the component, landmark ids in the block) of the points imported.

    Face points are named by their mesh index, so the 10 iris points (468-477) are dropped by id
    and reduced meshes (e.g. contours only) import with the other face landmarks NaN. Pose and
    hand components must be complete (pose-format writes them in MediaPipe's landmark order).
    """
    if block == "face":
        if not all(p.isdigit() for p in comp.points):
            raise ConvertError(f"{path}: FACE_LANDMARKS point names are not mesh indices; expected '0'..'467' (MediaPipe face mesh)")
        ids = np.array([int(p) for p in comp.points], dtype=np.int64)
        keep = ids < N_FACE
        return np.flatnonzero(keep), ids[keep]
    if len(comp.points) != _BLOCK_COUNT[block]:
        raise ConvertError(f"{path}: {comp.name} has {len(comp.points)} points, expected {_BLOCK_COUNT[block]} (complete MediaPipe output)")
    ids = np.arange(_BLOCK_COUNT[block])
    return ids, ids


def pose_to_array(path) -> np.ndarray:
    """A MediaPipe Holistic .pose file -> [T, 1629] float32 in the project layout (person 0).

    pose-format 0.15.0's holistic conversion stores x * width, y * height (pixels of
    header.dimensions) and z unscaled (MediaPipe's relative depth), so x, y are divided by the
    width/height and z is kept. Confidence 0 (or a masked point) -> NaN. The 10 refined iris
    points are dropped; POSE_WORLD_LANDMARKS and any other component are ignored.
    """
    return _pose_array_and_fps(Path(path))[0]


def _pose_array_and_fps(path: Path) -> tuple[np.ndarray, float]:
    pose = _read_pose(path)
    header = pose.header
    names = [c.name for c in header.components]
    absent = [n for n in POSE_COMPONENTS if n not in names]
    if absent:
        raise ConvertError(
            f"{path}: no component(s) {absent} (found {names}); expected a MediaPipe Holistic .pose "
            f"with {list(POSE_COMPONENTS)}, e.g. from pose-format's `video_to_pose --format mediapipe`"
        )
    width, height = header.dimensions.width, header.dimensions.height
    if width <= 0 or height <= 0:
        raise ConvertError(f"{path}: header dimensions {width}x{height}; x, y are pixels of the video size, which must be positive")
    data, conf = pose.body.data, np.asarray(np.ma.getdata(pose.body.confidence), dtype=np.float64)
    frames, people = data.shape[0], data.shape[1]
    if frames == 0:
        raise ConvertError(f"{path}: zero frames; drop this file")
    if data.shape[-1] < COORDS:
        raise ConvertError(f"{path}: {data.shape[-1]}-D points; the project needs x, y, z (point format XYZC)")
    out = np.full((frames, N_LANDMARKS, COORDS), np.nan, np.float64)
    if people > 0:
        values = np.array(np.ma.getdata(data[:, 0, :, :COORDS]), dtype=np.float64)
        absent_point = np.ma.getmaskarray(data[:, 0, :, :COORDS]).any(axis=-1) | ~(conf[:, 0] > 0)
        values[absent_point] = np.nan
        offset = 0  # components are stored one after the other along the points axis
        for comp in header.components:
            block = POSE_COMPONENTS.get(comp.name)
            if block is not None:
                src, dst = _component_slots(path, comp, block)
                out[:, _BLOCK_START[block] + dst] = values[:, offset + src]
            offset += len(comp.points)
    out[..., 0] /= width
    out[..., 1] /= height
    return out.reshape(frames, RAW_DIM).astype(np.float32), float(pose.body.fps)


LABEL_COLUMNS = ("id", "glosses")


def pose_files_to_corpus(paths, labels_csv, out_dir, seed: int = 0, fractions=DEFAULT_FRACTIONS,
                         report: ConvertReport | None = None) -> Path:
    """Import .pose files (or directories of them) labelled by `labels_csv` into the corpus `out_dir`.

    labels_csv: comma-separated, columns id,glosses (space-separated glosses) and optionally
    split, signer; `id` is the .pose file's stem. A row without a split is assigned by signer
    (`signer_splits(seed, fractions)`); a row with neither fails. fps comes from the file.
    Labelled ids without a file are reported as missing; files without a label row as failed.
    """
    out_dir, labels_csv = Path(out_dir), Path(labels_csv)
    report = ConvertReport() if report is None else report
    rows = _read_csv(labels_csv, LABEL_COLUMNS)
    labels = {}
    for line, row in enumerate(rows, start=2):
        if row["id"] in labels:
            raise ConvertError(f"{labels_csv}, line {line}: duplicate id {row['id']!r}; ids must be unique")
        labels[row["id"]] = (line, row)
    split_of = signer_splits([r["signer"] for r in rows if not r.get("split") and r.get("signer")], seed, fractions)

    files = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.pose")) if p.is_dir() else [p])
    found, records = set(), []
    for path in files:
        sid = path.stem
        if sid not in labels:
            report.failed[str(path)] = f"no row with id {sid!r} in {labels_csv}; add one (id,glosses[,split,signer])"
            continue
        if sid in found:
            report.failed[str(path)] = f"a second file with id {sid!r} among the inputs; rename one (ids are file stems)"
            continue
        found.add(sid)
        line, row = labels[sid]
        where = f"{labels_csv}, line {line}"
        split = row.get("split") or split_of.get(row.get("signer", ""), "")
        if split not in SPLITS:
            report.failed[sid] = (f"{where}: split {row.get('split')!r} unusable; give split as one of {SPLITS} "
                                  "or a signer so the split can be made by signer")
            continue
        glosses = tuple(row["glosses"].split())
        if not glosses:
            report.failed[sid] = f"{where}: empty glosses; write the space-separated gloss sequence"
            continue
        try:
            raw, fps = _pose_array_and_fps(path)
        except ConvertError as exc:
            report.failed[sid] = str(exc)
            continue
        atomic_save_npy(out_dir / _feature_path(sid), raw)
        records.append(SampleRecord(sid, split, glosses, _feature_path(sid), signer=row.get("signer", ""),
                                    fps=fps if fps > 0 else None))
        report.converted.append(sid)
    for sid in labels:
        if sid not in found:
            report.add_missing(sid, f"labelled in {labels_csv} but no {sid}.pose among the inputs; add the file or drop the row")
    if not records:
        raise ConvertError(f"{labels_csv}: nothing imported:\n{report.summary()}")
    update_manifest(out_dir, records)
    return _finish(out_dir, report, {"dataset": "pose_files", "labels": str(labels_csv.resolve())})


# ---------------------------------------------------------------------------- export to .pose


def array_to_pose(raw: np.ndarray, fps: float, width: int, height: int):
    """[T, 1629] (or [T, 6516], raw block used) landmarks -> pose_format.Pose, one person.

    Components are pose-format's holistic ones (POSE_LANDMARKS, FACE_LANDMARKS (468),
    LEFT_HAND_LANDMARKS, RIGHT_HAND_LANDMARKS, with their limbs/colours; no world landmarks), and
    coordinates are scaled as pose-format's holistic conversion does (x * width, y * height, z as
    is), so `pose_to_array` inverts it. A landmark with any NaN gets confidence 0 (missing).
    """
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import VERSION, PoseHeader, PoseHeaderDimensions
    from pose_format.utils.holistic import holistic_components  # imports mediapipe (~1 s)

    raw = np.asarray(raw)
    if raw.ndim != 2 or raw.shape[1] not in (RAW_DIM, FEATURE_DIM) or raw.shape[0] == 0:
        raise ConvertError(f"array_to_pose: shape {raw.shape}, expected [T>0, {RAW_DIM}] raw landmarks or [T, {FEATURE_DIM}] features")
    if not (width > 0 and height > 0 and fps > 0):
        raise ConvertError(f"array_to_pose: width {width}, height {height}, fps {fps}; all must be positive")
    frames = raw.shape[0]
    points = raw[:, :RAW_DIM].astype(np.float64).reshape(frames, N_LANDMARKS, COORDS)
    components = [c for c in holistic_components("XYZC") if c.name in POSE_COMPONENTS]
    order = np.concatenate([_BLOCK_START[POSE_COMPONENTS[c.name]] + np.arange(len(c.points)) for c in components])
    points = points[:, order]
    present = np.isfinite(points).all(axis=-1)
    scaled = points * np.array([width, height, 1.0])
    data = np.where(present[..., None], scaled, 0.0).astype(np.float32)[:, None]
    body = NumPyPoseBody(fps=float(fps), data=data, confidence=present.astype(np.float32)[:, None])
    header = PoseHeader(version=VERSION, dimensions=PoseHeaderDimensions(width=width, height=height, depth=0), components=components)
    return Pose(header, body)


def export_pose(corpus_dir, sample_id: str, out_path, fps: float | None = None, width: int | None = None,
                height: int | None = None) -> Path:
    """Write one corpus sample as a .pose file (atomic). Returns `out_path`.

    fps: argument, else the manifest's fps, else an error (pass fps). width/height: arguments,
    else the manifest's `width`/`height` columns if present, else 1000 x 1000 (pose-format's own
    default; only the drawing's aspect ratio depends on it).
    """
    corpus_dir, out_path = Path(corpus_dir), Path(out_path)
    records = {r.id: r for r in read_manifest(corpus_dir, validate=False)}
    if sample_id not in records:
        raise ConvertError(f"{corpus_dir / MANIFEST}: no sample with id {sample_id!r}; pick an id from the manifest")
    rec = records[sample_id]
    fps = fps or rec.fps
    if not fps:
        raise ConvertError(f"{corpus_dir / MANIFEST}: sample {sample_id!r} has no fps; pass fps (CLI: --fps)")

    def dim(value, column):
        try:
            return int(value or float(rec.extra.get(column) or 1000))
        except ValueError:
            raise ConvertError(f"{corpus_dir / MANIFEST}: sample {sample_id!r} {column} {rec.extra.get(column)!r} is not a number") from None

    raw = np.asarray(load_features(corpus_dir / rec.path, mmap=False))
    pose = array_to_pose(raw, fps, dim(width, "width"), dim(height, "height"))
    buf = io.BytesIO()
    pose.write(buf)
    atomic_write_bytes(out_path, buf.getvalue())
    return out_path


# ---------------------------------------------------------------------------- PHOENIX-2014 / 2014-T

PHOENIX_VARIANTS = {
    # variant: (columns the file must have, id column, frame-folder column, signer column, gloss column, dataset name)
    "2014": (("id", "folder", "signer", "annotation"), "id", "folder", "signer", "annotation", "phoenix2014"),
    "2014T": (("name", "video", "speaker", "orth"), "name", "video", "speaker", "orth", "phoenix2014T"),
}
PHOENIX_FRAME_DIR = "fullFrame-210x260px"


@dataclass(frozen=True)
class PhoenixLine:
    """One corpus-file line: `folder` is the frame folder relative to the split directory."""

    id: str
    split: str
    glosses: tuple[str, ...]
    signer: str
    folder: str
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def _check_variant(variant: str) -> tuple:
    if variant not in PHOENIX_VARIANTS:
        raise ConvertError(f"PHOENIX variant {variant!r}: use one of {list(PHOENIX_VARIANTS)}")
    return PHOENIX_VARIANTS[variant]


def read_phoenix_corpus(corpus_files_dir, variant: str = "2014", splits=SPLITS, limit: int | None = None) -> list[PhoenixLine]:
    """Parse `<split>.corpus.csv` files ('|'-separated) into PhoenixLine, the first `limit` lines a split.

    Glosses are the annotation/orth split on whitespace, unchanged (the official clean-up is a
    scoring concern). The folder column's trailing glob ('.../1/*.png', '.../*.png') is dropped.
    """
    columns, id_col, folder_col, signer_col, gloss_col, _ = _check_variant(variant)
    corpus_files_dir = Path(corpus_files_dir)
    out = []
    for split in splits:
        if split not in SPLITS:
            raise ConvertError(f"PHOENIX split {split!r}: use some of {SPLITS}")
        path = corpus_files_dir / f"{split}.corpus.csv"
        try:
            rows = _read_csv(path, columns, delimiter="|")
        except ConvertError as exc:
            other = [v for v in PHOENIX_VARIANTS if v != variant][0]
            raise ConvertError(f"{exc}; if this is PHOENIX-{other}, pass variant={other!r} (CLI: --variant {other})") from None
        for row in rows[:limit]:
            folder = Path(row[folder_col])
            if "*" in folder.name:
                folder = folder.parent
            extra = {"translation": row["translation"]} if "translation" in row else {}
            out.append(PhoenixLine(row[id_col], split, tuple(row[gloss_col].split()), row[signer_col], folder.as_posix(), extra))
    return out


def phoenix_split_dir(frames_root, split: str) -> Path | None:
    """The directory holding one split's frame folders, or None.

    Accepted roots: the directory containing fullFrame-210x260px/, its parent `features/` level,
    the release directory (phoenix-2014-multisigner/ or PHOENIX-2014-T/ inside), or the
    fullFrame-210x260px directory itself.
    """
    root = Path(frames_root)
    for base in (root, root / "features", root / "phoenix-2014-multisigner" / "features", root / "PHOENIX-2014-T" / "features"):
        if (base / PHOENIX_FRAME_DIR / split).is_dir():
            return base / PHOENIX_FRAME_DIR / split
    return root / split if (root / split).is_dir() and root.name == PHOENIX_FRAME_DIR else None


def _has_frames(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.png"))


def phoenix_to_corpus(corpus_files_dir, frames_root, out_dir, variant: str = "2014", workers: int | None = None,
                      splits=SPLITS, limit: int | None = None, report: ConvertReport | None = None) -> Path:
    """Extract PHOENIX frame folders with MediaPipe into the corpus `out_dir` (25 fps).

    Glosses, split and signer come from the corpus files. Lines whose frame folder is absent or
    has no PNG are reported by name in `report.missing` (and corpus.json); the rest are extracted
    by data.extract.extract_to_corpus (resumable: samples already in the corpus are skipped).
    corpus.json gets dataset=phoenix2014 (or phoenix2014T) so training can default to the
    PHOENIX clean-up for scoring. Returns `out_dir`.
    """
    from data.extract import ExtractJob, extract_to_corpus

    out_dir = Path(out_dir)
    report = ConvertReport() if report is None else report
    *_, dataset = _check_variant(variant)
    lines = read_phoenix_corpus(corpus_files_dir, variant, splits, limit)
    split_dirs = {s: phoenix_split_dir(frames_root, s) for s in splits}
    if not any(split_dirs.values()):
        raise ConvertError(
            f"{frames_root}: no {PHOENIX_FRAME_DIR}/<split> directory found (looked for {list(splits)} under it, its features/ "
            "and the release sub-directories); pass the directory that contains fullFrame-210x260px/ (or its features/ parent)"
        )
    jobs = []
    for ln in lines:
        split_dir = split_dirs[ln.split]
        folder = split_dir / ln.folder if split_dir else None
        if folder is None or not _has_frames(folder):
            where = folder or f"{frames_root} (no {PHOENIX_FRAME_DIR}/{ln.split} directory)"
            report.add_missing(ln.id, f"no PNG frames in {where}; unpack that folder or drop the line from {ln.split}.corpus.csv")
            continue
        if not ln.glosses:
            report.failed[ln.id] = f"{ln.split}.corpus.csv: empty annotation; the sample cannot be a CTC target"
            continue
        jobs.append(ExtractJob(id=ln.id, source=folder, split=ln.split, glosses=ln.glosses, signer=ln.signer,
                               fps=PHOENIX_FPS, extra=dict(ln.extra)))
    if not jobs:
        raise ConvertError(f"{frames_root}: no frame folder found for any of {len(lines)} corpus line(s):\n{report.summary()}")
    summary = extract_to_corpus(jobs, out_dir, workers=workers)
    report.converted.extend(summary.done)
    report.skipped.extend(summary.skipped)
    report.failed.update(summary.failed)
    # PHOENIX's official split is multi-signer: the same 9 signers in train, dev and test by design
    info = {"dataset": dataset, "variant": variant, "signer_split": "dependent", "corpus_files": str(Path(corpus_files_dir).resolve()),
            "frames_root": str(Path(frames_root).resolve()),
            "fps": PHOENIX_FPS}
    return _finish(out_dir, report, info)


# ---------------------------------------------------------------------------- statistics


def gloss_statistics(corpus_dir) -> dict:
    """Gloss-level statistics of a corpus (manifest only, no feature file is read).

    Returns {"samples": {split: n}, "signers": {split: n distinct}, "shared_signers": [signers in
    more than one split], "tokens": {split: n}, "vocabulary_size": distinct train glosses,
    "sentence_length": {split: {"min", "median", "max", "mean"} or None if empty},
    "oov_rate": {"dev"/"test": fraction of tokens not in the train vocabulary, None if empty},
    "oov_glosses": {"dev"/"test": distinct such glosses}}. Rows with an unknown split are ignored.
    """
    return records_statistics(read_manifest(corpus_dir, validate=False))


def records_statistics(records) -> dict:
    """gloss_statistics of any records with .split, .glosses and .signer (a manifest's, or a user dataset's)."""
    by_split = {s: [r for r in records if r.split == s] for s in SPLITS}
    vocab = {g for r in by_split["train"] for g in r.glosses}
    signer_sets = {s: {r.signer for r in recs if r.signer} for s, recs in by_split.items()}
    stats = {
        "samples": {s: len(recs) for s, recs in by_split.items()},
        "signers": {s: len(signer_sets[s]) for s in SPLITS},
        "shared_signers": sorted(g for g in set().union(*signer_sets.values()) if sum(g in v for v in signer_sets.values()) > 1),
        "tokens": {s: sum(len(r.glosses) for r in recs) for s, recs in by_split.items()},
        "vocabulary_size": len(vocab),
        "sentence_length": {},
        "oov_rate": {},
        "oov_glosses": {},
    }
    for s, recs in by_split.items():
        lengths = [len(r.glosses) for r in recs]
        stats["sentence_length"][s] = (
            {"min": min(lengths), "median": float(statistics.median(lengths)), "max": max(lengths),
             "mean": float(np.mean(lengths))} if lengths else None
        )
    for s in ("dev", "test"):
        tokens = [g for r in by_split[s] for g in r.glosses]
        oov = [g for g in tokens if g not in vocab]
        stats["oov_rate"][s] = len(oov) / len(tokens) if tokens else None
        stats["oov_glosses"][s] = len(set(oov))
    return stats


# ---------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data.convert", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    k = sub.add_parser("kaggle", help="Kaggle ISLR directory (train.csv + train_landmark_files/)")
    k.add_argument("kaggle_dir")
    k.add_argument("--seed", type=int, default=0, help="seed of the split by participant")
    k.add_argument("--fractions", type=float, nargs=3, default=DEFAULT_FRACTIONS, metavar=("TRAIN", "DEV", "TEST"))

    po = sub.add_parser("pose", help=".pose files or directories of them, labelled by a CSV")
    po.add_argument("paths", nargs="+")
    po.add_argument("--labels", required=True, help="CSV with columns id,glosses[,split,signer]; id = file stem")
    po.add_argument("--seed", type=int, default=0, help="seed of the split by signer for rows without a split")
    po.add_argument("--fractions", type=float, nargs=3, default=DEFAULT_FRACTIONS, metavar=("TRAIN", "DEV", "TEST"))

    ph = sub.add_parser("phoenix", help="PHOENIX-2014 / 2014-T corpus files + frame folders (runs MediaPipe)")
    ph.add_argument("corpus_files_dir", help="directory with {train,dev,test}.corpus.csv")
    ph.add_argument("frames_root", help="directory containing fullFrame-210x260px/ (or its features/ parent)")
    ph.add_argument("--variant", choices=list(PHOENIX_VARIANTS), default="2014")
    ph.add_argument("--workers", type=int, default=None)
    ph.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    ph.add_argument("--limit", type=int, default=None, help="first N lines of each split only")

    ex = sub.add_parser("export-pose", help="write one corpus sample as a .pose file")
    ex.add_argument("corpus_dir")
    ex.add_argument("sample_id")
    ex.add_argument("--fps", type=float, default=None)
    ex.add_argument("--width", type=int, default=None)
    ex.add_argument("--height", type=int, default=None)

    st = sub.add_parser("stats", help="gloss statistics of a corpus, as JSON")
    st.add_argument("corpus_dir")

    from data import sentences as sn

    se = sub.add_parser("sentences", help="continuous sentences from a corpus of isolated clips, split by signer (data/sentences.py)")
    se.add_argument("source_corpus", help="corpus of isolated signs with a signer column (e.g. the kaggle importer's output)")
    se.add_argument("--lengths", default="%d-%d" % sn.DEFAULT_LENGTHS, help="signs a sentence, a range (default %(default)s)")
    se.add_argument("--sizes", type=int, nargs=3, default=list(sn.DEFAULT_SIZES), metavar=("TRAIN", "DEV", "TEST"), help="sentences a split")
    se.add_argument("--seed", type=int, default=0, help="seed of the signer split and the sentences")
    se.add_argument("--fractions", type=float, nargs=3, default=sn.DEFAULT_FRACTIONS, metavar=("TRAIN", "DEV", "TEST"),
                    help="signers a split (default 0.6 0.2 0.2: 13/4/4 of 21)")
    se.add_argument("--keep-splits", dest="keep_splits", action="store_true", help="keep the source's signer split instead")
    se.add_argument("--transition", default="%d-%d" % sn.DEFAULT_TRANSITION, help="frames between two clips, a range (default %(default)s)")

    for s in (k, po, ph, ex, se):
        s.add_argument("--out", required=True, help="corpus directory (export-pose: the .pose file)")
    return p


def main(argv=None) -> int:
    """CLI entry point. Exit status: 0 all imported, 1 some input failed or missing, 2 nothing usable."""
    args = _parser().parse_args(argv)
    report = ConvertReport()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IncompleteImportWarning)  # the summary printed below says the same
            if args.command == "kaggle":
                kaggle_to_corpus(args.kaggle_dir, args.out, seed=args.seed, fractions=args.fractions, report=report)
            elif args.command == "pose":
                pose_files_to_corpus(args.paths, args.labels, args.out, seed=args.seed, fractions=args.fractions, report=report)
            elif args.command == "phoenix":
                phoenix_to_corpus(args.corpus_files_dir, args.frames_root, args.out, variant=args.variant,
                                  workers=args.workers, splits=tuple(args.splits), limit=args.limit, report=report)
            elif args.command == "sentences":
                from data.sentences import build_sentences

                build_sentences(args.source_corpus, args.out, lengths=args.lengths, sizes=args.sizes, seed=args.seed,
                                fractions=args.fractions, transition=args.transition, keep_splits=args.keep_splits, report=report)
            elif args.command == "export-pose":
                print(export_pose(args.corpus_dir, args.sample_id, args.out, fps=args.fps, width=args.width, height=args.height))
                return 0
            else:
                print(json.dumps(gloss_statistics(args.corpus_dir), indent=2))
                return 0
    except ValueError as exc:  # ConvertError, CorpusError: the message names the input and the fix
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary(), file=sys.stderr if not report.ok else sys.stdout)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
