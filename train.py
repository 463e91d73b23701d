"""Train the I3D teacher with CTC on a corpus; the compatibility gate runs first.

    python train.py                                   # embedded demo corpus, defaults
    python train.py --data_dir DIR --output_dir DIR --batch_size 2 --epochs 100 --lr 0.0005
    python train.py --model i3d_small                 # a named variant (model/registry.py): the teacher at small widths
    python train.py --model student --teacher RUN/best.pt     # distil the small student from a teacher checkpoint
    python train.py --config my.toml                  # the user's model, dataset, collate_fn, train_step and conventions it declares
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from data.augment import LEAD_HANDS
from data.corpus import atomic_write, atomic_write_bytes, atomic_write_text
from data.dataset import Vocabulary
from data.layout import input_dim
from data.normalize import IMPUTATIONS, METHODS, FeatureStats
from model import training
from model.components import ComponentError, UserModel, to_device
from model.config import TrainConfig, load_config
from model.decode import decoder_label
from model.i3d import count_parameters, model_size_mb
from model.registry import list_models


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON or TOML training configuration (the file the harness reads); flags override it")
    p.add_argument("--data_dir", help="corpus directory (default: the embedded demo corpus, generated once)")
    p.add_argument("--output_dir")
    p.add_argument("--batch_size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--model", help=f"a registered model ({', '.join(list_models())}) or the user's factory 'module.path:attribute'")
    p.add_argument("--teacher", help="distil from this teacher checkpoint (train.py's best.pt / last.pt; same vocabulary, features, normalization)")
    p.add_argument("--distill_weight", type=float, help="loss = CTC + distill_weight * T^2 * KL(teacher_T || student_T)")
    p.add_argument("--distill_temperature", type=float, help="temperature T of the distillation posteriors")
    p.add_argument("--normalize", choices=METHODS)
    p.add_argument("--impute", choices=IMPUTATIONS)
    p.add_argument("--modalities", nargs="+", help="model inputs, a subset of pose hands face temporal (or motion: the temporal block of pose and hands alone), or all (default: pose hands face)")
    p.add_argument("--lead_hand", choices=LEAD_HANDS,
                   help="mirror each sample the other hand leads so this hand leads it, in every split (leading-hand canonicalisation)")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--gpu", action="store_true", help="shorthand for --device cuda")
    p.add_argument("--amp", action="store_true", default=None, help="mixed precision (bf16 by default; see amp_dtype)")
    p.add_argument("--grad_clip", type=float)
    p.add_argument("--ema_decay", type=float, help="score and keep an exponential moving average of the weights, decay a step (0: off)")
    p.add_argument("--seed", type=int)
    p.add_argument("--num_workers", type=int)
    p.add_argument("--beam_width", type=int)
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last.pt")
    p.add_argument("--skip-gate", dest="skip_gate", action="store_true", help="train even if the compatibility gate fails (recorded in checkpoints)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process (default: cores / processes)")
    args = p.parse_args(argv)
    device = "cuda" if args.gpu else args.device
    try:
        cfg = load_config(
            args.config, data_dir=args.data_dir, output_dir=args.output_dir, batch_size=args.batch_size, epochs=args.epochs,
            lr=args.lr, normalize=args.normalize, impute=args.impute, modalities=args.modalities, device=device, amp=args.amp,
            grad_clip=args.grad_clip, seed=args.seed, num_workers=args.num_workers, beam_width=args.beam_width,
            model=args.model, teacher=args.teacher, distill_weight=args.distill_weight, distill_temperature=args.distill_temperature,
            lead_hand=args.lead_hand, ema_decay=args.ema_decay,
        )
    except (ValueError, FileNotFoundError) as exc:  # a bad value or configuration file: one line and exit 2, as argparse does
        p.error(str(exc))
    return cfg, args


# oneDNN (the CPU convolutions and the LSTM) keeps the kernels it generates for each input shape in
# a cache of 1024 by default; batches of every length (each another time axis) need several
# thousand (forward, backward, layout reorders: ~4,400 after 3 epochs of real sentences of 14-166
# frames), so the default cache kept regenerating them: ~15% of a training step. oneDNN reads the
# variable once, at its first primitive (not at import): main() sets it first. The environment's wins.
ONEDNN_CACHE = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16384")


def main(argv=None) -> int:
    os.environ.setdefault(*ONEDNN_CACHE)
    # ------------------------------------------------------------------ configuration, this process
    cfg, args = parse_args(argv)
    proc = start_process(cfg, args)
    out = Path(cfg.output_dir)

    # ------------------------------------------------------------------ the gate: the harness checks this configuration first
    passed, gate_profile = gate_passed(cfg, args.skip_gate, proc, out)
    if not passed:
        return 1

    # ------------------------------------------------------------------ data, model, teacher
    ckpt = resume_checkpoint(out / "last.pt", proc.master) if args.resume else None
    data = load_data(cfg, ckpt, out, proc.master)
    model, model_args = load_model(cfg, data, proc)
    teacher = distillation_teacher(cfg, data, proc)

    # ------------------------------------------------------------------ loaders, optimiser, schedule (a resumed run's state)
    run = prepare_run(cfg, proc, out, data, model, model_args, teacher, args.skip_gate, ckpt)
    run.data_profile = data_profile(cfg, data, ckpt, out, proc.master, gate_profile)
    if proc.master and run.start_epoch == 1:
        log(first_batch(run))
    log(
        f"best.pt: lowest {run.select_split} WER, greedy decoding, checked every epoch"
        + (f" on the weight average (ema_decay {cfg.ema_decay})" if run.ema is not None else "")
        + ("" if run.select_split == "dev" else " (the corpus has no dev split)")
        + f"; the closing dev/test WER decode best.pt with {decoder_label(cfg.beam_width)} (python -m model.evaluate reproduces both)",
        proc.master,
    )

    # ------------------------------------------------------------------ train
    for epoch in range(run.start_epoch, cfg.epochs + 1):
        steps = train_epoch(run, epoch)
        if steps.stopped:
            return 2
        if proc.distributed:
            dist.barrier()
        if proc.master:
            end_epoch(run, epoch, steps)
        if proc.distributed:
            dist.barrier()

    # ------------------------------------------------------------------ final evaluation
    if proc.distributed:
        leave_process_group(run)
    if proc.master:
        final_evaluation(run)
    return 0


# ============================================================================ configuration, this process


@dataclass
class Process:
    """This process of the run: its rank among `world` processes (torchrun; 1 without) and its device."""

    rank: int
    local_rank: int
    world: int
    device: torch.device

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def start_process(cfg: TrainConfig, args) -> Process:
    """Device, process group (under torchrun), CPU threads, seed; rank 0 makes the output directory
    and the demo corpus (generated once, before other ranks read it)."""
    rank, local_rank, world = training.distributed_env()
    device = training.resolve_device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device(f"cuda:{local_rank}")
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // world))
    training.seed_everything(cfg.seed + rank)
    proc = Process(rank, local_rank, world, device)
    if proc.master:
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        training.corpus_dir(cfg)
    if proc.distributed:
        dist.barrier()
    return proc


# ============================================================================ the gate


def gate_passed(cfg: TrainConfig, skip_gate: bool, proc: Process, out: Path) -> tuple[bool, dict | None]:
    """The compatibility gate runs on rank 0 and every rank follows its verdict; --skip-gate trains
    without it. Also the train split's data profile the gate read off its scan (rank 0; None when
    it has none)."""
    if skip_gate:
        log("WARNING: --skip-gate: training WITHOUT the compatibility checks; this is recorded in every checkpoint", proc.master)
        return True, None
    passed, profile = True, None
    if proc.master:
        from harness.gate import run_gate

        verdict = run_gate(cfg, out)
        log(verdict.describe())
        passed, profile = verdict.passed, verdict.data_profile
    if proc.distributed:
        flag = torch.tensor([int(passed)])
        dist.broadcast(flag, 0)
        passed = bool(flag.item())
    return passed, profile


# ============================================================================ data, model, teacher


def resume_checkpoint(path: Path, master: bool) -> dict | None:
    """--resume: the last.pt to continue from (None when there is none yet)."""
    if not path.exists():
        log(f"--resume: no {path} yet, starting fresh", master)
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    log(f"resuming from {path} (epoch {ckpt['epoch']} done, best dev WER {ckpt['best_wer']:.2%}, greedy)", master)
    return ckpt


def load_data(cfg: TrainConfig, ckpt: dict | None, out: Path, master: bool) -> training.DataBundle:
    """Every split's dataset (a resumed run keeps its vocabulary and statistics); rank 0 writes
    config.json, vocab.json and norm_stats.npz."""
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
    return data


def data_profile(cfg: TrainConfig, data: training.DataBundle, ckpt: dict | None, out: Path, master: bool,
                 profile: dict | None = None) -> dict | None:
    """The train split's data profile (harness/profile.py: presence, leading hand, fps, length,
    speed, position, z scale), stored in every checkpoint and as OUTPUT_DIR/data_profile.json:
    `profile` (the gate's, read off its scan), else profiled here (--skip-gate, or a rank that
    did not run the gate). A resumed run compares it with the profile it began on and says when
    the data changed. A user's dataset without a corpus in this project's format gets the profile
    of what it yields (data/profile.py: profile_dataset: lengths, width, column moments)."""
    from data.profile import profile_dataset
    from harness.checks.drift import check_drift
    from harness.findings import PASS, SKIP
    from harness.profile import profile_corpus
    from harness.thresholds import resolve

    if profile is None:
        profile = profile_corpus(data.corpus.dir, split="train") if data.corpus is not None else profile_dataset(data.splits["train"], "train")
    before = (ckpt or {}).get("data_profile")
    if before is not None:
        changed = (before.get("samples"), before.get("frames")) != (profile.get("samples"), profile.get("frames"))
        drift = check_drift(before, profile, resolve(cfg.thresholds))
        if changed or drift.status not in (PASS, SKIP):
            log(f"WARNING: the train split changed since this run began ({before.get('samples')} samples / {before.get('frames')} frames, "
                f"now {profile.get('samples')} / {profile.get('frames')}); drift: {drift.summary}", master)
    if master:
        atomic_write_text(out / "data_profile.json", json.dumps(profile, indent=1))
    return profile


def load_model(cfg: TrainConfig, data: training.DataBundle, proc: Process) -> tuple[torch.nn.Module, dict]:
    """The configured model on the device (a user's factory through the declared conventions, as
    the harness checked it), and the model_args that rebuild it from a checkpoint alone."""
    model = training.build_model(cfg, len(data.vocab), data.input_dim, data.user_vocab).to(proc.device)
    model_args = training.model_args(cfg, model, len(data.vocab), data.input_dim)
    vocab = f"vocabulary {len(data.vocab)} (blank 0)"
    if data.user_vocab is not None:
        vocab = f"vocabulary {data.user_vocab.describe()}"
        if data.user_vocab.permutes:
            vocab += "; losses, decoding and WER read the output with the blank moved to 0"
    log(f"model {cfg.model}: {count_parameters(model):,} parameters, {model_size_mb(model):.2f} MB; {vocab}", proc.master)
    if isinstance(model, UserModel):
        log(f"  read through model.components.UserModel: {model.describe()}", proc.master)
    return model, model_args


def distillation_teacher(cfg: TrainConfig, data: training.DataBundle, proc: Process):
    """The configured teacher (model.distill.Teacher, frozen), None without one; a teacher that does
    not load or has another vocabulary stops the run, even with --skip-gate (distillation over
    another vocabulary teaches the wrong glosses)."""
    if cfg.teacher is None:
        return None
    from model.distill import TeacherLoadError

    try:
        teacher = training.teacher_for(cfg, proc.device)
    except TeacherLoadError as exc:
        raise SystemExit(f"error: {exc}") from None
    problem = training.teacher_vocab_problem(teacher, data.vocab)
    if problem:
        raise SystemExit(f"error: teacher {cfg.teacher}: {problem}; distillation needs the student's vocabulary (ids and glosses)")
    log(
        f"teacher {teacher.model_name} ({count_parameters(teacher.module, trainable_only=False):,} parameters, frozen, eval mode) from "
        f"{teacher.path} (sha256 {teacher.sha256[:12]}); loss = CTC + {cfg.distill_weight:g} * T^2 KL at T = {cfg.distill_temperature:g}",
        proc.master,
    )
    return teacher


# ============================================================================ loaders, optimiser, schedule


@dataclass
class Run:
    """What the epochs update and every checkpoint records."""

    cfg: TrainConfig
    proc: Process
    out: Path
    data: training.DataBundle
    raw_model: torch.nn.Module  # the model itself: its state_dict is the checkpoint's
    # what the steps call: raw_model, or its DistributedDataParallel wrapper; with the user's
    # train_step the user's own module (training.user_module), or its wrapper
    model: torch.nn.Module
    model_args: dict  # rebuild raw_model alone (model.registry.model_from_checkpoint_args)
    teacher: object  # model.distill.Teacher, or None without distillation
    skipped_gate: bool
    sampler: training.LengthBucketSampler | training.ShardedSampler  # the shard's batches of similar length (a user's dataset: its shard)
    loader: torch.utils.data.DataLoader  # this rank's shard of the train split
    dev_loader: torch.utils.data.DataLoader  # what the epoch lines score: dev, or train without a dev split
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    phoenix: bool  # the PHOENIX clean-up of the scored glosses
    user_step: object = None  # the user's train_step (model.components.TrainStep), None: training.train_step
    start_epoch: int = 1
    global_step: int = 0
    best_wer: float = float("inf")  # lowest greedy WER of the epoch lines so far (best.pt's)
    metrics: list = field(default_factory=list)  # one row a finished epoch, as in metrics.jsonl
    data_profile: dict | None = None  # the train split's profile (harness/profile.py; a user's dataset: data/profile.py: profile_dataset)
    ema: object = None  # the weight average (model.training.weight_average; ema_decay > 0), else None

    @property
    def scored_model(self) -> torch.nn.Module:
        """What the dev WER scores and the checkpoints' "model" hold: the weight average, else the model."""
        return self.ema.module if self.ema is not None else self.raw_model

    @property
    def select_split(self) -> str:
        return "dev" if "dev" in self.data.splits else "train"


def prepare_run(cfg: TrainConfig, proc: Process, out: Path, data: training.DataBundle, model, model_args: dict, teacher, skipped_gate: bool,
                ckpt: dict | None) -> Run:
    """DDP wrapper, train loader (one shard a rank), optimiser, LR schedule, scaler, dev loader; a
    resumed run restores the weights, optimiser, schedule, scaler, RNG state and metrics of last.pt.
    With the user's train_step, it steps the user's own module, on the batches it takes."""
    user_step = training.load_user_step(cfg)
    ddp = training.user_module(model) if user_step is not None else model
    if proc.distributed:
        ddp = torch.nn.parallel.DistributedDataParallel(ddp, device_ids=[proc.device.index] if proc.device.type == "cuda" else None)
    train_ds = data.splits["train"]
    train_batches = data.batches.for_train_step() if user_step is not None else data.batches
    lengths = training.dataset_lengths(train_ds)
    if lengths is not None:  # batches of similar length: less padding to compute on
        sampler = training.LengthBucketSampler(lengths, cfg.batch_size, proc.rank, proc.world, seed=cfg.seed)
        loader = training.make_loader(train_ds, cfg.batch_size, shuffle=False, num_workers=cfg.num_workers, batches=train_batches, batch_sampler=sampler)
    else:
        sampler = training.ShardedSampler(len(train_ds), proc.rank, proc.world, seed=cfg.seed)
        loader = training.make_loader(train_ds, cfg.batch_size, shuffle=False, num_workers=cfg.num_workers, sampler=sampler, batches=train_batches)
    # the same on every rank (shards differ by at most one sample), so the LR schedules agree
    steps_per_epoch = math.ceil(math.ceil(len(train_ds) / proc.world) / cfg.batch_size)
    optimizer = training.build_optimizer(cfg, model)
    scheduler = training.build_scheduler(cfg, optimizer, total_steps=max(1, steps_per_epoch * cfg.epochs))
    scaler = training.make_scaler(proc.device, cfg)
    dev_loader = training.make_loader(data.splits.get("dev", train_ds), cfg.batch_size, shuffle=False, batches=data.batches)
    phoenix = cfg.phoenix_cleanup if cfg.phoenix_cleanup is not None else data.corpus_kind.startswith("phoenix")
    run = Run(cfg, proc, out, data, model, ddp, model_args, teacher, skipped_gate, sampler, loader, dev_loader, optimizer, scheduler, scaler, phoenix,
              user_step)
    if cfg.collate_fn is not None:
        log(f"batches: collate_fn {cfg.collate_fn!r} (its features, lengths and sample order; targets from the items' labels)", proc.master)
    if user_step is not None:
        log(user_step_note(cfg), proc.master)
    run.ema = training.weight_average(model, cfg.ema_decay)
    if ckpt:
        # with a weight average, "model" holds the average and "train_model" the weights as trained
        model.load_state_dict(ckpt.get("train_model") or ckpt["model"])
        if run.ema is not None and ckpt.get("ema_steps"):
            run.ema.module.load_state_dict(ckpt["model"])
            run.ema.n_averaged.fill_(ckpt["ema_steps"])
        elif run.ema is not None:  # a run that had no average: it starts from the resumed weights
            run.ema.update_parameters(model)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        run.start_epoch, run.best_wer = ckpt["epoch"] + 1, ckpt["best_wer"]
        run.metrics = list(ckpt.get("metrics", []))
    run.global_step = (run.start_epoch - 1) * steps_per_epoch
    return run


def user_step_note(cfg: TrainConfig) -> str:
    """What the user's train_step is in charge of, and what the trainer still does."""
    off = [f"grad_clip = {cfg.grad_clip:g}"] + (["amp"] if cfg.amp else []) + ([f"batch_transform {cfg.batch_transform!r}"] if cfg.batch_transform else [])
    return (
        f"train_step {cfg.train_step!r} trains each batch: the backward pass, gradient clipping and mixed precision (AMP) are its own, "
        f"so this configuration's {', '.join(off)} {'is' if len(off) == 1 else 'are'} not applied to its steps"
        f"{' (evaluation still applies the batch_transform)' if cfg.batch_transform else ''}; the trainer builds its optimizer "
        f"(lr {cfg.lr:g}), steps the learning-rate schedule after each finite step and reports a non-finite loss it returns, or "
        f"non-finite parameters after it (nonfinite = {cfg.nonfinite!r})"
    )


def first_batch(run: Run) -> str:
    """harness.diagnostics.first_batch_report on the first train batch, as the model sees it."""
    from harness.diagnostics import first_batch_report

    cfg, train_ds = run.cfg, run.data.splits["train"]
    batch = run.data.batches.batch(train_ds, list(range(min(cfg.batch_size, len(train_ds)))))
    first = training.to_model_input(batch, run.proc.device, training.batch_transform(cfg))
    layout = cfg.modalities if first.features.shape[-1] == input_dim(cfg.modalities) else None
    return first_batch_report(run.raw_model, first, layout, len(run.data.vocab))


# ============================================================================ train


@dataclass
class EpochSteps:
    """One epoch's optimisation steps on this rank."""

    losses: list = field(default_factory=list)  # the loss of every finite batch
    frames: int = 0  # valid input frames of those batches
    skipped: int = 0  # batches skipped for a non-finite loss or gradient (nonfinite = "skip")
    seconds: float = 0.0
    stopped: bool = False  # a non-finite batch stopped the run (nonfinite = "stop")


def train_epoch(run: Run, epoch: int) -> EpochSteps:
    """One pass over this rank's shard (DDP: ranks with one batch fewer join the others)."""
    from tqdm import tqdm

    cfg, proc = run.cfg, run.proc
    run.sampler.set_epoch(epoch)
    # augmentation draws by epoch (epoch 1: draw 0), not by how often this process has read a
    # sample: the same draws after --resume, and new ones every epoch in DataLoader workers,
    # which start from a fresh copy of the dataset each epoch
    set_draw = getattr(run.data.splits["train"], "set_epoch", None)
    if set_draw is not None:
        set_draw(epoch - 1)
    steps, t0 = EpochSteps(), time.perf_counter()
    with run.model.join() if proc.distributed else nullcontext():
        for entry in tqdm(run.loader, desc=f"epoch {epoch}/{cfg.epochs}", disable=not proc.master or not sys.stderr.isatty(), leave=False):
            if run.user_step is not None:
                raw, batch = entry
                res = training.user_train_step(run.user_step, run.model, run.raw_model, to_device(raw, proc.device), batch, run.optimizer, cfg,
                                               proc.device, run.scheduler)
            else:
                batch = entry
                res = training.train_step(run.model, batch, run.optimizer, run.scaler, cfg, proc.device, run.scheduler)
            run.global_step += 1
            if not res.finite:
                report_nonfinite(run, batch, res, epoch)
                if res.nonfinite_parameters:
                    log("stopping: the parameters are non-finite after the step, and skipping the batch cannot undo its update; "
                        "check torch.isfinite(loss) (and the gradient norm) before optimizer.step() in the train_step; replay: pytest --replay "
                        + str(run.out / "nonfinite_batch.pt"))
                    steps.stopped = True
                    return steps
                if cfg.nonfinite == "stop":
                    log("stopping (set nonfinite='skip' in the configuration to skip such batches); replay: pytest --replay " + str(run.out / "nonfinite_batch.pt"))
                    steps.stopped = True
                    return steps
                steps.skipped += 1
                continue
            if run.ema is not None:
                run.ema.update_parameters(run.raw_model)
            steps.losses.append(res.loss)
            steps.frames += int(batch.lengths.sum())
    steps.seconds = time.perf_counter() - t0
    return steps


def report_nonfinite(run: Run, batch, res: training.StepResult, epoch: int) -> None:
    """Save the batch the model saw and the model state to OUTPUT_DIR/nonfinite_batch.pt (pytest --replay), and say where it broke."""
    from harness.diagnostics import save_nonfinite_batch

    cfg = run.cfg
    seen = training.to_model_input(batch, run.proc.device, training.batch_transform(cfg))
    where = save_nonfinite_batch(run.out / "nonfinite_batch.pt", run.raw_model, seen, cfg.model, run.model_args, run.global_step, epoch, cfg.to_dict())
    what = res.reason or ("non-finite loss" if not math.isfinite(res.loss) else "non-finite gradient norm")
    log(f"{what} at epoch {epoch} step {run.global_step}, samples {res.nonfinite_ids}: {where}", True)


def end_epoch(run: Run, epoch: int, steps: EpochSteps) -> None:
    """Rank 0 after an epoch: the greedy WER of the dev split, a row of metrics.jsonl (and
    metrics.png), last.pt, best.pt when the WER is the lowest yet, the epoch line."""
    cfg, data = run.cfg, run.data
    dev = training.evaluate(run.scored_model, run.dev_loader, data.vocab, run.proc.device, cfg, beam_width=1, phoenix_cleanup=run.phoenix)
    row = {
        "epoch": epoch,
        "train_loss": float(np.mean(steps.losses)) if steps.losses else float("nan"),
        "dev_wer": dev.wer.wer,
        "lr": run.scheduler.get_last_lr()[0],
        "seconds": round(steps.seconds, 2),
        "frames_per_s": round(steps.frames * run.proc.world / max(steps.seconds, 1e-9), 1),
        "skipped_batches": steps.skipped,
        "dev_blank_share": round(dev.blank_share, 4),
    }
    run.metrics.append(row)
    with open(run.out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    plot_metrics(run.metrics, run.out / "metrics.png")
    improved = dev.wer.wer < run.best_wer
    run.best_wer = min(run.best_wer, dev.wer.wer)
    state = checkpoint_state(run, epoch)
    save_checkpoint(run.out / "last.pt", state)
    if improved:
        save_checkpoint(run.out / "best.pt", state)
    log(
        f"epoch {epoch:3d}  loss {row['train_loss']:.4f}  {run.select_split} WER {dev.wer.wer:.2%} (greedy)  lr {row['lr']:.2e}  "
        f"{steps.seconds:.1f}s  {row['frames_per_s']:.0f} frames/s{'  *best*' if improved else ''}"
    )
    plateau = blank_plateau(run.metrics, len(run.loader))
    if plateau:
        log(plateau)


def checkpoint_state(run: Run, epoch: int) -> dict:
    """last.pt / best.pt: the model (name, args, weights), what it reads (vocabulary, statistics), what resumes the run."""
    return {
        "model_name": run.cfg.model,
        "model_args": run.model_args,
        "model": run.scored_model.state_dict(),
        "train_model": run.raw_model.state_dict() if run.ema is not None else None,
        "ema_steps": int(run.ema.n_averaged) if run.ema is not None else 0,  # the steps "model" averages
        "vocab": run.data.vocab.to_list(),
        "norm_stats": run.data.stats.to_dict() if run.data.stats is not None else None,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": epoch,
        "best_wer": run.best_wer,
        "rng": rng_state(),
        "config": run.cfg.to_dict(),
        "skipped_gate": bool(run.skipped_gate),
        # the teacher this model learned from: path, sha256 of the file, its vocabulary (None: no distillation)
        "teacher": run.teacher.record() if run.teacher is not None else None,
        "metrics": run.metrics,
        # what the model learnt from: `python -m harness drift --reference CKPT --data DIR` compares new data with it
        "data_profile": run.data_profile,
    }


# ============================================================================ final evaluation


def leave_process_group(run: Run) -> None:
    """Leave the group in step, after the DDP wrapper (whose reducer holds gloo work) is gone: a
    rank tearing gloo down while work or a peer is pending can abort (SIGABRT, seen once in CI).
    The final evaluation needs no collectives."""
    run.model = run.raw_model
    dist.barrier()
    dist.destroy_process_group()


def final_evaluation(run: Run) -> None:
    """Rank 0: best.pt's WER on every split with the configured decoder, then the generalisation gap."""
    cfg, data = run.cfg, run.data
    best_path = run.out / "best.pt"
    if best_path.exists():
        run.raw_model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["model"])
    final = {}
    for split in ("train", "dev", "test"):
        if split in data.splits:
            loader = training.make_loader(data.splits[split], cfg.batch_size, shuffle=False, batches=data.batches)
            res = training.evaluate(run.raw_model, loader, data.vocab, run.proc.device, cfg, beam_width=cfg.beam_width, phoenix_cleanup=run.phoenix)
            w = final[split] = res.wer
            log(
                f"{split} WER {w.wer:.2%} ({decoder_label(cfg.beam_width)}; {w.substitutions} sub, {w.deletions} del, "
                f"{w.insertions} ins over {w.n_ref_words} words)"
            )
    gap = generalisation_gap({s: w.wer for s, w in final.items()})
    if gap:
        log(gap)


# ============================================================================ helpers


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
    """metrics.png: train loss and dev WER (greedy) by epoch."""
    from harness.plots import new_figure, png_bytes

    fig, ax1 = new_figure((7, 4))
    epochs = [r["epoch"] for r in rows]
    ax1.plot(epochs, [r["train_loss"] for r in rows], "b-", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("CTC loss", color="b")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [r["dev_wer"] for r in rows], "r-", label="dev WER (greedy)")
    ax2.set_ylabel("dev WER (greedy)", color="r")
    atomic_write_bytes(path, png_bytes(fig, dpi=90))


GAP_WARN = 0.10  # an unseen split's WER this much (absolute) above train's, and over twice it, is a warning
PLATEAU_EPOCHS = 3  # epochs in a row with >= PLATEAU_BLANK_SHARE of the dev frames blank before train.py warns ...
# ... and at least this many optimiser steps: a healthy CTC run starts all blank for a while
# (the default model on the demo corpus: 3 epochs of 31 steps, ~95 steps, with mirror augmentation;
# the small I3D variant 300+ steps), so on a small corpus 3 epochs are no plateau yet
PLATEAU_STEPS = 300


def plateau_epochs(steps_per_epoch: int | None) -> int:
    """Epochs of all-blank dev decoding that make a plateau (PLATEAU_EPOCHS, or more on a small corpus)."""
    if not steps_per_epoch:
        return PLATEAU_EPOCHS
    return max(PLATEAU_EPOCHS, math.ceil(PLATEAU_STEPS / steps_per_epoch))


def blank_plateau(rows: list[dict], steps_per_epoch: int | None = None) -> str:
    """A warning when the last plateau_epochs(steps_per_epoch) epochs decoded dev as (almost) nothing but blanks."""
    from harness.checks.training import PLATEAU_BLANK_SHARE

    n = plateau_epochs(steps_per_epoch)
    last = [r.get("dev_blank_share", 0.0) for r in rows[-n:]]
    if len(last) < n or min(last) < PLATEAU_BLANK_SHARE or (len(rows) > n and rows[-n - 1].get("dev_blank_share", 0.0) >= PLATEAU_BLANK_SHARE):
        return ""  # said once, when the run enters the plateau
    return (
        f"WARNING: CTC sits on its all-blank plateau: {min(last):.0%}+ of the dev output frames decode as blank for "
        f"{n} epochs{f' ({n * steps_per_epoch} steps)' if steps_per_epoch else ''}. Try: a higher learning rate or a longer warm-up (warmup_steps), check that the input "
        "carries signal (python -m harness check; its model_input check), a per-channel normalization in the conv blocks "
        "(norm = \"batch\"), or `python -m harness overfit` on this configuration"
    )


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
