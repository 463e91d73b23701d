"""python -m data.synthetic --out DIR [--seed S] [--size small|default|N]: write the demo corpus."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from data.corpus import CorpusError
from data.synthetic.corpus import SIZES, generate_corpus, read_meta
from data.synthetic.glosses import GLOSSES
from data.synthetic.render import FPS


def _size(text: str) -> dict:
    if text in SIZES:
        return dict(SIZES[text])
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be one of {sorted(SIZES)} or a number of train sentences, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--size must be >= 1 train sentence, got {n}")
    return {"n_train": n, "n_dev": max(1, round(n / 6)), "n_test": max(1, round(n / 6))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.synthetic", description="Write the synthetic demo corpus.")
    ap.add_argument("--out", required=True, type=Path, help="corpus directory to write (created if needed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=_size, default=dict(SIZES["default"]),
                    help="small (24/6/6), default (240/40/40) or N train sentences (dev, test = N/6)")
    ap.add_argument("--n-train", type=int)
    ap.add_argument("--n-dev", type=int)
    ap.add_argument("--n-test", type=int)
    ap.add_argument("--min-glosses", type=int, default=2)
    ap.add_argument("--max-glosses", type=int, default=4)
    ap.add_argument("--signers", type=int, default=6, help="signers of train/dev")
    ap.add_argument("--unseen-signers", type=int, default=1, help="extra signers that appear only in test")
    ap.add_argument("--fps", type=float, default=FPS)
    ap.add_argument("--force", action="store_true", help="regenerate even if an identical corpus exists")
    args = ap.parse_args(argv)
    sizes = args.size
    for key in ("n_train", "n_dev", "n_test"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    start = time.perf_counter()
    try:
        out = generate_corpus(args.out, seed=args.seed, min_glosses=args.min_glosses, max_glosses=args.max_glosses,
                              n_signers=args.signers, n_unseen_signers=args.unseen_signers, fps=args.fps,
                              force=args.force, **sizes)
    except (ValueError, CorpusError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = read_meta(out) or {}
    st = meta.get("stats", {})
    print(f"demo corpus: {out} ({time.perf_counter() - start:.1f} s)")
    if st:
        p = meta["params"]
        print(f"  {p['n_train']}/{p['n_dev']}/{p['n_test']} train/dev/test sentences, {len(GLOSSES)} glosses, "
              f"frames {st['frames']['min']}-{st['frames']['max']} (mean {st['frames']['mean']:.1f})")
        miss = ", ".join(f"{k} {v:.1%}" for k, v in st["missing"].items())
        print(f"  missing frames: {miss}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
