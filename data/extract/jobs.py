"""Which samples to extract: job discovery in the inputs, label tables, and stable sharding by id."""
from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from data.corpus import SPLITS
from data.extract.holistic import IMAGE_SUFFIXES, VIDEO_SUFFIXES, ExtractError, natural_key


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
