"""The project's own training loop, with the harness's guard on every step.

    python train_loop.py --steps 40                  # trains, printing each step's loss
    python train_loop.py --steps 6 --poison-step 3   # NaN in two clips of step 3's batch:
                                                     # the guard stops the run and prints the replay command

Settings (batch_size, lr, seed) come from harness.toml, the file the harness checks, so the check
and the loop train the same thing. The guard costs a finiteness test of the loss and of the
gradient norm a step; at the first non-finite one it names the clips, saves the batch and the
model's state under --out and prints `python -m harness replay ...`.
"""
from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import torch

from clip_data import collate, make_dataset, read_vocab
from ctc_step import train_step
from gloss_net import make_model
from harness import NonFiniteStep, guard

HERE = Path(__file__).resolve().parent

POISONED_ROWS = (0, 2)  # the batch rows whose frames 5..9 --poison-step sets to NaN


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps to run")
    ap.add_argument("--poison-step", type=int, default=None, help="put NaN into two clips of this step's batch")
    ap.add_argument("--out", default="harness_guard", help="where the guard saves a non-finite step")
    ap.add_argument("--config", default=str(HERE / "harness.toml"), help="batch_size, lr, seed (and data_dir) from this file")
    ap.add_argument("--data-dir", default=None, help="a corpus directory (default: the configuration's data_dir, else the demo corpus)")
    args = ap.parse_args(argv)

    settings = tomllib.loads(Path(args.config).read_text(encoding="utf-8"))
    torch.manual_seed(settings.get("seed", 0))
    train = make_dataset("train", data_dir=args.data_dir or settings.get("data_dir"))
    loader = torch.utils.data.DataLoader(train, batch_size=settings.get("batch_size", 4), shuffle=True, collate_fn=collate)
    model = make_model(len(read_vocab()), train[0]["x"].shape[1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.get("lr", 1e-3))
    # the guard replays a failing batch through the model as the step calls it (features under "x")
    g = guard(model, config=args.config, out_dir=args.out)  # it calls the model on batch[item_keys.features], batch["lengths"]

    step = 0
    while step < args.steps:
        for batch in loader:
            step += 1
            if step == args.poison_step:
                rows = [r for r in POISONED_ROWS if r < len(batch["video_id"])]
                for row in rows:
                    batch["x"][row, 5:10] = float("nan")
                print(f"step {step}: NaN put into {', '.join(batch['video_id'][r] for r in rows)}", flush=True)
            try:
                loss = train_step(model, batch, optimizer, guard=g)
            except NonFiniteStep:
                print(f"stopped at step {step} (the guard's report above)", file=sys.stderr)
                return 1
            print(f"step {step}  loss {loss.item():.4f}", flush=True)
            if step == args.steps:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
