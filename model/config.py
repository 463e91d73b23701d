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
    modalities: tuple = MODALITIES
    std_floor: float = STD_FLOOR
    clip: float = CLIP
    # optimisation
    batch_size: int = 8
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 50
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
    nonfinite: str = "stop"  # stop or skip a batch with non-finite loss/gradients
    # whether the run trains under DDP, where a parameter without a gradient errors or hangs; None:
    # as the process runs (torchrun sets WORLD_SIZE)
    ddp: bool | None = None
    # evaluation
    beam_width: int = 5
    phoenix_cleanup: bool | None = None  # None: on for corpora imported from PHOENIX
    # harness thresholds overriding harness.thresholds.DEFAULTS, e.g. {"max_abs_input": 30}
    thresholds: dict = field(default_factory=dict)

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
        for key in ("dataset", "batch_transform"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or ":" not in value):
                problems.append(f"{key}={value!r} (expected 'module.path:attribute')")
        if problems:
            raise ValueError("invalid training configuration: " + "; ".join(problems))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["modalities"] = list(self.modalities)
        return d

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


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
