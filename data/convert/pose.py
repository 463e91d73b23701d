"""pose-format `.pose` files of MediaPipe Holistic: import (header versions 0.0, 0.1, 0.2) and export."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from data.convert.common import BLOCK_COUNT, BLOCK_START, N_LANDMARKS, ConvertError, ConvertReport, finish_import, read_csv
from data.convert.splits import DEFAULT_FRACTIONS, signer_splits
from data.corpus import MANIFEST, SPLITS, SampleRecord, atomic_save_npy, atomic_write_bytes, feature_path, load_features, read_manifest, update_manifest
from data.layout import COORDS, FEATURE_DIM, N_FACE, RAW_DIM

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
    if len(comp.points) != BLOCK_COUNT[block]:
        raise ConvertError(f"{path}: {comp.name} has {len(comp.points)} points, expected {BLOCK_COUNT[block]} (complete MediaPipe output)")
    ids = np.arange(BLOCK_COUNT[block])
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
                out[:, BLOCK_START[block] + dst] = values[:, offset + src]
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
    rows = read_csv(labels_csv, LABEL_COLUMNS)
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
        atomic_save_npy(out_dir / feature_path(sid), raw)
        records.append(SampleRecord(sid, split, glosses, feature_path(sid), signer=row.get("signer", ""),
                                    fps=fps if fps > 0 else None))
        report.converted.append(sid)
    for sid in labels:
        if sid not in found:
            report.add_missing(sid, f"labelled in {labels_csv} but no {sid}.pose among the inputs; add the file or drop the row")
    if not records:
        raise ConvertError(f"{labels_csv}: nothing imported:\n{report.summary()}")
    update_manifest(out_dir, records)
    return finish_import(out_dir, report, {"dataset": "pose_files", "labels": str(labels_csv.resolve())})


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
    order = np.concatenate([BLOCK_START[POSE_COMPONENTS[c.name]] + np.arange(len(c.points)) for c in components])
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
