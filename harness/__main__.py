"""The harness from the command line, in any working directory:

    python -m harness check   [--config FILE] [--data-dir DIR] [--only CHECK ...] [--html FILE] [--json FILE] [--all-methods] [pytest args...]
    python -m harness overfit [--config FILE] [--data-dir DIR] [--html FILE] [--json FILE] [--gpu] [pytest args...]
    python -m harness replay  FILE [--config FILE]
    python -m harness drift   --reference REF (--data DIR | --config FILE) [--split S] [--json OUT] [--html OUT]

`check` runs the compat and smoke checks (`--only` names the checks to run, e.g. `--only contract
model_input padding`), `overfit` the overfit run, of the configuration (the file train.py reads;
its model, dataset and batch_transform may be the user's own), prints the findings table (every
failed check with its cause, samples and hint) and exits 1 when a check fails, 0 when none does.
Other arguments go to pytest (e.g. `-n 2`, `-k forward`).

`drift` compares a corpus (all splits, or --split), or a configuration's data (--config: its
corpus, or what its dataset yields), with what a model was trained on: REF is a profile JSON
(harness/profile.py), a corpus directory (its train split) or a checkpoint .pt with a
"data_profile" entry. --html writes a page with a table of the feature groups (score, threshold,
verdict, named finding) and one plot a drifted group, training vs new. Exit 0 no drift, 1 drift
named, 2 bad arguments.

`replay` re-runs a batch saved on a non-finite step (by harness.guard in the user's loop, or by
train.py) through the model rebuilt from the configuration's model factory and the saved state
(without --config: the configuration or pickled model saved with the batch), every module
watched, and prints the verdict: the first non-finite module, whether the input was already
non-finite, the samples. Exit 1 when the non-finite value reproduces, 0 when it does not.

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
COMMANDS = sorted([*MARKERS, "replay", "drift"])


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m harness", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=COMMANDS, help="check: compat + smoke checks; overfit: the overfit run; replay: a saved non-finite step")
    ap.add_argument("--config", type=Path, help="training configuration (JSON or TOML), the file train.py --config reads")
    ap.add_argument("--data-dir", "--data_dir", dest="data_dir", type=Path, help="corpus directory (overrides the configuration's data_dir)")
    ap.add_argument("--html", type=Path, help="write the HTML report here")
    ap.add_argument("--json", type=Path, help="write every finding as JSON here")
    ap.add_argument("--all-methods", action="store_true", help="check every normalization method, not only the configured one")
    ap.add_argument("--gpu", action="store_true", help="run on CUDA")
    ap.add_argument("--only", nargs="+", metavar="CHECK", help="run only these checks (names of harness/suite.py, e.g. contract model_input padding)")
    return ap.parse_known_args(argv)


def parse_replay(argv):
    ap = argparse.ArgumentParser(prog="python -m harness replay", description="re-run a batch saved on a non-finite step, every module watched; exit 1 when it reproduces")
    ap.add_argument("file", type=Path, help="the .pt file harness.guard (or train.py) saved")
    ap.add_argument("--config", type=Path, help="the configuration whose model factory builds the model (default: the one saved with the batch)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["drift"]:
        from harness.checks.drift import run_drift

        return run_drift(argv[1:])
    if argv[:1] == ["replay"]:
        from harness.replay import replay_file

        args = parse_replay(argv[1:])
        return replay_file(args.file, args.config)
    args, rest = parse(argv)
    if args.command == "replay":  # options before the command: `python -m harness --config c.toml replay FILE`
        print("error: write `python -m harness replay FILE [--config FILE]` (the command first)", file=sys.stderr)
        return 2
    from model.config import load_config

    try:  # a bad configuration or check name is one clear line, before pytest starts
        cfg = load_config(args.config, data_dir=str(args.data_dir) if args.data_dir else None)
        if args.only:
            from harness.api import select_checks

            select_checks(cfg, args.only, argument="--only")
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
    if args.only:
        pytest_args += ["--only-checks", ",".join(args.only)]
    return int(pytest.main(pytest_args + rest))


if __name__ == "__main__":
    sys.exit(main())
