"""RWTH-PHOENIX-Weather 2014 / 2014-T corpus files and frame folders -> corpus, through MediaPipe (data.extract)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from data.convert.common import ConvertError, ConvertReport, finish_import, read_csv
from data.corpus import SPLITS

PHOENIX_FPS = 25.0
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
            rows = read_csv(path, columns, delimiter="|")
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
    return finish_import(out_dir, report, info)
