"""Train the I3D teacher with CTC on a corpus; the compatibility gate runs first.

    python train.py                                   # embedded demo corpus, defaults
    python train.py --data_dir DIR --output_dir DIR --batch_size 2 --epochs 100 --lr 0.0005
    python train.py --model student --teacher RUN/best.pt     # distil the small student from a teacher checkpoint
    torchrun --nproc_per_node 2 train.py --data_dir DIR ...   # DDP (gloo on CPU, nccl on CUDA)

Files in --output_dir: config.json, vocab.json, norm_stats.npz, metrics.jsonl, metrics.png,
last.pt and best.pt (atomic; --resume continues from last.pt), gate report, and
nonfinite_batch.pt if training met a non-finite loss (replay: pytest --replay PATH).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from data.corpus import atomic_write, atomic_write_text
from data.normalize import IMPUTATIONS, METHODS, FeatureStats
from data.dataset import Vocabulary
from data.layout import input_dim
from model.components import ComponentError
from model.config import load_config
from model import training
from model.i3d import count_parameters, model_size_mb


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON or TOML training configuration (the file the harness reads); flags override it")
    p.add_argument("--data_dir", help="corpus directory (default: the embedded demo corpus, generated once)")
    p.add_argument("--output_dir")
    p.add_argument("--batch_size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--model", help="a registered model (i3d_teacher, student) or the user's factory 'module.path:attribute'")
    p.add_argument("--teacher", help="distil from this teacher checkpoint (train.py's best.pt / last.pt; same vocabulary, features, normalization)")
    p.add_argument("--distill_weight", type=float, help="loss = CTC + distill_weight * T^2 * KL(teacher_T || student_T)")
    p.add_argument("--distill_temperature", type=float, help="temperature T of the distillation posteriors")
    p.add_argument("--normalize", choices=METHODS)
    p.add_argument("--impute", choices=IMPUTATIONS)
    p.add_argument("--modalities", nargs="+", help="subset of pose hands face temporal")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--gpu", action="store_true", help="shorthand for --device cuda")
    p.add_argument("--amp", action="store_true", default=None, help="mixed precision (bf16 by default; see amp_dtype)")
    p.add_argument("--grad_clip", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--num_workers", type=int)
    p.add_argument("--beam_width", type=int)
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last.pt")
    p.add_argument("--skip-gate", dest="skip_gate", action="store_true", help="train even if the compatibility gate fails (recorded in checkpoints)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process (default: cores / processes)")
    args = p.parse_args(argv)
    device = "cuda" if args.gpu else args.device
    cfg = load_config(
        args.config, data_dir=args.data_dir, output_dir=args.output_dir, batch_size=args.batch_size, epochs=args.epochs,
        lr=args.lr, normalize=args.normalize, impute=args.impute, modalities=args.modalities, device=device, amp=args.amp,
        grad_clip=args.grad_clip, seed=args.seed, num_workers=args.num_workers, beam_width=args.beam_width,
        model=args.model, teacher=args.teacher, distill_weight=args.distill_weight, distill_temperature=args.distill_temperature,
    )
    return cfg, args


def log(msg: str, master: bool = True) -> None:
    if master:
        print(msg, flush=True)


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def plot_metrics(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax1 = plt.subplots(figsize=(7, 4))
    epochs = [r["epoch"] for r in rows]
    ax1.plot(epochs, [r["train_loss"] for r in rows], "b-", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("CTC loss", color="b")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [r["dev_wer"] for r in rows], "r-", label="dev WER (greedy)")
    ax2.set_ylabel("dev WER (greedy)", color="r")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=90))
    plt.close(fig)


GAP_WARN = 0.10  # an unseen split's WER this much (absolute) above train's, and over twice it, is a warning
PLATEAU_EPOCHS = 3  # epochs in a row with >= PLATEAU_BLANK_SHARE of the dev frames blank before train.py warns


def blank_plateau(rows: list[dict]) -> str:
    """A warning when the last PLATEAU_EPOCHS epochs decoded dev as (almost) nothing but blanks."""
    from harness.training_checks import PLATEAU_BLANK_SHARE

    last = [r.get("dev_blank_share", 0.0) for r in rows[-PLATEAU_EPOCHS:]]
    if len(last) < PLATEAU_EPOCHS or min(last) < PLATEAU_BLANK_SHARE or (len(rows) > PLATEAU_EPOCHS and rows[-PLATEAU_EPOCHS - 1].get("dev_blank_share", 0.0) >= PLATEAU_BLANK_SHARE):
        return ""  # said once, when the run enters the plateau
    return (
        f"WARNING: CTC sits on its all-blank plateau: {min(last):.0%}+ of the dev output frames decode as blank for "
        f"{PLATEAU_EPOCHS} epochs. Try: a higher learning rate or a longer warm-up (warmup_steps), check that the input "
        "carries signal (python -m harness check; its model_input check), a per-channel normalization in the conv blocks "
        "(norm = \"batch\"), or `python -m harness overfit` on this configuration"
    )


def main(argv=None) -> int:
    cfg, args = parse_args(argv)
    rank, local_rank, world = training.distributed_env()
    master = rank == 0
    distributed = world > 1
    device = training.resolve_device(cfg.device)
    if distributed:
        if device.type == "cuda":
            device = torch.device(f"cuda:{local_rank}")
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // world))
    training.seed_everything(cfg.seed + rank)
    out = Path(cfg.output_dir)
    if master:
        out.mkdir(parents=True, exist_ok=True)
        training.corpus_dir(cfg)  # generates the demo corpus once, before other ranks read it
    if distributed:
        dist.barrier()

    # ------------------------------------------------------------------ the gate
    if args.skip_gate:
        log("WARNING: --skip-gate: training WITHOUT the compatibility checks; this is recorded in every checkpoint", master)
    elif master:
        from harness.gate import run_gate

        verdict = run_gate(cfg, out)
        log(verdict.describe())
        ok = verdict.passed
        if distributed:
            flag = torch.tensor([int(ok)])
            dist.broadcast(flag, 0)
        if not ok:
            return 1
    if distributed and not args.skip_gate and not master:
        flag = torch.tensor([0])
        dist.broadcast(flag, 0)
        if not flag.item():
            return 1

    # ------------------------------------------------------------------ data, model, optimiser
    last_path, best_path = out / "last.pt", out / "best.pt"
    ckpt = None
    if args.resume and last_path.exists():
        ckpt = torch.load(last_path, map_location="cpu", weights_only=True)
        log(f"resuming from {last_path} (epoch {ckpt['epoch']} done, best dev WER {ckpt['best_wer']:.2%}, greedy)", master)
    elif args.resume:
        log(f"--resume: no {last_path} yet, starting fresh", master)
    vocab = Vocabulary(ckpt["vocab"]) if ckpt else None
    stats = FeatureStats.from_dict(ckpt["norm_stats"]) if ckpt and ckpt.get("norm_stats") else None
    data = training.build_data(cfg, vocab=vocab, stats=stats)
    if "train" not in data.splits:
        raise SystemExit(f"{data.source}: no train split; the manifest needs rows with split=train")
    if master:
        atomic_write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=1))
        data.vocab.save(out / "vocab.json")
        if data.stats is not None:
            data.stats.save(out / "norm_stats.npz")
    model = training.build_model(cfg, len(data.vocab), data.input_dim).to(device)
    raw_model = model
    model_args = training.model_args(cfg, model, len(data.vocab), data.input_dim)  # rebuilds the model alone
    log(f"model {cfg.model}: {count_parameters(model):,} parameters, {model_size_mb(model):.2f} MB; vocabulary {len(data.vocab)} (blank 0)", master)
    teacher = None
    if cfg.teacher is not None:
        from model.student import TeacherLoadError

        try:
            teacher = training.teacher_for(cfg, device)
        except TeacherLoadError as exc:
            raise SystemExit(f"error: {exc}") from None
        # even with --skip-gate: distillation over another vocabulary teaches the wrong glosses
        problem = training.teacher_vocab_problem(teacher, data.vocab)
        if problem:
            raise SystemExit(f"error: teacher {cfg.teacher}: {problem}; distillation needs the student's vocabulary (ids and glosses)")
        log(
            f"teacher {teacher.model_name} ({count_parameters(teacher.module, trainable_only=False):,} parameters, frozen, eval mode) from "
            f"{teacher.path} (sha256 {teacher.sha256[:12]}); loss = CTC + {cfg.distill_weight:g} * T^2 KL at T = {cfg.distill_temperature:g}",
            master,
        )
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    train_ds = data.splits["train"]
    sampler = training.ShardedSampler(len(train_ds), rank, world, seed=cfg.seed)
    loader = training.make_loader(train_ds, cfg.batch_size, shuffle=False, num_workers=cfg.num_workers, sampler=sampler)
    # the same on every rank (shards differ by at most one sample), so the LR schedules agree
    steps_per_epoch = math.ceil(math.ceil(len(train_ds) / world) / cfg.batch_size)
    optimizer = training.build_optimizer(cfg, raw_model)
    scheduler = training.build_scheduler(cfg, optimizer, total_steps=max(1, steps_per_epoch * cfg.epochs))
    scaler = training.make_scaler(device, cfg)
    start_epoch, best_wer, metrics_rows = 1, float("inf"), []
    if ckpt:
        raw_model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        start_epoch, best_wer = ckpt["epoch"] + 1, ckpt["best_wer"]
        metrics_rows = list(ckpt.get("metrics", []))
    dev_loader = training.make_loader(data.splits.get("dev", train_ds), cfg.batch_size, shuffle=False)
    phoenix = cfg.phoenix_cleanup if cfg.phoenix_cleanup is not None else data.corpus_kind.startswith("phoenix")

    def checkpoint_state(epoch: int) -> dict:
        return {
            "model_name": cfg.model,
            "model_args": model_args,
            "model": raw_model.state_dict(),
            "vocab": data.vocab.to_list(),
            "norm_stats": data.stats.to_dict() if data.stats is not None else None,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "best_wer": best_wer,
            "rng": rng_state(),
            "config": cfg.to_dict(),
            "skipped_gate": bool(args.skip_gate),
            # the teacher this model learned from: path, sha256 of the file, its vocabulary (None: no distillation)
            "teacher": teacher.record() if teacher is not None else None,
            "metrics": metrics_rows,
        }

    if master and start_epoch == 1:
        from data.dataset import collate
        from harness.diagnostics import first_batch_report

        first = training.to_model_input(collate([train_ds[i] for i in range(min(cfg.batch_size, len(train_ds)))]), device, training.batch_transform(cfg))
        layout = cfg.modalities if first.features.shape[-1] == input_dim(cfg.modalities) else None
        log(first_batch_report(raw_model, first, layout, len(data.vocab)))

    # ------------------------------------------------------------------ train
    from tqdm import tqdm

    # every WER printed says its decoder: the epoch lines decode greedily, the closing lines with cfg.beam_width
    final_decoder = "greedy" if cfg.beam_width <= 1 else f"beam {cfg.beam_width}"
    select_split = "dev" if "dev" in data.splits else "train"  # no dev split: the epoch lines score train
    log(
        f"best.pt: lowest {select_split} WER, greedy decoding, checked every epoch"
        + ("" if select_split == "dev" else " (the corpus has no dev split)")
        + f"; the closing dev/test WER decode best.pt with {final_decoder} (python -m model.evaluate reproduces both)",
        master,
    )

    from harness.diagnostics import save_nonfinite_batch

    global_step = (start_epoch - 1) * steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        t0, frames, losses, skipped = time.perf_counter(), 0, [], 0
        join = model.join() if distributed else nullcontext()
        with join:
            for batch in tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", disable=not master or not sys.stderr.isatty(), leave=False):
                res = training.train_step(model, batch, optimizer, scaler, cfg, device, scheduler)
                global_step += 1
                if not res.finite:
                    seen = training.to_model_input(batch, device, training.batch_transform(cfg))  # what the model saw
                    where = save_nonfinite_batch(out / "nonfinite_batch.pt", raw_model, seen, cfg.model, model_args, global_step, epoch, cfg.to_dict())
                    what = "loss" if not math.isfinite(res.loss) else "gradient norm"
                    log(f"non-finite {what} at epoch {epoch} step {global_step}, samples {res.nonfinite_ids}: {where}", True)
                    if cfg.nonfinite == "stop":
                        log("stopping (set nonfinite='skip' in the configuration to skip such batches); replay: pytest --replay " + str(out / "nonfinite_batch.pt"))
                        return 2
                    skipped += 1
                    continue
                losses.append(res.loss)
                frames += int(batch.lengths.sum())
        seconds = time.perf_counter() - t0
        if distributed:
            dist.barrier()
        if master:
            dev = training.evaluate(raw_model, dev_loader, data.vocab, device, cfg, beam_width=1, phoenix_cleanup=phoenix)
            row = {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)) if losses else float("nan"),
                "dev_wer": dev.wer.wer,
                "lr": scheduler.get_last_lr()[0],
                "seconds": round(seconds, 2),
                "frames_per_s": round(frames * world / max(seconds, 1e-9), 1),
                "skipped_batches": skipped,
                "dev_blank_share": round(dev.blank_share, 4),
            }
            metrics_rows.append(row)
            with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            plot_metrics(metrics_rows, out / "metrics.png")
            improved = dev.wer.wer < best_wer
            best_wer = min(best_wer, dev.wer.wer)
            state = checkpoint_state(epoch)
            save_checkpoint(last_path, state)
            if improved:
                save_checkpoint(best_path, state)
            log(
                f"epoch {epoch:3d}  loss {row['train_loss']:.4f}  {select_split} WER {dev.wer.wer:.2%} (greedy)  lr {row['lr']:.2e}  "
                f"{seconds:.1f}s  {row['frames_per_s']:.0f} frames/s{'  *best*' if improved else ''}"
            )
            plateau = blank_plateau(metrics_rows)
            if plateau:
                log(plateau)
        if distributed:
            dist.barrier()

    # ------------------------------------------------------------------ final evaluation
    if distributed:
        # Leave the group in step, after the DDP wrapper (whose reducer holds gloo work) is gone:
        # a rank tearing gloo down while work or a peer is pending can abort (SIGABRT, seen once
        # in CI). The final evaluation needs no collectives.
        del model
        dist.barrier()
        dist.destroy_process_group()
    if master:
        if best_path.exists():
            raw_model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["model"])
        final = {}
        for split in ("train", "dev", "test"):
            if split in data.splits:
                loader_s = training.make_loader(data.splits[split], cfg.batch_size, shuffle=False)
                res = training.evaluate(raw_model, loader_s, data.vocab, device, cfg, beam_width=cfg.beam_width, phoenix_cleanup=phoenix)
                w = final[split] = res.wer
                log(
                    f"{split} WER {w.wer:.2%} ({final_decoder}; {w.substitutions} sub, {w.deletions} del, "
                    f"{w.insertions} ins over {w.n_ref_words} words)"
                )
        gap = generalisation_gap({s: w.wer for s, w in final.items()})
        if gap:
            log(gap)
    return 0


def generalisation_gap(wers: dict) -> str:
    """The train vs dev/test gap of the final WERs; a warning when the model fits train and not
    the unseen split (dev/test signers it never saw)."""
    if "train" not in wers or len(wers) < 2:
        return ""
    unseen = {s: w for s, w in wers.items() if s != "train"}
    worst_split, worst = max(unseen.items(), key=lambda kv: kv[1])
    line = "generalisation gap: train WER {:.2%} vs {}".format(wers["train"], ", ".join(f"{s} {w:.2%}" for s, w in unseen.items()))
    if worst - wers["train"] > GAP_WARN and worst > 2 * wers["train"]:
        line = (f"WARNING: the model fits train ({wers['train']:.2%}) and not {worst_split} ({worst:.2%}): it learned the train "
                "signers, not the signs. Try: mirror / rotation / speed augmentation, more signers in train, more dropout or "
                "weight decay, a smaller model; the harness's shift check names how the splits differ")
    return line


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ComponentError as exc:  # a configured model/dataset/batch_transform that does not load or keep its contract
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
