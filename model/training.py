"""Training building blocks shared by train.py and the harness smoke/overfit checks.

Everything a training step does lives here once: building datasets, model, optimizer and
scheduler from a TrainConfig, the autocast context, one optimisation step, evaluation.
The harness runs these same functions, so what it checks is what training runs.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import random
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from data.corpus import CORPUS_INFO, Corpus
from data.dataset import Batch, MediaPipeFeatureDataset, Vocabulary, collate, compute_train_stats
from data.normalize import FeatureStats
from model.components import (
    ComponentError, ExternalDataset, UserModel, UserVocabulary, apply_transform, batch_from_user, build_user_model, is_component_path, item_key_map,
    load_batch_transform, load_collate_fn, load_external_splits, load_train_step, load_user_vocab, parse_item, step_batch,
)
from model.config import TrainConfig
from model.ctc import ctc_loss_per_sample
from model.decode import beam_search, greedy_decode
from model.masking import pad_mask
from model.metrics import word_error_rate
from model.registry import create_model
from model.distill import Teacher, distillation_loss, load_teacher, teacher_posteriors


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def corpus_dir(cfg: TrainConfig):
    if cfg.data_dir is not None:
        return cfg.data_dir
    from data.synthetic import demo_corpus

    return demo_corpus()


@dataclass
class DataBundle:
    corpus: Corpus | None  # None for a user dataset without a corpus
    vocab: Vocabulary
    stats: FeatureStats | None
    splits: dict  # split name -> MediaPipeFeatureDataset or ExternalDataset (only splits that have samples)
    corpus_kind: str = ""  # "dataset" of corpus.json (e.g. phoenix2014, phoenix2014T), written by importers
    # the ids the user's labels, model output and train_step use (user_vocabulary), None when they are
    # this project's (blank 0); `vocab` is always the project's order, blank 0, what decoding reads
    user_vocab: UserVocabulary | None = None
    batches: "Batches" = field(default_factory=lambda: Batches())  # how its loaders batch (the user's collate_fn, or collate)

    @property
    def input_dim(self) -> int:
        return int(self.splits["train"][0].features.shape[1])

    @property
    def source(self) -> str:
        """What the data comes from, for messages: the corpus directory or the user's dataset factory."""
        return str(self.corpus.dir) if self.corpus is not None else f"dataset {self.splits['train'].spec!r}"


def external_items(inner, spec: str, split: str, keys=None, user_vocab: UserVocabulary | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """(id, glosses) of every item of a user dataset split (one pass over its items), read with
    the configuration's item keys and vocabulary (model.components.parse_item)."""
    return [parse_item(inner[i], spec, split, i, keys, user_vocab)[::2] for i in range(len(inner))]


def declared_vocab(cfg: TrainConfig) -> UserVocabulary | None:
    """The vocabulary the configuration names (cfg.vocab, with cfg.blank), None without one."""
    return load_user_vocab(cfg.vocab, cfg.blank, cfg.config_dir) if cfg.vocab is not None else None


def user_vocabulary(cfg: TrainConfig, vocab: Vocabulary, declared: UserVocabulary | None = None) -> UserVocabulary | None:
    """The ids the user's labels, model output and train_step use: the declared vocabulary, else
    (cfg.blank != 0) the project's glosses `vocab` with the blank at cfg.blank; None when they
    are this project's own (blank 0, no vocabulary named)."""
    if declared is not None:
        return declared
    if cfg.blank != 0:
        return UserVocabulary.around_blank(vocab, cfg.blank)
    return None


def _declared_or_given(cfg: TrainConfig, declared: UserVocabulary | None, vocab: Vocabulary | None) -> Vocabulary | None:
    """The declared vocabulary in this project's order (blank 0) when there is one, else `vocab`
    (a checkpoint's, or None: built from train); a checkpoint's vocabulary must be the declared one."""
    if declared is None:
        return vocab
    if vocab is not None and vocab.to_list() != declared.internal.to_list():
        raise ComponentError(
            f"vocab = {cfg.vocab!r} now gives other glosses or another order ({len(declared) - 1} glosses) than the checkpoint's "
            f"vocabulary ({len(vocab) - 1} glosses): restore the vocabulary the model was trained with, or train a new model"
        )
    return declared.internal


def build_external_data(cfg: TrainConfig, vocab: Vocabulary | None = None) -> DataBundle:
    """The user's dataset factory, one ExternalDataset a split, read with the configuration's
    item_keys and vocab; the vocabulary is the declared one (in this project's order, blank 0),
    else built from the train items. `vocab` (a checkpoint's) must be the declared one when
    there is one."""
    keys = item_key_map(cfg.item_keys)
    declared = declared_vocab(cfg)
    inner = load_external_splits(cfg.dataset, cfg.config_dir, cfg.data_dir)
    vocab = _declared_or_given(cfg, declared, vocab)
    if vocab is None:
        vocab = Vocabulary(sorted({g for _, glosses in external_items(inner["train"], cfg.dataset, "train", keys) for g in glosses}))
    width = int(ExternalDataset(inner["train"], cfg.dataset, "train", vocab, keys=keys, user_vocab=declared).item(0)[1].shape[1])
    splits = {s: ExternalDataset(ds, cfg.dataset, s, vocab, width, keys=keys, user_vocab=declared) for s, ds in inner.items()}
    user_vocab = user_vocabulary(cfg, vocab, declared)
    batches = Batches(load_collate_fn(cfg.collate_fn, cfg.config_dir), cfg.collate_fn, keys, user_vocab)
    return DataBundle(None, vocab, None, splits, "", user_vocab, batches)


def build_data(cfg: TrainConfig, vocab: Vocabulary | None = None, stats: FeatureStats | None = None) -> DataBundle:
    """Datasets of every split with one vocabulary (the declared one, else from the train split)
    and (for global) one set of train statistics; how their loaders batch (DataBundle.batches)."""
    if cfg.dataset is not None:
        return build_external_data(cfg, vocab)
    corpus = Corpus(corpus_dir(cfg))
    declared = declared_vocab(cfg)
    vocab = _declared_or_given(cfg, declared, vocab) or Vocabulary.from_records(corpus.records)
    if cfg.normalize == "global" and stats is None:
        stats = compute_train_stats(corpus, cfg.impute, cfg.lead_hand)
    # DataLoader workers each hold a copy of the dataset: the cache serves the in-process loader only
    cache_bytes = cfg.cache_mb * 2**20 if cfg.num_workers == 0 else 0
    splits = {}
    for split in ("train", "dev", "test"):
        if corpus.split(split):
            splits[split] = MediaPipeFeatureDataset(
                corpus.dir, split, vocab=vocab, normalization=cfg.normalize, modalities=cfg.modalities,
                impute_method=cfg.impute, stats=stats, std_floor=cfg.std_floor, clip=cfg.clip, corpus=corpus,
                cache_bytes=cache_bytes,
                augment=cfg.augment if split == "train" else None, augment_seed=cfg.seed, lead_hand=cfg.lead_hand,
            )
    kind = ""
    if (corpus.dir / CORPUS_INFO).is_file():
        kind = str(json.loads((corpus.dir / CORPUS_INFO).read_text(encoding="utf-8")).get("dataset", ""))
    user_vocab = user_vocabulary(cfg, vocab, declared)
    return DataBundle(corpus, vocab, stats, splits, kind, user_vocab, Batches(user_vocab=user_vocab))


def build_model(cfg: TrainConfig, vocab_size: int, input_dim: int | None = None, user_vocab: UserVocabulary | None = None) -> torch.nn.Module:
    """The configured model: a registered name (built for cfg.modalities), or the user's factory
    called as factory(vocab_size, input_dim, **model_overrides) and held to the model contract
    through the declared conventions, as the harness builds it (model.components.build_user_model:
    the user's module, or a UserModel around it). `user_vocab` (DataBundle.user_vocab) gives the
    permutation that moves the user's blank to 0."""
    if is_component_path(cfg.model):
        if input_dim is None:
            from data.layout import input_dim as layout_dim

            input_dim = layout_dim(cfg.modalities)
        order = user_vocab.order if user_vocab is not None and user_vocab.permutes else None
        return build_user_model(cfg, vocab_size, input_dim, order, cfg.blank)
    overrides = {**cfg.model_overrides, "vocab_size": vocab_size, "modalities": tuple(cfg.modalities)}
    return create_model(cfg.model, **overrides)


def model_args(cfg: TrainConfig, model: torch.nn.Module, vocab_size: int, input_dim: int) -> dict:
    """What rebuilds the model from a checkpoint alone: its config dataclass, or a factory's arguments."""
    if is_component_path(cfg.model):  # model.registry.model_from_checkpoint_args calls the factory with them
        return {"vocab_size": vocab_size, "input_dim": input_dim, **cfg.model_overrides}
    return dataclasses.asdict(model.config)


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one pass over each parameter (4 ms a step for the default model on 2 CPU cores, where
    # the per-tensor loop torch picks on CPU takes 17: 8 passes and 2 temporaries a tensor, and
    # foreach 22); the same AdamW to float32 rounding. Where it is not available, torch's default
    params = [p for g in groups for p in g["params"]]
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused or None)


def weight_average(model: torch.nn.Module, decay: float):
    """An exponential moving average of the model's weights and float buffers, what the epoch lines
    score and the checkpoints' "model" hold (torch.optim.swa_utils.AveragedModel; update it after
    each optimiser step with .update_parameters(model)), or None where decay is 0. Step n of the
    average weighs the old average min(decay, (1 + n) / (10 + n)): the first steps' weights fade
    fast instead of holding it near the initialisation (n: the updates averaged before)."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel

    def ema(averaged, current, n):
        if not averaged.is_floating_point():  # counters (BatchNorm's num_batches_tracked): the current one
            return current
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return averaged * d + current * (1.0 - d)

    return AveragedModel(model, avg_fn=ema, use_buffers=True)


def clip_gradients(params: list, max_norm: float) -> float:
    """torch.nn.utils.clip_grad_norm_(params, max_norm) (max_norm <= 0: no clipping), returning the
    total norm as a float: the same gradients, without rescaling them by exactly 1 when the norm is
    within max_norm (a pass over every gradient a step saves)."""
    if not params:
        return 0.0
    total = torch.nn.utils.get_total_norm([p.grad for p in params], 2.0)
    norm = float(total)
    if max_norm > 0 and not max_norm / (norm + 1e-6) >= 1.0:  # clip_grad_norm_'s coefficient, clamped at 1 (NaN: scaled, as it does)
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return norm


def build_scheduler(cfg: TrainConfig, optimizer, total_steps: int):
    """Linear warm-up, then cosine decay to 10% of the peak learning rate."""
    warmup = max(0, min(cfg.warmup_steps, total_steps // 4))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast_context(device: torch.device, cfg: TrainConfig):
    """One autocast path for CPU/bf16/fp16 (nanoGPT style)."""
    if not cfg.amp:
        return nullcontext()
    dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(device: torch.device, cfg: TrainConfig):
    return torch.amp.GradScaler(device.type, enabled=cfg.amp and cfg.amp_dtype == "float16")


@functools.lru_cache(maxsize=None)
def transform_function(spec: str, base_dir: str | None):
    """The user's batch_transform `spec` as fn(features, lengths) -> features, imported once a process."""
    return load_batch_transform(spec, base_dir)


def batch_transform(cfg: TrainConfig):
    """The configured batch_transform as fn(batch) -> batch (None if none is configured)."""
    if cfg.batch_transform is None:
        return None
    fn = transform_function(cfg.batch_transform, cfg.config_dir)

    def transform(batch: Batch) -> Batch:
        return dataclasses.replace(batch, features=apply_transform(fn, batch.features, batch.lengths, cfg.batch_transform))

    return transform


def to_model_input(batch: Batch, device: torch.device, transform=None) -> Batch:
    """Loader batch -> device -> the configured batch_transform (what the user's loop does there).

    The project's own pipeline configures none: its dataset owns normalization."""
    batch = batch.to(device)
    return transform(batch) if transform is not None else batch


@dataclass
class StepResult:
    loss: float  # mean per-sample loss (normalised by target length), nan if non-finite
    grad_norm: float  # global grad norm before clipping
    per_sample: torch.Tensor  # [B] losses (detached, float32)
    finite: bool  # False: the loss or the gradients were not finite and no update was made (the caller stops or skips)
    nonfinite_ids: list  # samples whose loss was not finite (every sample of the batch for non-finite gradients)
    # the user's train_step only (user_train_step): what was not finite, in words, and the
    # parameters its update left non-finite (then skipping the batch cannot undo it)
    reason: str = ""
    nonfinite_parameters: list = field(default_factory=list)


_TEACHERS: dict = {}  # (resolved path, mtime, size, device) -> Teacher: loaded once a process


def teacher_for(cfg: TrainConfig, device: torch.device) -> Teacher | None:
    """The configured teacher (cfg.teacher), loaded once (weights_only) and frozen; None without one.
    A rewritten file (other mtime or size) is loaded again."""
    if cfg.teacher is None:
        return None
    path = os.path.abspath(cfg.teacher)
    try:
        st = os.stat(path)
    except OSError:
        return load_teacher(path, device)  # raises TeacherLoadError naming the file
    key = (path, st.st_mtime_ns, st.st_size, str(device))
    if key not in _TEACHERS:
        _TEACHERS[key] = load_teacher(path, device)
    return _TEACHERS[key]


def clear_teacher_cache() -> None:
    _TEACHERS.clear()


def teacher_vocab_problem(teacher: Teacher, vocab: Vocabulary) -> str:
    """'' if the teacher's vocabulary is the student's (same glosses, same ids), else what differs."""
    mine, theirs = vocab.to_list(), list(teacher.vocab)
    if mine == theirs:
        return ""
    if set(mine) == set(theirs):
        moved = [g for i, g in enumerate(mine) if theirs[i] != g]
        g = moved[0]
        return (f"the vocabulary order differs: {len(moved)} of {len(mine)} glosses have other ids, e.g. {g!r} is id "
                f"{theirs.index(g) + 1} in the teacher and {mine.index(g) + 1} in the student")
    missing, extra = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
    return (f"the vocabularies differ: teacher {len(theirs)} glosses, student {len(mine)}; "
            f"not in the teacher {missing[:5]}{' ...' if len(missing) > 5 else ''}, only in the teacher {extra[:5]}{' ...' if len(extra) > 5 else ''}")


def loss_terms(model, batch: Batch, device: torch.device, cfg: TrainConfig):
    """Forward, CTC and (with a teacher) distillation: (ctc [B], distill [B] or None, out_lengths).

    distill = T^2 KL(teacher_T || student_T) per sample over its valid frames (model.distill.
    distillation_loss; the teacher's posteriors aligned onto the student's frames where the
    strides differ), not yet weighted."""
    with autocast_context(device, cfg):
        log_probs, out_lengths = model(batch.features, batch.lengths)
    ctc = ctc_loss_per_sample(log_probs, out_lengths, batch.targets, batch.target_lengths)
    teacher = teacher_for(cfg, device) if cfg.distill_weight > 0 else None
    if teacher is None:
        return ctc, None, out_lengths
    with autocast_context(device, cfg):
        teacher_lp, teacher_lengths = teacher_posteriors(teacher.module, batch.features, batch.lengths)
    distill = distillation_loss(log_probs, out_lengths, teacher_lp, teacher_lengths, cfg.distill_temperature)
    return ctc, distill, out_lengths


def compute_loss(model, batch: Batch, device: torch.device, cfg: TrainConfig):
    """Forward + CTC (+ distill_weight * distillation with a teacher): (mean loss, per-sample losses [B], out_lengths)."""
    ctc, distill, out_lengths = loss_terms(model, batch, device, cfg)
    per_sample = ctc if distill is None else ctc + cfg.distill_weight * distill
    return per_sample.mean(), per_sample, out_lengths


def train_step(model, batch: Batch, optimizer, scaler, cfg: TrainConfig, device: torch.device, scheduler=None) -> StepResult:
    """One optimisation step. Non-finite loss or gradients: no update (the caller stops or skips)."""
    model.train()
    batch = to_model_input(batch, device, batch_transform(cfg))
    optimizer.zero_grad(set_to_none=True)
    loss, per_sample, _ = compute_loss(model, batch, device, cfg)
    bad = [batch.ids[i] for i in torch.nonzero(~torch.isfinite(per_sample.detach())).flatten().tolist()]
    if bad:
        return StepResult(float("nan"), float("nan"), per_sample.detach().float().cpu(), False, bad)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    params = [p for p in model.parameters() if p.grad is not None]
    grad_norm = clip_gradients(params, cfg.grad_clip)
    if not math.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)
        scaler.update()
        return StepResult(float(loss.detach()), grad_norm, per_sample.detach().float().cpu(), False, list(batch.ids))
    scaler.step(optimizer)
    scaler.update()
    if scheduler is not None:
        scheduler.step()
    return StepResult(float(loss.detach()), grad_norm, per_sample.detach().float().cpu(), True, [])


def user_module(model: torch.nn.Module) -> torch.nn.Module:
    """What the user's train_step is given: the user's own module (a UserModel's inner)."""
    return model.inner if isinstance(model, UserModel) else model


def load_user_step(cfg: TrainConfig) -> Callable | None:
    """The configured train_step (model.components.TrainStep), None without one."""
    return load_train_step(cfg.train_step, cfg.config_dir)


def loss_number(loss) -> float | None:
    """A step's returned loss as a float: a one-value tensor or a number; None otherwise."""
    if torch.is_tensor(loss) and loss.numel() == 1:
        return float(loss.detach().float())
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        return float(loss)
    return None


@torch.no_grad()
def nonfinite_samples(model, batch: Batch, device: torch.device, cfg: TrainConfig) -> list:
    """The samples of `batch` whose loss (compute_loss of `model`, blank 0, on the model input
    training feeds it) is not finite; the model runs in eval mode and is put back as it was."""
    was_training = model.training
    model.eval()
    try:
        _, per_sample, _ = compute_loss(model, to_model_input(batch, device, batch_transform(cfg)), device, cfg)
    finally:
        model.train(was_training)
    return [batch.ids[i] for i in torch.nonzero(~torch.isfinite(per_sample.float())).flatten().tolist()]


def user_train_step(fn: Callable, stepped: torch.nn.Module, model: torch.nn.Module, raw, batch: Batch, optimizer, cfg: TrainConfig,
                    device: torch.device, scheduler=None) -> StepResult:
    """One call of the user's train_step (model.components.TrainStep), as training runs it:
    fn(stepped, raw, optimizer), `stepped` being the user's own module (user_module(model), or
    its DistributedDataParallel wrapper) in train mode and `raw` the user's batch on the device.
    The step does its backward pass, clipping, mixed precision and optimizer.step() itself; the
    schedule steps after a finite step. `batch` is the same samples as a Batch (their ids).

    Not finite (the caller stops or skips, as after train_step) when the loss it returns is not
    finite, when the parameters are not finite after it (nonfinite_parameters: its update broke
    them), or when it raises on a batch some of whose samples have a non-finite loss (it stopped
    on them); any other error propagates. The samples are named by the loss of `model` (blank 0)
    on `batch` (every sample, and the reason says so, when that loss is finite: the step's own
    computation broke). grad_norm is not measured (nan): the gradients are the step's."""
    nan = float("nan")
    stepped.train()
    try:
        loss = fn(stepped, raw, optimizer)
    except Exception as exc:  # noqa: BLE001 - a stop on a non-finite batch is reported as one; anything else propagates
        bad = nonfinite_samples(model, batch, device, cfg)
        if not bad:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return StepResult(nan, nan, torch.zeros(0), False, bad, f"train_step = {cfg.train_step!r} raised {type(exc).__name__}: {first}")
    value = loss_number(loss)
    if value is None:
        raise ComponentError(f"train_step = {cfg.train_step!r} returned {type(loss).__name__}; expected the loss (a float or a 0-dim tensor), "
                             "which training logs and checks for non-finite values (model.components.TrainStep)")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).tolist() if named else []
    broken = [n for (n, _), ok in zip(named, finite) if not ok]
    if math.isfinite(value) and not broken:
        if scheduler is not None:
            scheduler.step()
        return StepResult(value, nan, torch.zeros(0), True, [])
    reason = f"the loss train_step = {cfg.train_step!r} returned is {value}" if not math.isfinite(value) else f"train_step = {cfg.train_step!r} returned loss {value:.4g}"
    if broken:
        reason += f" and its update left {len(broken)} of {len(named)} parameter tensors non-finite (first: {broken[0]})"
    bad = nonfinite_samples(model, batch, device, cfg)
    if not bad:
        reason += "; the model's loss on the batch as loaded is finite for every sample: the step's own computation is not"
    return StepResult(value if math.isfinite(value) else nan, nan, torch.zeros(0), False, bad or list(batch.ids), reason, broken)


def decode(log_probs, out_lengths, beam_width: int = 1):
    """The decoder training evaluates with: greedy for beam_width 1, else CTC prefix beam search."""
    if beam_width <= 1:
        return greedy_decode(log_probs, out_lengths)
    return beam_search(log_probs, out_lengths, beam_width=beam_width)


@dataclass
class EvalResult:
    wer: object  # model.metrics.WERResult
    hypotheses: dict  # id -> list of glosses
    frames: int
    blank_share: float = 0.0  # share of valid output frames whose most likely class is the blank


@torch.no_grad()
def evaluate(model, loader, vocab: Vocabulary, device: torch.device, cfg: TrainConfig, beam_width: int = 1, phoenix_cleanup: bool = False) -> EvalResult:
    """Decode every batch (greedy for beam_width 1, else prefix beam search) and score WER."""
    model.eval()
    refs, hyps, hyp_by_id, frames = [], [], {}, 0
    blank_frames, out_frames = 0, 0
    transform = batch_transform(cfg)
    for batch in loader:
        batch = to_model_input(batch, device, transform)
        with autocast_context(device, cfg):
            log_probs, out_lengths = model(batch.features, batch.lengths)
        log_probs = log_probs.float().cpu()
        out_lengths = out_lengths.cpu()
        valid = pad_mask(out_lengths, log_probs.shape[1])
        blank_frames += int((log_probs.argmax(-1) == vocab.blank_id)[valid].sum())
        out_frames += int(valid.sum())
        decoded = decode(log_probs, out_lengths, beam_width)
        for sid, ref, hyp in zip(batch.ids, batch.glosses, decoded):
            words = vocab.decode(hyp.tokens)
            hyp_by_id[sid] = words
            refs.append(list(ref))
            hyps.append(words)
        frames += int(batch.lengths.sum())
    return EvalResult(word_error_rate(refs, hyps, phoenix_cleanup=phoenix_cleanup), hyp_by_id, frames, blank_frames / max(out_frames, 1))


class UserItems(torch.utils.data.Dataset):
    """An ExternalDataset's entries with the user's item beside each Sample: (Sample, item).
    The item is read once; the Sample is parsed from that same item by the ExternalDataset
    (a view of it holding only that item)."""

    def __init__(self, dataset: ExternalDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        item = self.dataset.inner[i]
        view = copy.copy(self.dataset)
        view.inner = {i: item}
        return view[i], item


@dataclass
class Batches:
    """How a loader batches a dataset's entries, as the harness builds its batches
    (harness.context.HarnessContext.batch and step_batch): with the user's collate_fn, its batch
    of the user's items read as a Batch (model.components.batch_from_user: its features, lengths
    and sample order), else this project's collate. for_step: each batch is the pair (what the
    user's train_step gets: the collate_fn's batch, or step_batch's dict in the user's ids;
    the Batch), on the CPU."""

    collate_fn: Callable | None = None
    spec: str | None = None  # cfg.collate_fn, for messages
    keys: dict | None = None  # the item keys (item_key_map)
    user_vocab: UserVocabulary | None = None  # the ids step_batch's targets use
    for_step: bool = False

    def entries(self, dataset):
        """What the loader reads: (Sample, item) pairs for the user's collate_fn, else the dataset itself."""
        return UserItems(dataset) if self.collate_fn is not None else dataset

    def __call__(self, entries: list):
        if self.collate_fn is None:
            batch = collate(entries)
            return (step_batch(batch, self.user_vocab), batch) if self.for_step else batch
        samples = [s for s, _ in entries]
        raw = self.collate_fn([item for _, item in entries])
        batch = batch_from_user(raw, samples, self.keys, self.spec)
        return (raw, batch) if self.for_step else batch

    def batch(self, dataset, indices: list[int]) -> Batch:
        """The Batch of these samples of `dataset`, as a loader makes it."""
        entries = self.entries(dataset)
        return dataclasses.replace(self, for_step=False)([entries[i] for i in indices])

    def for_train_step(self) -> "Batches":
        """These batches as the user's train_step takes them (for_step)."""
        return dataclasses.replace(self, for_step=True)


def make_loader(dataset, batch_size: int, shuffle: bool, seed: int = 0, num_workers: int = 0, sampler=None, batches: Batches | None = None,
                batch_sampler=None):
    """A DataLoader of `dataset` batched by `batches` (DataBundle.batches; default: this project's collate).
    With `batch_sampler` (e.g. a LengthBucketSampler) it gives each batch's indices, not batch_size / sampler.
    Workers (num_workers > 0) start from the dataset as it is at each epoch's start, so what
    train.py sets on it then (the augmentation epoch, MediaPipeFeatureDataset.set_epoch) reaches them."""
    batches = batches if batches is not None else Batches()
    generator = torch.Generator().manual_seed(seed)
    batching = (dict(batch_sampler=batch_sampler) if batch_sampler is not None
                else dict(batch_size=batch_size, shuffle=shuffle if sampler is None else False, sampler=sampler))
    return torch.utils.data.DataLoader(
        batches.entries(dataset), collate_fn=batches, num_workers=num_workers, generator=generator,
        **batching,
    )


def dataset_lengths(dataset) -> list[int] | None:
    """Frame counts of a dataset's samples without loading them (MediaPipeFeatureDataset.lengths:
    .npy headers), None when the dataset cannot tell (a user's dataset)."""
    lengths = getattr(dataset, "lengths", None)
    return [int(n) for n in lengths()] if callable(lengths) else None


# Batches of similar length come from chunks of this many batches of the shuffled order: on the
# demo corpus (41-105 frames) random batches of 8 pad to 1.31x the valid frames, these to 1.05x.
BUCKET_BATCHES = 8


class ShardedSampler(torch.utils.data.Sampler):
    """Each rank takes every world_size-th index of one seeded permutation.

    Unlike DistributedSampler it never pads with repeated samples, so every sample is seen
    exactly once per epoch across ranks; ranks may get one batch fewer (train.py joins them).
    """

    def __init__(self, n: int, rank: int, world_size: int, seed: int = 0, shuffle: bool = True):
        self.n, self.rank, self.world, self.seed, self.shuffle, self.epoch = n, rank, world_size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        else:
            order = list(range(self.n))
        return iter(order[self.rank :: self.world])

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


class LengthBucketSampler(torch.utils.data.Sampler):
    """Batches of similar length (less padding) over ShardedSampler's shard of the epoch's permutation.

    The rank's shard of one seeded permutation (ShardedSampler: every sample once an epoch across
    ranks, the same shard sizes) is cut into chunks of `bucket_batches` * batch_size consecutive
    samples; each chunk is sorted by length (stable) and cut into batches, and the batches of the
    epoch are shuffled. Everything is seeded by (seed, epoch): a rerun gives the same batches, every
    epoch others. len() = ceil(shard / batch_size), as a plain batched ShardedSampler gives.
    """

    def __init__(self, lengths, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0, bucket_batches: int = BUCKET_BATCHES):
        self.lengths = [int(n) for n in lengths]
        self.batch_size, self.bucket_batches = int(batch_size), max(1, int(bucket_batches))
        self.shard = ShardedSampler(len(self.lengths), rank, world_size, seed=seed)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.shard.set_epoch(epoch)

    def __iter__(self):
        order = list(self.shard)
        chunk = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(order), chunk):
            part = sorted(order[start : start + chunk], key=lambda i: self.lengths[i])
            batches += [part[k : k + self.batch_size] for k in range(0, len(part), self.batch_size)]
        # the order of the batches: its own generator, so the shard's permutation stays ShardedSampler's
        shuffle = torch.randperm(len(batches), generator=torch.Generator().manual_seed(1_000_003 * (self.seed + 1) + self.epoch)).tolist()
        return iter([batches[k] for k in shuffle])

    def __len__(self) -> int:
        return math.ceil(len(self.shard) / self.batch_size)


def distributed_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) otherwise."""
    if "RANK" not in os.environ:
        return 0, 0, 1
    return int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"])
