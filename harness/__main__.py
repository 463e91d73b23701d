"""The harness from the command line, in any working directory:

    python -m harness check   [--config FILE] [--data-dir DIR] [--html FILE] [--json FILE] [--all-methods] [pytest args...]
    python -m harness overfit [--config FILE] [--data-dir DIR] [--html FILE] [--json FILE] [--gpu] [pytest args...]

`check` runs the compat and smoke checks, `overfit` the overfit run, of the configuration (the
file train.py reads; its model, dataset and batch_transform may be the user's own), prints the
findings table (every failed check with its cause, samples and hint) and exits 1 when a check
fails, 0 when none does. Other arguments go to pytest (e.g. `-n 2`, `-k forward`).

Your own model.py, data.py (or model/, data/) in the working directory or beside the
configuration are fine: the harness imports its own packages, and `model = "model:make_model"`
loads your file (model/components.py: import_object). A harness.py of your own in the working
directory is not: `python -m harness` then runs that file, before any of this package can.
Run `python -P -m harness ...` there (Python 3.11+: the working directory stays off sys.path).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

MARKERS = {"check": "compat or smoke", "overfit": "overfit"}


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m harness", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=sorted(MARKERS), help="check: compat + smoke checks; overfit: the overfit run")
    ap.add_argument("--config", type=Path, help="training configuration (JSON or TOML), the file train.py --config reads")
    ap.add_argument("--data-dir", "--data_dir", dest="data_dir", type=Path, help="corpus directory (overrides the configuration's data_dir)")
    ap.add_argument("--html", type=Path, help="write the HTML report here")
    ap.add_argument("--json", type=Path, help="write every finding as JSON here")
    ap.add_argument("--all-methods", action="store_true", help="check every normalization method, not only the configured one")
    ap.add_argument("--gpu", action="store_true", help="run on CUDA")
    return ap.parse_known_args(argv)


def main(argv=None) -> int:
    args, rest = parse(sys.argv[1:] if argv is None else argv)
    from model.config import load_config

    try:  # a bad configuration is one clear line, before pytest starts
        load_config(args.config, data_dir=str(args.data_dir) if args.data_dir else None)
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import pytest

    from harness.pytest_suite import standalone_args

    pytest_args = standalone_args() + ["-m", MARKERS[args.command], "--no-header", "-q"]
    # paths as options (not a preset object) so that pytest-xdist workers (-n N) see them too
    if args.config:
        pytest_args += ["--config", str(args.config.resolve())]
    if args.data_dir:
        pytest_args += ["--data-dir", str(args.data_dir.resolve())]
    if args.html:
        pytest_args += ["--html", str(args.html.resolve()), "--self-contained-html"]
    if args.json:
        pytest_args += ["--diag-json", str(args.json.resolve())]
    if not args.all_methods:
        pytest_args.append("--configured-only")
    if args.gpu:
        pytest_args.append("--gpu")
    return int(pytest.main(pytest_args + rest))


if __name__ == "__main__":
    sys.exit(main())
