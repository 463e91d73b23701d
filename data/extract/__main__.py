"""python -m data.extract INPUT... --out CORPUS | --merge SHARD_DIR... --out CORPUS: the extraction command line."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from data.corpus import SPLITS, CorpusError
from data.extract.holistic import ExtractError
from data.extract.jobs import discover_jobs, read_labels, shard
from data.extract.merge import merge_corpora
from data.extract.pool import extract_to_corpus


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
