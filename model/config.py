"""The one training configuration, read by train.py and by the harness alike.

A configuration file is JSON or TOML with the field names of TrainConfig; command-line flags
override the file. The harness gate checks exactly the configuration training will run.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from data.layout import MODALITIES, parse_modalities
from data.normalize import CLIP, IMPUTATIONS, METHODS, STD_FLOOR

# the default inputs (TrainConfig.modalities): every modality but the temporal block
DEFAULT_MODALITIES = tuple(m for m in MODALITIES if m != "temporal")


@dataclass
class TrainConfig:
    data_dir: str | None = None  # None: the embedded demo corpus (generated once into a cache)
    output_dir: str = "runs/latest"
    # a registered model name, or the user's factory "module.path:attribute" (model/components.py)
    model: str = "i3d_teacher"
    model_overrides: dict = field(default_factory=dict)  # I3DConfig fields, e.g. {"fusion_dim": 256}; a factory's keyword arguments
    # distillation (model/student.py): a teacher checkpoint train.py wrote (same vocabulary, features,
    # normalization); loss = CTC + distill_weight * T^2 * KL(teacher_T || student_T) on the frame posteriors
    teacher: str | None = None
    distill_weight: float = 1.0
    distill_temperature: float = 2.0
    # the user's dataset factory "module.path:attribute" (None: the corpus at data_dir, read by
    # MediaPipeFeatureDataset) and what the user's loop does between loader and model
    dataset: str | None = None
    batch_transform: str | None = None
    # where "module.path:attribute" components are imported from first (set to the configuration
    # file's directory by load_config)
    config_dir: str | None = None
    # data pipeline: the dataset owns normalization, nothing else normalizes
    # body: landmarks centred on the shoulders and scaled by shoulder width, per sample. On the demo
    # corpus (unseen test signer) it gave dev/test WER 0.8%/0.0% where global z-scores gave 7.4%/12.8%.
    normalize: str = "body"
    impute: str = "ffill"
    # the model's inputs: the landmarks without the temporal block (velocity, acceleration,
    # displacement), which the inception blocks learn from the sequence themselves. On 5 signer
    # folds of real Kaggle sentences (benchmarks/signers.py) it gave 25.5% mean test WER over three
    # training seeds where all four modalities gave 32.4% (better in 12 of 15 fold-seed runs),
    # in ~0.8x the training time. The corpus keeps the 6516 features; "all" selects them all.
    modalities: tuple = DEFAULT_MODALITIES
    std_floor: float = STD_FLOOR
    clip: float = CLIP
    # optimisation
    batch_size: int = 8
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 50
    # an exponential moving average of the weights (model.training.weight_average), decay a step;
    # what the dev WER scores and best.pt holds; 0: off, the weights as trained
    ema_decay: float = 0.0
    grad_clip: float = 5.0  # max global grad norm; 0 disables (1.0 measured: dev WER 22% vs 12% at 5.0 on the demo corpus)
    amp: bool = False
    amp_dtype: str = "bfloat16"  # bfloat16 or float16 (float16 uses a GradScaler)
    device: str = "auto"  # auto, cpu, cuda
    seed: int = 0
    num_workers: int = 0
    cache_mb: int = 2048  # keep model-ready features in memory up to this many MiB a split (num_workers 0 only); 0 disables
    # train-split augmentation of the raw landmarks of a corpus (data/augment.py), seeded by `seed`;
    # {} = off. Default: the "default" recipe, mirror with p = 0.5 (on real unseen signers it
    # halved test WER, README "Augmentation and unseen signers"). e.g. {"mirror": 0.5, "affine":
    # {"p": 0.8, "rotate_deg": 10}}
    augment: dict = field(default_factory=lambda: {"recipe": "default"})
    # leading-hand canonicalisation (data/augment.py: lead_canonical): every sample one hand leads is
    # mirrored so that this hand ("left_hand" or "right_hand") leads it, in every split and in
    # model.evaluate / model.recognize (the checkpoint keeps the configuration); None: off
    lead_hand: str | None = None
    nonfinite: str = "stop"  # stop or skip a batch with non-finite loss/gradients
    # whether the run trains under DDP, where a parameter without a gradient errors or hangs; None:
    # as the process runs (torchrun sets WORLD_SIZE)
    ddp: bool | None = None
    # evaluation
    beam_width: int = 5
    phoenix_cleanup: bool | None = None  # None: on for corpora imported from PHOENIX
    # harness thresholds overriding harness.thresholds.DEFAULTS, e.g. {"max_abs_input": 30}
    thresholds: dict = field(default_factory=dict)
    # the user's own conventions, declared instead of adapted (model/components.py: UserModel,
    # UserVocabulary, ITEM_KEYS, the collate and train-step contracts)
    output_layout: str = "BTV"  # the model's output: "BTV" [B, T', V] batch first, or "TBV" [T', B, V] (nn.CTCLoss's)
    output: str = "log_probs"  # "log_probs"; "logits" (log_softmax over V is applied); "auto" (detected)
    item_keys: dict = field(default_factory=dict)  # this project's item key -> yours, e.g. {"id": "video_id", "glosses": "labels"}
    # the vocabulary the items' label ids index: a file (one gloss a line, line i = id i; or JSON),
    # "module.path:attribute" (a list, or a dict gloss -> id), or the list / dict itself
    vocab: str | list | dict | None = None
    blank: int = 0  # the CTC blank's index in the model's output and in the label ids
    collate_fn: str | None = None  # "module.path:fn": fn(list of dataset items) -> batch
    train_step: str | None = None  # "module.path:fn": fn(model, batch, optimizer) -> loss

    def __post_init__(self):
        self.modalities = parse_modalities(self.modalities)
        problems = []
        if self.normalize not in METHODS:
            problems.append(f"normalize={self.normalize!r} (use one of {METHODS})")
        if self.impute not in IMPUTATIONS:
            problems.append(f"impute={self.impute!r} (use one of {IMPUTATIONS})")
        if self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size} (must be >= 1)")
        if self.epochs < 0:
            problems.append(f"epochs={self.epochs} (must be >= 0)")
        if not self.lr >= 0:
            problems.append(f"lr={self.lr} (must be >= 0)")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay={self.ema_decay} (0 <= decay < 1; 0 disables the weight average)")
        if self.amp_dtype not in ("bfloat16", "float16"):
            problems.append(f"amp_dtype={self.amp_dtype!r} (bfloat16 or float16)")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            problems.append(f"device={self.device!r} (auto, cpu or cuda)")
        if self.nonfinite not in ("stop", "skip"):
            problems.append(f"nonfinite={self.nonfinite!r} (stop or skip)")
        if self.cache_mb < 0:
            problems.append(f"cache_mb={self.cache_mb} (must be >= 0; 0 disables the cache)")
        if self.std_floor <= 0:
            problems.append(f"std_floor={self.std_floor} (must be > 0)")
        # like lr = 0, distill_temperature = 0 is let through to the gate, whose distill_loss check names it
        if not self.distill_weight >= 0 or not self.distill_temperature >= 0:
            problems.append(f"distill_weight={self.distill_weight}, distill_temperature={self.distill_temperature} (both must be >= 0)")
        if self.teacher is not None and not isinstance(self.teacher, str):
            problems.append(f"teacher={self.teacher!r} (the path of a teacher checkpoint, or None)")
        try:
            from data.augment import parse_augment

            parse_augment(self.augment)
        except ValueError as exc:
            problems.append(str(exc))
        from data.augment import LEAD_HANDS

        if self.lead_hand is not None and self.lead_hand not in LEAD_HANDS:
            problems.append(f"lead_hand={self.lead_hand!r} (one of {LEAD_HANDS}, or None: off)")
        for key in ("dataset", "batch_transform", "collate_fn", "train_step"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or ":" not in value):
                problems.append(f"{key}={value!r} (expected 'module.path:attribute')")
        problems += convention_problems(self)
        if problems:
            raise ValueError("invalid training configuration: " + "; ".join(problems))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["modalities"] = list(self.modalities)
        return d

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


OUTPUT_LAYOUTS = ("BTV", "TBV")
OUTPUTS = ("log_probs", "logits", "auto")
ITEM_KEY_NAMES = ("id", "features", "glosses", "labels")  # "labels" is another name for "glosses"


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def convention_problems(cfg) -> list[str]:
    """What is wrong with the declared conventions (output_layout, output, item_keys, vocab,
    blank, collate_fn): one clause a problem, naming the key, the value and what is allowed."""
    problems = []
    if cfg.output_layout not in OUTPUT_LAYOUTS:
        problems.append(f"output_layout={cfg.output_layout!r} (use 'BTV': [B, T', V] batch first, or 'TBV': [T', B, V] as torch.nn.CTCLoss takes it)")
    if cfg.output not in OUTPUTS:
        problems.append(f"output={cfg.output!r} (use 'log_probs', 'logits': log_softmax over V is applied, or 'auto': detected on a dummy batch)")
    user_model = isinstance(cfg.model, str) and ":" in cfg.model
    if not user_model:
        for key, default in (("output_layout", "BTV"), ("output", "log_probs")):
            if getattr(cfg, key) != default and getattr(cfg, key) in (OUTPUT_LAYOUTS + OUTPUTS):
                problems.append(f"{key}={getattr(cfg, key)!r} describes a model factory of yours; model={cfg.model!r} is this project's "
                                f"(its output is {default}): remove {key} or name your factory")
    keys = cfg.item_keys
    if not isinstance(keys, dict):
        problems.append(f"item_keys={keys!r} (a table mapping id / features / glosses (or labels) to your items' key names, e.g. {{ id = \"video_id\" }})")
    else:
        for k, v in keys.items():
            if k not in ITEM_KEY_NAMES:
                problems.append(f"item_keys has key {k!r} (allowed: {', '.join(ITEM_KEY_NAMES)})")
            elif not isinstance(v, str) or not v:
                problems.append(f"item_keys.{k}={v!r} (your items' key name: a non-empty string)")
        if "glosses" in keys and "labels" in keys:
            problems.append(f"item_keys maps both 'glosses' ({keys['glosses']!r}) and 'labels' ({keys['labels']!r}): they name the same field, keep one")
        names = [v for k, v in keys.items() if k in ITEM_KEY_NAMES and isinstance(v, str)]
        twice = sorted({v for v in names if names.count(v) > 1})
        if twice:
            problems.append(f"item_keys maps two fields to {twice[0]!r}: each of id, features and glosses needs a key of its own")
    vocab = cfg.vocab
    size = None
    if vocab is None or (isinstance(vocab, str) and vocab):
        pass
    elif isinstance(vocab, list):
        bad = [i for i, g in enumerate(vocab) if not isinstance(g, str) or not g]
        if bad:
            problems.append(f"vocab[{bad[0]}]={vocab[bad[0]]!r} (a list of glosses, entry i = id i: every entry a non-empty string)")
        size = len(vocab)
    elif isinstance(vocab, dict):
        bad = [g for g, i in vocab.items() if not _is_int(i) or i < 0]
        ids = [i for i in vocab.values() if _is_int(i)]
        if bad:
            problems.append(f"vocab[{bad[0]!r}]={vocab[bad[0]]!r} (a table gloss -> id: every id an int >= 0)")
        elif len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})[0]
            problems.append(f"vocab gives id {twice} to {sorted(g for g, i in vocab.items() if i == twice)} (one gloss an id)")
        size = max(ids, default=-1) + 1
    else:
        problems.append(f"vocab={vocab!r} (a file of one gloss a line, 'module.path:attribute', a list of glosses (index = id) or a table gloss -> id)")
    if not _is_int(cfg.blank) or cfg.blank < 0:
        problems.append(f"blank={cfg.blank!r} (the CTC blank's index in the model's output and the label ids: an int >= 0)")
    elif size is not None and cfg.blank > size:
        problems.append(f"blank={cfg.blank} is beyond the vocabulary's ids 0..{size - 1} (blank={size} puts it right after the last gloss)")
    if cfg.dataset is None:
        for key, what in (("collate_fn", "it collates your dataset's items"), ("item_keys", "it names your dataset's item keys")):
            value = getattr(cfg, key)
            malformed = (key == "collate_fn" and (not isinstance(value, str) or ":" not in value)) or any(p.startswith(f"{key}") for p in problems)
            if value and not malformed:
                problems.append(f"{key}={value!r} needs dataset = \"module.path:factory\" (your dataset): {what}")
    return problems


def config_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def load_config(path=None, **overrides) -> TrainConfig:
    """TrainConfig from a JSON/TOML file (optional) with keyword overrides (None values ignored)."""
    values = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"configuration file {path} not found")
        text = path.read_text(encoding="utf-8")
        try:
            values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: cannot parse configuration ({exc}); write JSON, or TOML with a .toml suffix") from None
        unknown = set(values) - config_fields()
        if unknown:
            raise ValueError(f"{path}: unknown configuration field(s) {sorted(unknown)}; known: {sorted(config_fields())}")
        values.setdefault("config_dir", str(path.resolve().parent))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)
