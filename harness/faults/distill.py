"""Faults of distillation (the checks of harness/checks/distill.py catch them), and the small
competent teacher they distil from: `demo_teacher()` trains it once on the small demo corpus,
cached under .cache/ like the corpus; the fault catalogue and tests/test_distill.py use it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from data.dataset import Vocabulary
from model import training

# The small pair the fault catalogue and tests/test_distill.py use, over pose and hands: a wider
# StudentTCN as the teacher (trained once by demo_teacher) and a narrower one as the student. Not a
# small I3D: with i3d_small's sizes it needs 300+ steps to leave CTC's all-blank plateau on the
# demo corpus (measured: 87% dev WER after 360 steps, pose + hands), where this TCN reaches 5% dev
# WER in 360 steps (~20 s on one thread). The checks read only the teacher's contract and checkpoint.
DEMO_MODALITIES = ("pose", "hands")
TEACHER_MODEL_NAME = "student"
TEACHER_MODEL = {"modality_dim": 32, "hidden": 96}
SMALL_STUDENT = {"modality_dim": 16, "hidden": 48, "dilations": [1, 2, 4]}


# ----------------------------------------------------------------------------- the small demo teacher


def teacher_checkpoint_state(cfg, model, vocab: Vocabulary, stats, epoch: int, best_wer: float, metrics: list) -> dict:
    """A checkpoint as train.py writes it, without optimizer state (enough for a teacher)."""
    return {
        "model_name": cfg.model, "model_args": training.model_args(cfg, model, len(vocab), 0), "model": model.state_dict(),
        "vocab": vocab.to_list(), "norm_stats": stats.to_dict() if stats is not None else None, "epoch": epoch, "best_wer": best_wer,
        "config": cfg.to_dict(), "skipped_gate": True, "metrics": metrics, "teacher": None,
    }


def train_teacher(cfg, out_path: Path, eval_every: int = 5, target_wer: float = 0.0) -> dict:
    """Train cfg's model with model.training for cfg.epochs (stop early at target_wer dev WER, greedy),
    save the best (dev WER) as a train.py-style checkpoint at out_path; returns a summary."""
    from data.corpus import atomic_write

    training.seed_everything(cfg.seed)
    data = training.build_data(cfg)
    device = torch.device("cpu")
    model = training.build_model(cfg, len(data.vocab), data.input_dim).to(device)
    loader = training.make_loader(data.splits["train"], cfg.batch_size, shuffle=True, seed=cfg.seed)
    steps = max(1, len(loader) * cfg.epochs)
    optimizer = training.build_optimizer(cfg, model)
    scheduler = training.build_scheduler(cfg, optimizer, steps)
    scaler = training.make_scaler(device, cfg)
    dev = training.make_loader(data.splits.get("dev", data.splits["train"]), cfg.batch_size, shuffle=False)
    best, best_state, metrics, start = float("inf"), None, [], time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        losses = [training.train_step(model, b, optimizer, scaler, cfg, device, scheduler).loss for b in loader]
        if epoch % eval_every == 0 or epoch == cfg.epochs:
            wer = training.evaluate(model, dev, data.vocab, device, cfg, beam_width=1).wer.wer
            metrics.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "dev_wer": wer})
            if wer < best:
                best, best_state = wer, teacher_checkpoint_state(cfg, model, data.vocab, data.stats, epoch, wer, list(metrics))
                best_state["model"] = {k: v.detach().clone() for k, v in best_state["model"].items()}
            if best <= target_wer:
                break
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out_path, lambda f: torch.save(best_state, f))
    return {"dev_wer": best, "epoch": best_state["epoch"], "seconds": round(time.perf_counter() - start, 1), "metrics": metrics}


DEMO_TEACHER_DIR = "distill_teacher_v1"


def demo_teacher(cache_dir=None, corpus=None) -> Path:
    """A competent small teacher (TEACHER_MODEL, pose + hands) trained once on the demo corpus
    (240 train sentences; 12 epochs, ~20 s on one thread) into <cache>/distill_teacher_v1/best.pt,
    with train.json beside it. It has the small demo corpus's vocabulary (the same 12 glosses) and
    reads its features the way the fault catalogue's setups do. Safe under pytest-xdist: one
    process trains, the others wait for the file."""
    from data.synthetic import default_cache_root, demo_corpus
    from model.config import TrainConfig

    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    out = root / DEMO_TEACHER_DIR / "best.pt"
    if out.is_file():
        return out
    corpus = Path(corpus) if corpus is not None else demo_corpus(cache_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.is_file():
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                cfg = TrainConfig(data_dir=str(corpus), model=TEACHER_MODEL_NAME, model_overrides=dict(TEACHER_MODEL), device="cpu",
                                  modalities=DEMO_MODALITIES, seed=0, epochs=12, batch_size=8, lr=3e-3, warmup_steps=20, cache_mb=512)
                summary = train_teacher(cfg, out, eval_every=2, target_wer=0.0)
            finally:
                torch.set_num_threads(threads)
            from data.corpus import atomic_write_text

            atomic_write_text(out.parent / "train.json", json.dumps(summary, indent=1))
    return out


# ----------------------------------------------------------------------------- the faults (harness/faults/catalogue.py)


def _distilling(setup, teacher_path=None, **changes):
    """The setup, distilling SMALL_STUDENT from the demo teacher (or teacher_path)."""
    cfg = setup.cfg.replace(model="student", model_overrides=dict(SMALL_STUDENT), modalities=DEMO_MODALITIES,
                            teacher=str(teacher_path or demo_teacher()), **changes)
    return dataclasses.replace(setup, cfg=cfg)


@contextlib.contextmanager
def _fresh_teachers():
    training.clear_teacher_cache()
    try:
        yield
    finally:
        training.clear_teacher_cache()


def _teacher_copy(setup, name: str, edit) -> Path:
    """A copy of the demo teacher beside the setup's corpus, its checkpoint dict passed through edit."""
    ckpt = torch.load(demo_teacher(), map_location="cpu", weights_only=True)
    path = Path(setup.corpus).parent / name
    torch.save(edit(ckpt), path)
    return path


@contextlib.contextmanager
def healthy_distillation(setup):
    with _fresh_teachers():
        yield _distilling(setup)


@contextlib.contextmanager
def shuffled_teacher_vocabulary(setup):
    """A coherent teacher whose vocabulary has another order (built in order of first appearance,
    say, not sorted): its classifier rows are permuted with it, so it is as good as before, but
    its id k is another gloss than the student's id k."""

    def edit(ckpt):
        glosses = list(ckpt["vocab"])
        order = list(range(len(glosses)))
        rng = np.random.default_rng(0)
        while order == sorted(order):
            rng.shuffle(order)
        ckpt["vocab"] = [glosses[i] for i in order]
        rows = torch.tensor([0] + [i + 1 for i in order])  # new id j+1 holds old id order[j]+1; blank stays 0
        for key in ("classifier.weight", "classifier.bias"):
            ckpt["model"][key] = ckpt["model"][key][rows].clone()
        return ckpt

    with _fresh_teachers():
        yield _distilling(setup, _teacher_copy(setup, "teacher_shuffled_vocab.pt", edit))


@contextlib.contextmanager
def teacher_train_mode(setup):
    """The teacher left in train mode: held inside the trained module, model.train() switches it
    back every step, so its dropout is active and its batch norms use (and update) batch statistics."""

    def freeze_keeping_train_mode(module):
        module.train()
        for p in module.parameters():
            p.requires_grad_(False)
        return module

    with _fresh_teachers(), mock.patch("model.distill.freeze_teacher", freeze_keeping_train_mode):
        yield _distilling(setup, _teacher_copy(setup, "teacher_train_mode.pt", lambda c: c))


@contextlib.contextmanager
def teacher_other_normalization(setup):
    """The student trains on global z-scores; the teacher checkpoint was trained on body normalization."""
    with _fresh_teachers():
        yield _distilling(setup, normalize="global")


@contextlib.contextmanager
def temperature_zero(setup):
    with _fresh_teachers():
        yield _distilling(setup, distill_temperature=0.0)


@contextlib.contextmanager
def untrained_teacher(setup):
    """The teacher checkpoint holds initial weights (the wrong file: saved before training, or a run
    that never learned): its vocabulary and pipeline match, it just knows nothing."""

    def edit(ckpt):
        from model.registry import model_from_checkpoint_args

        torch.manual_seed(0)
        ckpt["model"] = model_from_checkpoint_args(ckpt["model_name"], dict(ckpt["model_args"])).state_dict()
        return ckpt

    with _fresh_teachers():
        yield _distilling(setup, _teacher_copy(setup, "teacher_untrained.pt", edit))
