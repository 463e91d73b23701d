"""The corpus format: a directory with `manifest.csv` and one `.npy` feature file a sample.

manifest.csv columns: id, split, glosses, path (required); signer, fps (optional); any other
column is kept as it is. `split` is train/dev/test, `glosses` a space-separated gloss
sequence, `path` relative to the corpus directory. A feature file is float32/float16,
either [T, 1629] raw landmarks (NaN where MediaPipe detected nothing) or [T, 6516] full
features.

All writes are atomic (temporary file in the same directory, fsync, os.replace), so a crash never
leaves a half-written manifest or feature file behind, and every file written gets the
permissions the umask gives a new file (0644 under umask 022, 0640 under 027).
"""
from __future__ import annotations

import csv
import io
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.layout import FEATURE_DIM, RAW_DIM

REQUIRED_COLUMNS = ("id", "split", "glosses", "path")
OPTIONAL_COLUMNS = ("signer", "fps")
SPLITS = ("train", "dev", "test")
MANIFEST = "manifest.csv"
CORPUS_INFO = "corpus.json"  # what an importer or builder made the corpus from (dataset name, parameters, import summary)
FEATURES_DIR = "features"  # where importers and generators put the feature files
FEATURE_WIDTHS = (RAW_DIM, FEATURE_DIM)
FEATURE_DTYPES = (np.dtype("float32"), np.dtype("float16"))


class CorpusError(ValueError):
    """A corpus that cannot be used as it is; the message names the file/row and the fix."""


@dataclass(frozen=True)
class SampleRecord:
    id: str
    split: str
    glosses: tuple[str, ...]
    path: str
    signer: str = ""
    fps: float | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def row(self) -> dict:
        return {
            "id": self.id,
            "split": self.split,
            "glosses": " ".join(self.glosses),
            "path": self.path,
            "signer": self.signer,
            "fps": "" if self.fps is None else f"{self.fps:g}",
            **self.extra,
        }


# ---------------------------------------------------------------------------- atomic writes

# Mode asked for when a file is created; the kernel takes the umask (or the directory's default
# ACL) off it, exactly as for open(path, "w"): 0644 under umask 022, 0640 under 027. The temporary
# file is created with os.open(..., 0o666) instead of tempfile.mkstemp, whose fixed 0600 the rename
# would carry over to the final file (nobody else on a shared machine could read a corpus or a
# checkpoint). The umask is never read, so nothing here races with other threads (os.umask(0)
# and back would change it for the whole process meanwhile).
_CREATE_MODE = 0o666
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _create_temp_beside(path: Path) -> tuple[int, str]:
    """(fd, name) of a new, empty temporary file in `path`'s directory, mode 0o666 minus the umask."""
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, _TMP_FLAGS, _CREATE_MODE), tmp
        except FileExistsError:  # another writer picked the same name: draw again (as mkstemp does)
            continue
    raise FileExistsError(f"{path.parent}: could not create a unique temporary file for {path.name}")


def atomic_write(path: Path, write) -> None:
    """Call write(f) on a temporary file beside `path`, fsync, then rename it over `path`.

    The file gets the permissions any newly created file gets (0o666 minus the umask). If
    write(f) or anything after it fails (also on Ctrl+C), the temporary file is removed and
    `path` is left as it was: absent, or with its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    atomic_write(Path(path), lambda f: f.write(data))


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path, array: np.ndarray) -> None:
    atomic_write(Path(path), lambda f: np.save(f, array, allow_pickle=False))


def atomic_copy(src, dst) -> None:
    """Copy the file `src` to `dst` atomically (contents only: `dst` gets the umask's permissions)."""
    with open(src, "rb") as source:
        atomic_write(Path(dst), lambda f: shutil.copyfileobj(source, f, 1 << 20))


# ---------------------------------------------------------------------------- manifest


def _parse_row(row: dict, where: str) -> SampleRecord:
    fps = (row.get("fps") or "").strip()
    try:
        fps_value = float(fps) if fps else None
    except ValueError:
        raise CorpusError(f"{where}: fps {fps!r} is not a number; write frames per second or leave it empty") from None
    extra = {k: v for k, v in row.items() if k not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS and k is not None}
    return SampleRecord(
        id=(row.get("id") or "").strip(),
        split=(row.get("split") or "").strip(),
        glosses=tuple((row.get("glosses") or "").split()),
        path=(row.get("path") or "").strip(),
        signer=(row.get("signer") or "").strip(),
        fps=fps_value,
        extra=extra,
    )


def read_manifest(corpus_dir, validate: bool = True) -> list[SampleRecord]:
    """Read `corpus_dir/manifest.csv`.

    Structural faults (no file, missing required column) always raise CorpusError. With
    validate=True every problem found by `manifest_problems` raises too; the harness reads
    with validate=False and reports the problems as findings instead.
    """
    corpus_dir = Path(corpus_dir)
    path = corpus_dir / MANIFEST
    if not path.is_file():
        raise CorpusError(f"{path}: no manifest; a corpus directory needs {MANIFEST} (see README, 'Corpus format')")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise CorpusError(f"{path}: missing required column(s) {missing}; the header must contain {list(REQUIRED_COLUMNS)}")
        records = [_parse_row(row, f"{path}, row {i}") for i, row in enumerate(reader, start=2)]
    if validate:
        problems = manifest_problems(corpus_dir, records)
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise CorpusError(f"{path}: {len(problems)} problem(s):\n  {shown}{more}")
    return records


def manifest_problems(corpus_dir, records: list[SampleRecord]) -> list[str]:
    """Every row-level problem of a manifest, each naming the row (by manifest line) and the fix."""
    corpus_dir = Path(corpus_dir).resolve()
    problems, seen = [], {}
    for line, rec in enumerate(records, start=2):
        where = f"line {line} (id {rec.id!r})"
        if not rec.id:
            problems.append(f"line {line}: empty id; give every sample a unique id")
        elif rec.id in seen:
            problems.append(f"{where}: duplicate id, first at line {seen[rec.id]}; ids must be unique")
        else:
            seen[rec.id] = line
        if rec.split not in SPLITS:
            problems.append(f"{where}: unknown split {rec.split!r}; use one of {SPLITS}")
        if not rec.glosses:
            problems.append(f"{where}: empty gloss sequence; CTC needs at least one target gloss")
        if not rec.path:
            problems.append(f"{where}: empty path; point it to the sample's .npy file")
        elif not path_inside(corpus_dir, rec.path):
            problems.append(f"{where}: path {rec.path!r} leaves the corpus directory; paths are relative to it")
    return problems


def feature_path(sample_id: str) -> str:
    """The manifest path of a sample's feature file as importers and generators write it: features/<id>.npy."""
    return f"{FEATURES_DIR}/{sample_id}.npy"


def path_inside(corpus_dir, rel: str) -> bool:
    if os.path.isabs(rel):
        return False
    corpus_dir = Path(corpus_dir).resolve()
    target = (corpus_dir / rel).resolve()
    return target == corpus_dir or corpus_dir in target.parents


def manifest_text(records: list[SampleRecord]) -> str:
    extras = []
    for rec in records:
        for k in rec.extra:
            if k not in extras:
                extras.append(k)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS) + extras, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow(rec.row())
    return out.getvalue()


def write_manifest(corpus_dir, records: list[SampleRecord]) -> None:
    atomic_write_text(Path(corpus_dir) / MANIFEST, manifest_text(records))


def merge_records(existing: list[SampleRecord], new: list[SampleRecord]) -> list[SampleRecord]:
    """Existing rows keep their order; a new row with an existing id replaces it; others append."""
    by_id = {r.id: r for r in new}
    merged = [by_id.pop(r.id, r) for r in existing]
    return merged + [r for r in new if r.id in by_id]


def update_manifest(corpus_dir, new: list[SampleRecord]) -> list[SampleRecord]:
    """Merge rows into the manifest (creating it if needed) without losing any existing row."""
    corpus_dir = Path(corpus_dir)
    existing = read_manifest(corpus_dir, validate=False) if (corpus_dir / MANIFEST).exists() else []
    merged = merge_records(existing, new)
    write_manifest(corpus_dir, merged)
    return merged


# ---------------------------------------------------------------------------- feature files


def load_features(path, mmap: bool = True) -> np.ndarray:
    """Load one feature file, checking it is a [T, 1629] or [T, 6516] float32/float16 array.

    With mmap=True the array is memory-mapped (read lazily), so corpora larger than memory work.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: feature file missing; re-run extraction or fix the manifest path")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:  # truncated, not .npy, pickled objects
        raise CorpusError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc}); re-extract this sample") from None
    check_feature_array(arr, str(path))
    return arr


def check_feature_array(arr: np.ndarray, where: str) -> None:
    if arr.dtype not in FEATURE_DTYPES:
        raise CorpusError(f"{where}: dtype {arr.dtype}, expected float32 or float16; convert with arr.astype('float32')")
    if arr.ndim != 2 or arr.shape[1] not in FEATURE_WIDTHS:
        raise CorpusError(
            f"{where}: shape {arr.shape}, expected [T, {RAW_DIM}] raw landmarks or [T, {FEATURE_DIM}] full features "
            "(pose 33, left hand 21, right hand 21, face 468 landmarks, x/y/z each)"
        )
    if arr.shape[0] == 0:
        raise CorpusError(f"{where}: zero frames; drop this sample or re-extract it")


class Corpus:
    """A corpus directory: its records and lazy access to their feature files."""

    def __init__(self, corpus_dir, validate: bool = True):
        self.dir = Path(corpus_dir)
        self.records = read_manifest(self.dir, validate=validate)

    def __len__(self) -> int:
        return len(self.records)

    def split(self, name: str) -> list[SampleRecord]:
        if name not in SPLITS:
            raise CorpusError(f"unknown split {name!r}; use one of {SPLITS}")
        return [r for r in self.records if r.split == name]

    def file(self, rec: SampleRecord) -> Path:
        return self.dir / rec.path

    def load(self, rec: SampleRecord, mmap: bool = True) -> np.ndarray:
        return load_features(self.file(rec), mmap=mmap)

    def fingerprint(self) -> str:
        """Content-cheap fingerprint: manifest bytes plus each feature file's size and mtime."""
        import hashlib

        h = hashlib.sha256((self.dir / MANIFEST).read_bytes())
        for rec in self.records:
            try:
                st = self.file(rec).stat()
                h.update(f"{rec.path}:{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"{rec.path}:missing".encode())
        return h.hexdigest()[:16]
