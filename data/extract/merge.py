"""Shard corpora merged into one without losing or duplicating rows."""
from __future__ import annotations

import filecmp
from pathlib import Path

from data.corpus import MANIFEST, CorpusError, SampleRecord, atomic_copy, path_inside, read_manifest, update_manifest


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
