"""A checkpoint of train.py read back: the model, its configuration, vocabulary and statistics,
and the corpus built the way it was trained. What the commands that use a trained model share
(python -m model.evaluate, model.recognize, model.export).

A checkpoint holds model_name, model_args (dataclasses.asdict of the model's config, or a user
factory's arguments), the weights, the vocabulary, the normalization statistics and the whole
training configuration (normalization, imputation, modalities, std floor, clip, a user model /
dataset / batch_transform and the conventions it declares: output_layout, output, item_keys,
vocab, blank, collate_fn); the model and the corpus' splits are built through
model.training.build_model and build_data with them, as train.py built them.

Checkpoints are read with torch.load(weights_only=True): a pickle holding anything but tensors
and plain containers is refused, never run. Bad input (a missing, truncated or foreign file, a
checkpoint whose vocabulary differs from the corpus') raises UsageError, whose message names the
file; the commands print it as one line on stderr and exit with code 2.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from data.corpus import CorpusError
from data.dataset import Vocabulary
from data.normalize import FeatureStats
from model.components import ComponentError, UserVocabulary, is_component_path
from model.config import TrainConfig, config_fields

REQUIRED_KEYS = ("model_name", "model_args", "model", "vocab", "config")


class UsageError(Exception):
    """Bad input for a command: the message names the file and what to do (exit code 2, no traceback)."""


# ============================================================================ the checkpoint


def load_checkpoint(path) -> dict:
    """The checkpoint dict of train.py at `path`, read with weights_only=True; UsageError otherwise."""
    path = Path(path)
    if path.is_dir():
        hint = f"; pass {path / 'best.pt'}" if (path / "best.pt").is_file() else ""
        raise UsageError(f"{path}: is a directory, not a checkpoint file{hint}")
    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise UsageError(f"{path}: empty file, not a checkpoint")
    with open(path, "rb") as f:
        magic = f.read(4)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error below says what matters
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every way a file can fail to be a checkpoint
        raise UsageError(f"{path}: {_load_failure(exc, magic)}") from None
    if not isinstance(ckpt, dict):
        raise UsageError(f"{path}: holds a {type(ckpt).__name__}, not a train.py checkpoint (a dict with {list(REQUIRED_KEYS)})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise UsageError(
            f"{path}: not a train.py checkpoint: no {missing} (it has {sorted(map(str, ckpt))[:12]}); "
            "use OUTPUT_DIR/best.pt or last.pt of python train.py"
        )
    return ckpt


def _load_failure(exc: Exception, magic: bytes) -> str:
    """Why torch.load(weights_only=True) refused a file, in words (it never ran the file's code)."""
    text = str(exc)
    blocked = re.search(r"(unsupported GLOBAL [\w.]+|Unsupported global: GLOBAL [\w.]+)", text)
    if magic == b"PK\x03\x04":  # torch.save's zip format
        if blocked or "Weights only load failed" in text:
            what = f" ({blocked.group(1)})" if blocked else ""
            return (f"holds objects other than tensors and plain containers{what}; refused without running it "
                    "(checkpoints are read with torch.load(weights_only=True)), not a checkpoint of train.py")
        first = text.strip().splitlines()[0].split(". ")[0] if text.strip() else "unreadable zip archive"
        return f"truncated or corrupt ({type(exc).__name__}: {first}); copy it again, or use last.pt / best.pt of the run"
    if magic[:1] == b"\x80":  # a pickle stream
        return ("a Python pickle, not a checkpoint of train.py (torch.save's zip format); it was not unpickled: "
                "torch.load(weights_only=True) refuses anything but tensors and plain containers")
    return f"not a PyTorch checkpoint (neither torch.save's zip format nor a pickle; {type(exc).__name__})"


def config_from_checkpoint(ckpt: dict, path) -> TrainConfig:
    raw = ckpt["config"]
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: its config is a {type(raw).__name__}, expected the dict train.py saves")
    known = config_fields()
    try:
        return TrainConfig(**{k: v for k, v in raw.items() if k in known})
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path}: its training configuration does not load ({exc})") from None


@dataclass
class Trained:
    """A checkpoint rebuilt: the model (eval mode, on CPU) and everything it was trained with."""

    path: Path
    model: torch.nn.Module
    cfg: TrainConfig
    vocab: Vocabulary
    stats: FeatureStats | None
    model_name: str
    model_args: dict
    epoch: int | None
    best_wer: float | None
    skipped_gate: bool

    @property
    def input_dim(self) -> int:
        if "input_dim" in self.model_args:
            return int(self.model_args["input_dim"])
        from data.layout import input_dim

        return input_dim(self.cfg.modalities)

    def describe(self) -> str:
        parts = [f"{self.model_name}"]
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}")
        if self.best_wer is not None and self.best_wer != float("inf"):
            parts.append(f"best dev WER {self.best_wer:.2%} (greedy)")
        parts.append(f"vocabulary {len(self.vocab) - 1} glosses + blank")
        if self.cfg.dataset:
            parts.append(f"dataset {self.cfg.dataset} (its own features and normalization)")
        else:
            parts.append(f"normalization {self.cfg.normalize}, modalities {' '.join(self.cfg.modalities)}")
        if self.cfg.batch_transform:
            parts.append(f"batch_transform {self.cfg.batch_transform}")
        if self.skipped_gate:
            parts.append("trained with --skip-gate")
        return ", ".join(parts)


def rebuild_model(name: str, args: dict, cfg: TrainConfig, path, vocab: Vocabulary | None = None) -> torch.nn.Module:
    """The model of a checkpoint, before its weights: a registered name from its model_args, or
    the user's factory through the conventions of the checkpoint's configuration (output_layout,
    output, blank), as train.py built it (model.training.build_model); `vocab` (the checkpoint's,
    blank 0) gives the permutation that moves a blank other than 0 there."""
    args = dict(args)
    try:
        if is_component_path(name):  # the user's factory, imported from the configuration's directory first
            from model import training

            vocab_size, input_dim = int(args.pop("vocab_size")), int(args.pop("input_dim"))
            user_vocab = None
            if cfg.blank != 0:
                if vocab is None:
                    raise UsageError(f"{path}: the model's blank is at {cfg.blank}; its vocabulary is needed to rebuild it")
                user_vocab = UserVocabulary.around_blank(vocab, cfg.blank, f"the vocabulary of {path}")
            return training.build_model(cfg.replace(model=name, model_overrides=args), vocab_size, input_dim, user_vocab)
        from model.registry import model_from_checkpoint_args

        return model_from_checkpoint_args(name, args)
    except ComponentError as exc:
        raise UsageError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: cannot rebuild model {name!r} from the checkpoint's model_args ({type(exc).__name__}: {exc})") from None


def load_trained(path) -> Trained:
    """Checkpoint -> model with its weights (eval mode) + configuration, vocabulary, statistics."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    cfg = config_from_checkpoint(ckpt, path)
    try:
        vocab = Vocabulary(list(ckpt["vocab"]))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path}: its vocabulary does not load ({exc})") from None
    args = ckpt["model_args"]
    if not isinstance(args, dict):
        raise UsageError(f"{path}: model_args is a {type(args).__name__}, expected a dict")
    if "vocab_size" in args and int(args["vocab_size"]) != len(vocab):
        raise UsageError(f"{path}: the model has {args['vocab_size']} outputs but the vocabulary {len(vocab)} entries (glosses + blank); not one training run's checkpoint")
    stats = None
    if ckpt.get("norm_stats"):
        try:
            stats = FeatureStats.from_dict(ckpt["norm_stats"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{path}: its norm_stats do not load ({exc})") from None
    if cfg.normalize == "global" and stats is None and cfg.dataset is None:
        raise UsageError(f"{path}: trained with global normalization but holds no norm_stats; the features cannot be normalized as in training")
    model = rebuild_model(str(ckpt["model_name"]), args, cfg, path, vocab)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, ValueError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise UsageError(f"{path}: its weights do not fit model {ckpt['model_name']!r} built from its model_args ({'; '.join(lines[:3])[:600]})") from None
    model.eval()
    best = ckpt.get("best_wer")
    return Trained(path, model, cfg, vocab, stats, str(ckpt["model_name"]), dict(args), ckpt.get("epoch"),
                   float(best) if isinstance(best, (int, float)) else None, bool(ckpt.get("skipped_gate", False)))


# ============================================================================ data


def eval_config(trained: Trained, data_dir=None) -> TrainConfig:
    """The checkpoint's configuration for evaluation: its corpus (or data_dir), no workers, no cache."""
    cfg = trained.cfg
    target = data_dir if data_dir is not None else cfg.data_dir
    if target is not None and cfg.dataset is None:
        where = Path(target)
        if not (where / "manifest.csv").is_file():
            what = "no such directory" if not where.exists() else "not a corpus (no manifest.csv in it)"
            if data_dir is not None:
                raise UsageError(f"{where}: {what} (--data_dir)")
            raise UsageError(f"{where}: {what}; it is the corpus {trained.path} was trained on, as train.py was given it "
                             "(a relative path is relative to where train.py ran); pass --data_dir DIR")
        target = str(where.resolve())
    return cfg.replace(data_dir=target, num_workers=0, cache_mb=0)


def vocabulary_problem(trained: Trained, data) -> str | None:
    """Why the corpus' train vocabulary is not the checkpoint's (None if it is, or the corpus has no train split)."""
    if data.corpus is None or not data.corpus.split("train"):
        return None
    corpus_vocab = Vocabulary.from_records(data.corpus.records).to_list()
    ours = trained.vocab.to_list()
    if corpus_vocab == ours:
        return None
    only_corpus = sorted(set(corpus_vocab) - set(ours))
    only_ckpt = sorted(set(ours) - set(corpus_vocab))

    def show(glosses):
        return ", ".join(glosses[:12]) + (f", ... ({len(glosses)} in all)" if len(glosses) > 12 else "")

    parts = []
    if only_corpus:
        parts.append(f"{len(only_corpus)} gloss(es) in the corpus' train split but not in the checkpoint: {show(only_corpus)}")
    if only_ckpt:
        parts.append(f"{len(only_ckpt)} gloss(es) in the checkpoint but not in the corpus' train split: {show(only_ckpt)}")
    if not parts:
        parts.append("the same glosses in another order (gloss ids differ)")
    return (
        f"{data.corpus.dir}: its train split gives another vocabulary than checkpoint {trained.path} was trained with "
        f"({len(corpus_vocab)} vs {len(ours)} glosses): " + "; ".join(parts)
        + ". The model's outputs would name other glosses: evaluate on the corpus it was trained on, or retrain on this one"
    )


def build_eval_data(trained: Trained, data_dir=None):
    """model.training.build_data with the checkpoint's configuration, vocabulary and statistics."""
    from model import training

    cfg = eval_config(trained, data_dir)
    try:
        data = training.build_data(cfg, vocab=trained.vocab, stats=trained.stats)
    except (CorpusError, ComponentError, FileNotFoundError) as exc:
        raise UsageError(f"{cfg.data_dir or cfg.dataset}: {exc}") from None
    problem = vocabulary_problem(trained, data)
    if problem:
        raise UsageError(problem)
    if not data.splits:
        raise UsageError(f"{data.source}: no samples in any split")
    width = int(next(iter(data.splits.values()))[0].features.shape[1])  # a corpus may hold only the split to score
    if width != trained.input_dim:
        raise UsageError(f"{data.source}: {width} features a frame, but the model of {trained.path} takes {trained.input_dim}")
    return cfg, data


# ============================================================================ the commands' threads and device


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def resolve_device(name: str) -> torch.device:
    from model import training

    try:
        return training.resolve_device(name)
    except RuntimeError as exc:
        raise UsageError(str(exc)) from None
