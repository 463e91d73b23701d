"""Videos / frame folders -> a corpus of MediaPipe Holistic landmarks ([T, 1629] float32 a sample).

    python -m data.extract INPUT... --out CORPUS [--split train] [--labels FILE] [--workers N]
                           [--model-complexity 1] [--shard K/N]
    python -m data.extract --merge SHARD_DIR... --out CORPUS

Inputs
    A video file is one sample (id = file stem). A directory is searched recursively: every
    video in it is one sample, and every folder whose files are images is ONE sample (its frames
    in natural order, 'img2.png' before 'img10.png'; id = folder name). PHOENIX-2014 keeps a
    sentence's frames in `<sentence>/1/`; a folder named only by digits therefore takes its
    parent's name as id. Two inputs with the same id are an error naming both paths.

Landmarks
    One new `mp.solutions.holistic.Holistic(static_image_mode=False, model_complexity,
    refine_face_landmarks=False)` a sample, so tracking state never leaks from one sample into
    the next. Each frame becomes a row in the layout of data/layout.py (pose 33 | left hand 21 |
    right hand 21 | face 468, x y z consecutive), NaN for every coordinate of a part MediaPipe
    did not find in that frame. Hands keep MediaPipe's labels, nothing is swapped:
    `left_hand_landmarks` (the hand Holistic finds at the pose's left wrist, landmark 15) goes
    to the left-hand block. For an unmirrored recording that is the signer's own left hand; a
    mirrored (selfie-style) recording has its labels mirrored too.

Corpus
    Features go to CORPUS/features/<id>.npy (atomic writes); manifest rows are merged into
    CORPUS/manifest.csv as samples finish (every few samples and at the end), so an interrupted
    run keeps its work. A re-run skips every sample that is in the manifest and whose feature
    file exists; a re-run with --labels updates glosses/split/signer of those rows without
    extracting again. fps comes from the video container; it stays empty for image folders.

Labels
    --labels FILE: CSV, TSV or '|'-separated, columns id (the sample id: file stem or folder
    name), glosses (space-separated), split and signer optional. The PHOENIX corpus files are
    read as they are (id|folder|signer|annotation and name|video|...|speaker|orth|...).
    Without labels the glosses column stays EMPTY (an id is not a gloss) and a warning says the
    corpus needs labels before training; the harness reports empty glosses as a failure.

Messages
    MediaPipe's native INFO/WARNING log lines (absl and TFLite, a dozen a sample) are filtered off
    stderr, in this process and in the worker processes; every other line written there (native
    errors, OpenCV's complaints, Python's) is kept and prefixed with the path of the sample being
    extracted. CSLR_MEDIAPIPE_LOGS=1 shows MediaPipe's log unfiltered.

Sharding
    --shard K/N (K = 1..N) keeps the samples whose id hashes (SHA-1, stable across runs and
    machines) to shard K. Give every shard its own --out (one manifest has one writer), then
    combine them with --merge.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import filecmp
import hashlib
import io
import itertools
import multiprocessing
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager, nullcontext
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from data.corpus import (
    MANIFEST,
    SPLITS,
    CorpusError,
    SampleRecord,
    atomic_copy,
    atomic_save_npy,
    path_inside,
    read_manifest,
    update_manifest,
)
from data.layout import COORDS, LAYOUT, N_FACE, N_HAND, N_POSE, RAW_DIM

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
FEATURES_DIR = "features"
FLUSH_EVERY = 8  # manifest rows written after this many finished samples ...
FLUSH_SECONDS = 30.0  # ... or after this long, whichever comes first

# (Holistic result attribute, columns in the raw row, landmarks kept) in layout order
_PARTS = (
    ("pose_landmarks", LAYOUT.pose, N_POSE),
    ("left_hand_landmarks", LAYOUT.left_hand, N_HAND),
    ("right_hand_landmarks", LAYOUT.right_hand, N_HAND),
    ("face_landmarks", LAYOUT.face, N_FACE),  # 478 with iris refinement: the first 468 are the mesh
)


class ExtractError(ValueError):
    """An input that cannot be extracted; the message names the file and what to do."""


@dataclass
class ExtractJob:
    """One sample to extract: `source` is a video file or a folder of frame images."""

    id: str
    source: Path
    split: str = "train"
    glosses: tuple[str, ...] = ()
    signer: str = ""
    fps: float | None = None  # None: taken from the video container (stays empty for frame folders)
    extra: dict = field(default_factory=dict)  # extra manifest columns, written as they are


@dataclass
class ExtractSummary:
    done: list[str]
    skipped: list[str]
    failed: dict[str, str]  # id -> reason
    relabelled: list[str] = field(default_factory=list)  # skipped samples whose manifest row got new labels

    def report(self) -> str:
        relabelled = f"; labels updated for {len(self.relabelled)}" if self.relabelled else ""
        lines = [f"extracted {len(self.done)}, skipped {len(self.skipped)} (already in the corpus{relabelled}), failed {len(self.failed)}"]
        lines += [f"  FAILED {sid}: {reason}" for sid, reason in sorted(self.failed.items())]
        return "\n".join(lines)


# ---------------------------------------------------------------------------- reading frames


def natural_key(name: str) -> list:
    """Sort key putting 'img2.png' before 'img10.png' (digit runs compare as numbers)."""
    # re.split with a group alternates text, number, text, ...: positions always hold the same type
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", name))]


def _visible_files(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:  # DirEntry.is_file needs no extra stat call: cheap on big trees
        return [folder / e.name for e in entries if e.is_file() and not e.name.startswith(".")]


def image_files(folder: Path) -> list[Path]:
    """The frame images of a folder in natural order."""
    return sorted((p for p in _visible_files(folder) if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))


def read_frames(source: Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video file or of a folder of images, each [H, W, 3] uint8 BGR.

    Raises ExtractError (naming the file) for a missing path, a file OpenCV cannot open as a
    video, a folder without images, or an image that cannot be decoded. A video that opens but
    decodes to nothing yields nothing; `extract_sample` reports that.
    """
    source = Path(source)
    if source.is_dir():
        frames = image_files(source)
        if not frames:
            raise ExtractError(f"{source}: folder has no image files ({', '.join(sorted(IMAGE_SUFFIXES))}); point to a video or a folder of frames")
        for path in frames:
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise ExtractError(f"{path}: cannot decode this image (corrupt or not an image); replace or delete it, then re-run")
            yield frame
        return
    if not source.is_file():
        raise ExtractError(f"{source}: no such file or folder; check the path")
    capture = cv2.VideoCapture(str(source))
    try:
        if not capture.isOpened():
            raise ExtractError(
                f"{source}: OpenCV cannot open this as a video (corrupt, truncated, or not a video); "
                "check it plays, or re-encode it (e.g. to H.264 MP4)"
            )
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def video_fps(source: Path) -> float | None:
    """Frames per second stored in a video container; None for folders or when unknown."""
    source = Path(source)
    if not source.is_file():
        return None
    capture = cv2.VideoCapture(str(source))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    finally:
        capture.release()
    return float(fps) if np.isfinite(fps) and fps > 0 else None


# ---------------------------------------------------------------------------- MediaPipe's native log

# MediaPipe's C++ code logs through absl (and TFLite through its own logger) straight to file
# descriptor 2: per Holistic start "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", the
# absl::InitializeLog notice, eight "Feedback manager requires a model with a single signature
# inference" warnings and a NORM_RECT one, i.e. hundreds of lines a run around the progress bar.
# None of GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL or absl's Python logging reaches that logger
# (measured with mediapipe 0.10.21), so fd 2 itself is filtered: it is pointed at a pipe read by a
# small separate process that drops the INFO/WARNING lines of those loggers and passes every
# other line on (errors, fatal messages, OpenCV's, Python's), prefixed with the sample being
# extracted. Being another process, it still passes on a fatal message written just before a
# native crash. CSLR_MEDIAPIPE_LOGS=1 turns the filter off.
SHOW_NATIVE_LOGS_ENV = "CSLR_MEDIAPIPE_LOGS"
NATIVE_NOISE = (
    r"[IW]\d{4,8} \d\d:\d\d:\d+\.\d+ +\d+ [^\s:\]]+:\d+\] "  # absl / glog INFO and WARNING (E and F are kept)
    r"|INFO: "  # TFLite's INFO lines ("Created TensorFlow Lite XNNPACK delegate for CPU.")
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
)
_SAMPLE_MARK = b"\x00cslr-sample:"  # a line telling the filter which sample the next lines belong to (as in _FILTER_SOURCE)
_FILTER_SOURCE = r"""
import re, sys
noise, mark, label = re.compile(sys.argv[1].encode()), b"\x00cslr-sample:", b""
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    if line.startswith(mark):
        label = line[len(mark):].rstrip(b"\n")
    elif not noise.match(line):
        out.write(label + b": " + line if label and line.strip() else line)
        out.flush()
"""
_filter_lock = threading.Lock()
_filter: dict = {"depth": 0, "proc": None, "saved": None, "real": None}


def native_noise(line: str) -> bool:
    """True for a line of MediaPipe's native INFO/WARNING log (what the filter drops)."""
    return re.match(NATIVE_NOISE, line) is not None


def _start_filter():
    """Point fd 2 at a filter process writing to the current fd 2. Returns (process, saved fd 2) or None."""
    if os.environ.get(SHOW_NATIVE_LOGS_ENV, "").strip() not in ("", "0"):
        return None
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to filter
        return None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER_SOURCE, NATIVE_NOISE],
            stdin=subprocess.PIPE, stdout=saved, start_new_session=True,  # own session: Ctrl+C does not kill it
        )
    except OSError:
        os.close(saved)
        return None
    os.dup2(proc.stdin.fileno(), 2)
    proc.stdin.close()  # fd 2 is now the only write end held here
    return proc, saved


def filter_native_logs_of_this_process() -> None:
    """Filter fd 2 until this process ends (extraction worker processes; quiet_native_logs() nests inside)."""
    with _filter_lock:
        if _filter["proc"] is None:
            started = _start_filter()
            if started is not None:
                proc, saved = started
                real = os.fdopen(saved, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
                _filter.update(proc=proc, saved=None, real=real)
                _filter["depth"] += 1  # never released: the filter ends when this process's fd 2 closes


def _mark_sample(label: str) -> None:
    """Tell the filter (if fd 2 goes through one) that the lines which follow belong to `label`."""
    if _filter["proc"] is not None:
        try:
            os.write(2, _SAMPLE_MARK + label.replace("\n", " ").encode("utf-8", "replace") + b"\n")
        except OSError:
            pass


@contextmanager
def quiet_native_logs():
    """Filter MediaPipe's native INFO/WARNING lines off fd 2 in this block; yields a text stream to the
    unfiltered stderr (for a progress bar). Nested and concurrent blocks share one filter."""
    with _filter_lock:
        if _filter["depth"] == 0:
            started = _start_filter()
            if started is not None:
                proc, saved = started
                real = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
                _filter.update(proc=proc, saved=saved, real=real)
        _filter["depth"] += 1
        real = _filter["real"] or sys.stderr
    try:
        yield real
    finally:
        with _filter_lock:
            _filter["depth"] -= 1
            if _filter["depth"] == 0 and _filter["proc"] is not None:
                proc, saved, real = _filter["proc"], _filter["saved"], _filter["real"]
                _filter.update(proc=None, saved=None, real=None)
                try:
                    sys.stderr.flush()
                except (AttributeError, OSError, ValueError):
                    pass
                real.close()
                os.dup2(saved, 2)  # the pipe's last write end here closes: the filter drains and exits
                os.close(saved)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:  # a child still holds the pipe; it ends with that child
                    pass


# ---------------------------------------------------------------------------- landmarks


def new_holistic(model_complexity: int = 1):
    """A fresh MediaPipe Holistic in video mode (tracking across frames), no iris refinement."""
    import mediapipe as mp  # imported here: ~1 s, and only extraction needs it

    if model_complexity not in (0, 1, 2):
        raise ExtractError(f"model_complexity must be 0, 1 or 2, got {model_complexity!r}")
    try:
        return mp.solutions.holistic.Holistic(static_image_mode=False, model_complexity=model_complexity, refine_face_landmarks=False)
    except Exception as exc:  # complexity 0/2 download their pose model on first use
        raise ExtractError(
            f"MediaPipe Holistic with model_complexity={model_complexity} could not start ({type(exc).__name__}: {exc}); "
            "only model_complexity=1 ships inside the mediapipe wheel, the others are downloaded on first use (needs network)"
        ) from None


def landmarks_to_row(results) -> np.ndarray:
    """One frame of a Holistic result -> [1629] float32 in the data/layout.py order, NaN for undetected parts."""
    row = np.full(RAW_DIM, np.nan, dtype=np.float32)
    for attr, columns, count in _PARTS:
        found = getattr(results, attr, None)
        if found is None:
            continue
        points = found.landmark
        if len(points) < count:
            raise ExtractError(f"MediaPipe returned {len(points)} {attr}, expected {count}")
        row[columns] = np.array([(p.x, p.y, p.z) for p in points[:count]], dtype=np.float32).reshape(count * COORDS)
    return row


def extract_sample(source: Path, model_complexity: int = 1) -> np.ndarray:
    """Landmarks of every frame of a video or frame folder: [T, 1629] float32, NaN where not detected.

    Raises ExtractError for unreadable input and for input with zero decodable frames.
    """
    frames = read_frames(Path(source))
    first = next(frames, None)  # read before starting MediaPipe, so bad input fails fast
    if first is None:
        raise ExtractError(f"{source}: no decodable frames (empty or broken video); re-encode or drop it")
    rows = []
    with new_holistic(model_complexity) as holistic:
        for frame in itertools.chain([first], frames):
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # OpenCV decodes BGR, MediaPipe expects RGB
            rgb.flags.writeable = False  # lets MediaPipe wrap the buffer without copying it
            rows.append(landmarks_to_row(holistic.process(rgb)))
    return np.stack(rows)


# ---------------------------------------------------------------------------- discovering samples


def _folder_id(folder: Path) -> str:
    # PHOENIX-2014 stores a sentence as <sentence>/1/*.png: the digit folder is a camera index
    return folder.parent.name if folder.name.isdigit() and folder.parent.name else folder.name


def _sources_in(root: Path) -> list[tuple[str, Path]]:
    """(id, source) of every video and image folder under `root` (recursive, hidden entries skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=natural_key)
        files = sorted((f for f in filenames if not f.startswith(".")), key=natural_key)
        videos = [f for f in files if Path(f).suffix.lower() in VIDEO_SUFFIXES]
        has_images = any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files)
        folder = Path(dirpath)
        if videos and has_images:
            raise ExtractError(
                f"{folder}: holds both videos and images, so it is unclear whether the images are a sample; "
                "move the videos or the images into their own folder"
            )
        found += [(Path(v).stem, folder / v) for v in videos]
        if has_images:
            found.append((_folder_id(folder), folder))
    return found


def discover_jobs(inputs: list[Path], split: str = "train", labels: dict | None = None) -> list[ExtractJob]:
    """One ExtractJob a sample found in `inputs` (video files, folders of videos, frame folders).

    `labels` (from read_labels) gives glosses, signer and split by id; a label's split wins over
    `split`. Samples without a label get empty glosses. Raises ExtractError for a missing input,
    an input with no samples, or two samples with the same id (naming both paths).
    """
    if split not in SPLITS:
        raise ExtractError(f"split must be one of {SPLITS}, got {split!r}")
    labels = labels or {}
    sources: dict[str, Path] = {}
    for given in map(Path, inputs):
        if given.is_dir():
            found = _sources_in(given)
            if not found:
                raise ExtractError(f"{given}: no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) or image folders found in it")
        elif given.is_file():
            if given.suffix.lower() in IMAGE_SUFFIXES:
                raise ExtractError(f"{given}: a single image is not a sample; pass the folder holding the frames")
            found = [(given.stem, given)]  # any other file is tried as a video; OpenCV judges it
        else:
            raise ExtractError(f"{given}: no such file or folder; check the path")
        for sid, source in found:
            previous = sources.get(sid)
            if previous is not None and previous.resolve() != source.resolve():
                raise ExtractError(f"sample id {sid!r} is used twice: {previous} and {source}; rename one (ids must be unique)")
            sources[sid] = source
    jobs = []
    for sid, source in sources.items():
        label = labels.get(sid, {})
        job_split = label.get("split") or split
        if job_split not in SPLITS:
            raise ExtractError(f"labels give sample {sid!r} the split {job_split!r}; use one of {SPLITS}")
        jobs.append(ExtractJob(sid, source, job_split, tuple(label.get("glosses", ())), label.get("signer", "")))
    return jobs


# Column names accepted in label files, first match wins (the PHOENIX exports use the later ones).
_LABEL_COLUMNS = {
    "id": ("id", "name"),
    "glosses": ("glosses", "gloss", "annotation", "orth"),
    "split": ("split",),
    "signer": ("signer", "speaker"),
}


def read_labels(path) -> dict[str, dict]:
    """Read a label table: id -> {"glosses": tuple[str, ...], "split": str ("" if absent), "signer": str}.

    CSV, TSV or '|'-separated (detected from the header line) with a header naming at least the
    id and glosses columns (aliases: name; annotation/orth; speaker). Raises ExtractError naming
    the file and line for a missing column or a duplicate id.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ExtractError(f"{path}: cannot read the labels file ({exc})") from None
    header = text.splitlines()[0] if text.strip() else ""
    delimiter = max("\t|,;", key=header.count)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    column = {key: next((c for c in names if c in fields), None) for key, names in _LABEL_COLUMNS.items()}
    if column["id"] is None or column["glosses"] is None:
        raise ExtractError(f"{path}: header {fields} needs an 'id' column (the file stem or folder name) and a 'glosses' column (space-separated)")
    reader.fieldnames = fields
    labels: dict[str, dict] = {}
    for line, row in enumerate(reader, start=2):
        sid = (row.get(column["id"]) or "").strip()
        if not sid:
            raise ExtractError(f"{path}, line {line}: empty id")
        if sid in labels:
            raise ExtractError(f"{path}, line {line}: id {sid!r} appears twice; each sample needs one label row")
        labels[sid] = {
            "glosses": tuple((row.get(column["glosses"]) or "").split()),
            "split": (row.get(column["split"]) or "").strip() if column["split"] else "",
            "signer": (row.get(column["signer"]) or "").strip() if column["signer"] else "",
        }
    return labels


# ---------------------------------------------------------------------------- sharding


def shard_of(sample_id: str, n: int) -> int:
    """0-based shard of an id: SHA-1 based, so the same on every run and machine (unlike hash())."""
    return int.from_bytes(hashlib.sha1(sample_id.encode("utf-8")).digest()[:8], "big") % n


def shard(jobs: list[ExtractJob], k: int, n: int) -> list[ExtractJob]:
    """The jobs of shard k of n (k = 1..n). Shards 1..n are disjoint and together hold every job."""
    if not (isinstance(n, int) and isinstance(k, int) and n >= 1 and 1 <= k <= n):
        raise ExtractError(f"shard must be K/N with 1 <= K <= N, got {k}/{n}")
    return [job for job in jobs if shard_of(job.id, n) == k - 1]


# ---------------------------------------------------------------------------- extraction into a corpus


def feature_path(sample_id: str) -> str:
    return f"{FEATURES_DIR}/{sample_id}.npy"


def _record(job: ExtractJob, fps: float | None) -> SampleRecord:
    return SampleRecord(job.id, job.split, tuple(job.glosses), feature_path(job.id), job.signer, fps, dict(job.extra))


def _extract_job(job: ExtractJob, out_dir: Path, model_complexity: int) -> tuple[str, SampleRecord | None, str | None]:
    """Worker: extract one sample and save it. Returns (id, manifest record, None) or (id, None, reason)."""
    _mark_sample(str(job.source))  # native lines that pass the filter name the sample
    try:
        features = extract_sample(job.source, model_complexity)
        fps = job.fps if job.fps is not None else video_fps(job.source)
        atomic_save_npy(out_dir / feature_path(job.id), features)
        return job.id, _record(job, fps), None
    except ExtractError as exc:
        return job.id, None, str(exc)
    except Exception as exc:  # anything else from OpenCV/MediaPipe: report it, keep the run going
        return job.id, None, f"{job.source}: {type(exc).__name__}: {exc}"
    finally:
        _mark_sample("")


def _relabelled(rec: SampleRecord, job: ExtractJob) -> SampleRecord | None:
    """The manifest row of an already extracted sample with the job's labels, or None if nothing changes."""
    if not job.glosses:  # an unlabelled re-run must not wipe labels written earlier
        return None
    new = dataclasses.replace(rec, glosses=tuple(job.glosses), split=job.split, signer=job.signer or rec.signer, extra={**rec.extra, **job.extra})
    return None if new.row() == rec.row() else new


def _cost(job: ExtractJob) -> tuple[int, int]:
    """Rough size used to start long samples first (the tail of a parallel run is then short)."""
    source = Path(job.source)
    try:
        return (1, len(image_files(source))) if source.is_dir() else (0, source.stat().st_size)
    except OSError:
        return (0, 0)


def extract_to_corpus(
    jobs: list[ExtractJob],
    out_dir: Path,
    workers: int | None = None,
    model_complexity: int = 1,
    progress: bool = True,
) -> ExtractSummary:
    """Extract every job into the corpus at `out_dir`, `workers` processes in parallel (default: all CPUs).

    Skips samples already in the manifest with their feature file present (updating their labels
    if the job carries glosses). Failures are collected, not raised. The manifest is updated as
    samples finish and once more at the end, also on interruption.
    """
    out_dir = Path(out_dir)
    repeated = sorted(sid for sid, count in Counter(job.id for job in jobs).items() if count > 1)
    if repeated:
        raise ExtractError(f"duplicate sample ids among the jobs: {repeated[:10]}; ids must be unique")
    existing = {rec.id: rec for rec in read_manifest(out_dir, validate=False)} if (out_dir / MANIFEST).exists() else {}
    todo, skipped, relabelled = [], [], []
    for job in jobs:
        rec = existing.get(job.id)
        if rec is not None and rec.path and path_inside(out_dir, rec.path) and (out_dir / rec.path).is_file():
            skipped.append(job.id)
            new = _relabelled(rec, job)
            if new is not None:
                relabelled.append(new)
        else:
            todo.append(job)
    if relabelled:
        update_manifest(out_dir, relabelled)
    summary = ExtractSummary(done=[], skipped=skipped, failed={}, relabelled=[rec.id for rec in relabelled])
    if not todo:
        return summary
    if model_complexity != 1:
        with quiet_native_logs():
            new_holistic(model_complexity).close()  # fail once, here, rather than once a sample
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    todo.sort(key=_cost, reverse=True)
    # MediaPipe runs in this process only with one worker; worker processes filter their own fd 2
    with quiet_native_logs() if workers == 1 else nullcontext(sys.stderr) as stderr:
        _extract_todo(todo, out_dir, model_complexity, workers, progress, stderr, summary)
    return summary


def _extract_todo(todo, out_dir: Path, model_complexity: int, workers: int, progress: bool, stderr, summary: ExtractSummary) -> None:
    bar = tqdm(total=len(todo), desc="extract", unit="sample", disable=not progress, file=stderr)
    pending: list[SampleRecord] = []
    last_flush = time.monotonic()

    def finish(sid: str, rec: SampleRecord | None, reason: str | None) -> None:
        nonlocal last_flush
        if rec is None:
            summary.failed[sid] = reason or "unknown error"
        else:
            summary.done.append(sid)
            pending.append(rec)
        bar.update(1)
        bar.set_postfix(failed=len(summary.failed), refresh=False)
        if pending and (len(pending) >= FLUSH_EVERY or time.monotonic() - last_flush > FLUSH_SECONDS):
            update_manifest(out_dir, pending)
            pending.clear()
            last_flush = time.monotonic()

    try:
        if workers == 1:  # in this process: no interpreter start-up, same code path
            for job in todo:
                finish(*_extract_job(job, out_dir, model_complexity))
        else:
            _run_pool(todo, out_dir, model_complexity, workers, finish)
    finally:
        if pending:  # also on Ctrl+C: what was extracted stays in the manifest
            update_manifest(out_dir, pending)
        bar.close()


_started = None  # in a worker process: the queue on which each task announces its sample id


def _init_worker(started) -> None:
    global _started
    _started = started
    filter_native_logs_of_this_process()


def _pool_task(task, job: ExtractJob, out_dir: Path, model_complexity: int):
    _started.put(job.id)  # lets the parent tell which samples were running if this process dies
    return task(job, out_dir, model_complexity)


def _drain(queue) -> set[str]:
    ids = set()
    while not queue.empty():
        ids.add(queue.get())
    return ids


def _pool_round(jobs: list[ExtractJob], out_dir: Path, model_complexity: int, workers: int, finish, task, ctx) -> tuple[list[ExtractJob], set[str]]:
    """Run jobs in one process pool. Returns (jobs cut off by a dead worker, ids those workers had started)."""
    started_queue = ctx.SimpleQueue()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(started_queue,))
    broken, started = [], set()
    try:
        futures = {pool.submit(_pool_task, task, job, out_dir, model_complexity): job for job in jobs}
        for future in as_completed(futures):
            started |= _drain(started_queue)  # keep the pipe empty, so workers never block on it
            job = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool:
                broken.append(job)
                continue
            except Exception as exc:  # e.g. a job that cannot be sent to a worker
                result = (job.id, None, f"{job.source}: {type(exc).__name__}: {exc}")
            finish(*result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    started |= _drain(started_queue)
    started_queue.close()
    return broken, started


def _run_pool(todo: list[ExtractJob], out_dir: Path, model_complexity: int, workers: int, finish, task=_extract_job) -> None:
    """Run `task` on every job in `workers` spawned processes, calling finish(id, record, reason) for each.

    A crash inside MediaPipe/OpenCV kills a worker process and with it the pool. The samples
    that were running then are retried alone, each in a fresh process, and count as failed only
    if they crash alone; all other samples go on in a new pool.
    """
    # 'spawn': a fresh interpreter a worker; forking a process that holds OpenCV/MediaPipe threads is unsafe
    ctx = multiprocessing.get_context("spawn")
    queue, idle_breaks = list(todo), 0
    while queue:
        broken, started = _pool_round(queue, out_dir, model_complexity, workers, finish, task, ctx)
        suspects = [job for job in broken if job.id in started]
        queue = [job for job in broken if job.id not in started]
        idle_breaks = idle_breaks + 1 if broken and not suspects else 0
        if idle_breaks >= 2:  # workers die before taking any sample: nothing to isolate
            for job in queue:
                finish(job.id, None, "worker processes die on start-up; run with --workers 1 to see the error")
            return
        for job in suspects:
            if _pool_round([job], out_dir, model_complexity, 1, finish, task, ctx)[0]:
                reason = f"{job.source}: the process extracting this sample crashed (inside MediaPipe/OpenCV); check the file plays, or re-encode it"
                finish(job.id, None, reason)


# ---------------------------------------------------------------------------- merging shard corpora


def _copy_atomic(src: Path, dst: Path) -> None:
    atomic_copy(src, dst)  # permissions from the umask, like every other file of the corpus


def _same_row(a: SampleRecord, b: SampleRecord) -> bool:
    # an extra column present in one manifest but empty in the other is not a difference
    def filled(rec):
        return {k: v for k, v in rec.row().items() if v not in ("", None)}

    return filled(a) == filled(b)


def merge_corpora(shard_dirs: list[Path], out_dir: Path) -> int:
    """Merge the manifests and feature files of shard corpora into `out_dir` (which may already hold a corpus).

    Feature files are copied (the shards stay untouched); every row of every shard ends up in
    the output exactly once. A sample id present twice with the same row and identical feature
    file is merged silently; with a different row or file it is a CorpusError naming both
    places, and nothing is written. Returns the number of rows added or replaced from the shards.
    """
    out_dir = Path(out_dir)
    if not shard_dirs:
        raise CorpusError("merge needs at least one shard corpus directory")
    owner: dict[str, tuple[SampleRecord, Path, str]] = {}  # id -> (row, feature file, where it came from)
    if (out_dir / MANIFEST).exists():
        for rec in read_manifest(out_dir, validate=False):
            owner[rec.id] = (rec, out_dir / rec.path, f"{out_dir / MANIFEST}")
    plan: list[tuple[SampleRecord, Path]] = []
    targets: dict[str, str] = {rec.path: sid for sid, (rec, _, _) in owner.items()}
    for shard_dir in map(Path, shard_dirs):
        where = str(shard_dir / MANIFEST)
        seen_here: set[str] = set()
        for rec in read_manifest(shard_dir, validate=False):
            if rec.id in seen_here:
                raise CorpusError(f"{where}: sample id {rec.id!r} appears twice; fix that shard's manifest first")
            seen_here.add(rec.id)
            if not rec.path or not path_inside(shard_dir, rec.path) or not (shard_dir / rec.path).is_file():
                raise CorpusError(f"{where}: sample {rec.id!r} has no feature file at {rec.path!r}; re-extract that shard (rows are never dropped)")
            src = shard_dir / rec.path
            if rec.id in owner:
                prev_rec, prev_src, prev_where = owner[rec.id]
                if _same_row(prev_rec, rec) and prev_src.is_file() and filecmp.cmp(prev_src, src, shallow=False):
                    continue  # the same sample twice: keep one
                raise CorpusError(
                    f"sample id {rec.id!r} is in {prev_where} and in {where} with a different row or feature file; "
                    "remove it from one of them (or give it another id) and merge again"
                )
            if targets.get(rec.path, rec.id) != rec.id:
                raise CorpusError(f"{where}: sample {rec.id!r} would overwrite {rec.path!r} of sample {targets[rec.path]!r}; rename one")
            targets[rec.path] = rec.id
            owner[rec.id] = (rec, src, where)
            plan.append((rec, src))
    for rec, src in plan:  # files first, manifest last: an interrupted merge can simply be re-run
        dst = out_dir / rec.path
        if not (dst.exists() and dst.resolve() == src.resolve()):
            _copy_atomic(src, dst)
    if plan:
        update_manifest(out_dir, [rec for rec, _ in plan])
    return len(plan)


# ---------------------------------------------------------------------------- command line


def _parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise argparse.ArgumentTypeError(f"--shard wants K/N with 1 <= K <= N (e.g. 1/4), got {text!r}")
    return int(match[1]), int(match[2])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.extract",
        description="Extract MediaPipe Holistic landmarks from videos or frame folders into a corpus (manifest.csv + features/<id>.npy).",
    )
    parser.add_argument(
        "inputs", nargs="*", type=Path, metavar="INPUT", help="video files, folders of videos, or folders of frame images (one sample a folder)"
    )
    parser.add_argument("--out", required=True, type=Path, metavar="CORPUS", help="corpus directory to create or extend")
    parser.add_argument("--split", default="train", choices=SPLITS, help="split for samples whose label gives none (default: train)")
    parser.add_argument("--labels", type=Path, metavar="FILE", help="CSV/TSV/'|' table: id, glosses[, split, signer]; without it glosses stay empty")
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="parallel processes (default: number of CPUs)")
    parser.add_argument(
        "--model-complexity", type=int, default=1, choices=(0, 1, 2), help="MediaPipe Holistic model (default 1; the only one available offline)"
    )
    parser.add_argument("--shard", type=_parse_shard, metavar="K/N", help="extract only shard K of N (stable hash of the id); give each shard its own --out")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="SHARD_DIR", help="merge these shard corpora into --out instead of extracting")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry. Exit code 0: all done; 1: some samples failed; 2: bad arguments or input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.merge and args.inputs:
        parser.error("give either INPUT... (extract) or --merge SHARD_DIR... (merge), not both")
    if not args.merge and not args.inputs:
        parser.error("nothing to do: give INPUT... to extract or --merge SHARD_DIR... to merge")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    try:
        if args.merge:
            added = merge_corpora(args.merge, args.out)
            print(f"merged {added} sample(s) from {len(args.merge)} shard(s) into {args.out}")
            return 0
        labels = read_labels(args.labels) if args.labels else None
        jobs = discover_jobs(args.inputs, split=args.split, labels=labels)
        if args.shard:
            k, n = args.shard
            total = len(jobs)
            jobs = shard(jobs, k, n)
            print(f"shard {k}/{n}: {len(jobs)} of {total} sample(s)")
        summary = extract_to_corpus(jobs, args.out, workers=args.workers, model_complexity=args.model_complexity, progress=not args.no_progress)
    except (ExtractError, CorpusError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.report())
    unlabelled = [job.id for job in jobs if not job.glosses and job.id not in summary.failed]
    if unlabelled:
        where = f"no row in {args.labels}" if args.labels else "no --labels given"
        print(
            f"warning: {len(unlabelled)} sample(s) have empty glosses ({where}), e.g. {', '.join(unlabelled[:5])}; "
            "the corpus needs labels before training. Re-run with --labels FILE to fill them in (nothing is extracted again).",
            file=sys.stderr,
        )
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
