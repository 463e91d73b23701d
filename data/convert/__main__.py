"""python -m data.convert kaggle|pose|phoenix|export-pose|stats|sentences ...: the importers' command line."""
from __future__ import annotations

import argparse
import json
import sys
import warnings

import data.convert
from data.convert import sentences as sn
from data.convert.sentences import build_sentences
from data.convert.common import ConvertReport, IncompleteImportWarning
from data.convert.kaggle import kaggle_to_corpus
from data.convert.phoenix import PHOENIX_VARIANTS, phoenix_to_corpus
from data.convert.pose import export_pose, pose_files_to_corpus
from data.convert.splits import DEFAULT_FRACTIONS
from data.convert.stats import gloss_statistics
from data.corpus import SPLITS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data.convert", description=data.convert.__doc__.split("\n\n")[0])
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

    se = sub.add_parser("sentences", help="continuous sentences from a corpus of isolated clips, split by signer (data/convert/sentences.py)")
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
