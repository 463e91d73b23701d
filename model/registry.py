"""Model registry: build models by name with config overrides, and rebuild them from checkpoints.

    model = create_model("i3d_teacher", vocab_size=100, modalities=("hands",))
    model = create_model("student", vocab_size=100)                  # model/student.py: StudentConfig fields
    model = create_model("i3d_small", vocab_size=100)                # a named variant: the teacher at small widths
    model = model_from_checkpoint_args(ckpt["model"], ckpt["model_args"])  # model_args = asdict(config)

A registered model class has a `config_class` attribute (a dataclass) and takes one instance of it.
A variant is a registered name for a class with some config defaults changed (timm style); its
checkpoints record the variant's name and the full config, so they rebuild the same model.
"""
from __future__ import annotations

import dataclasses

from torch import nn

from model.components import build_external_model, is_component_path
from model.i3d import I3DTeacher
from model.student import StudentTCN

_MODELS: dict[str, type] = {}
_DEFAULTS: dict[str, dict] = {}  # name -> config fields that differ from the class's config defaults


def register_model(name: str, **defaults):
    """Class decorator: make `name` buildable by create_model. The class needs a `config_class`;
    `defaults` are config fields the name builds with unless overridden (a variant)."""

    def decorator(cls):
        if name in _MODELS and (_MODELS[name] is not cls or _DEFAULTS[name] != defaults):
            raise ValueError(f"model name {name!r} is already registered to {_MODELS[name].__qualname__}")
        if not dataclasses.is_dataclass(getattr(cls, "config_class", None)):
            raise TypeError(f"{cls.__qualname__} needs a dataclass `config_class` attribute to be registered")
        _MODELS[name] = cls
        _DEFAULTS[name] = dict(defaults)
        return cls

    return decorator


def list_models() -> list[str]:
    return sorted(_MODELS)


def _model_class(name: str) -> type:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {list_models()}")
    return _MODELS[name]


def build_config(name: str, **overrides):
    """The registered model's config with `overrides` applied; unknown fields raise TypeError."""
    config_class = _model_class(name).config_class
    valid = [f.name for f in dataclasses.fields(config_class)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(f"{name}: unknown configuration field(s) {unknown}; valid {config_class.__name__} fields: {valid}")
    return config_class(**{**_DEFAULTS[name], **overrides})


def create_model(name: str = "i3d_teacher", **overrides) -> nn.Module:
    """Build a registered model; keyword overrides are fields of its config (e.g. I3DConfig)."""
    return _model_class(name)(build_config(name, **overrides))


def model_from_checkpoint_args(name: str, model_args: dict) -> nn.Module:
    """Rebuild a model from a checkpoint's model_args (dataclasses.asdict of its config, possibly JSON round-tripped)."""
    if not isinstance(model_args, dict):
        raise TypeError(f"model_args must be a dict (asdict of the model config), got {type(model_args).__name__}")
    if is_component_path(name):  # the user's factory: model_args are its arguments
        args = dict(model_args)
        return build_external_model(name, args.pop("vocab_size"), args.pop("input_dim"), args)
    return create_model(name, **model_args)


register_model("i3d_teacher")(I3DTeacher)
# the teacher at small widths: the fault catalogue, the benchmark's quick runs, multi-process tests
register_model("i3d_small", modality_dim=32, fusion_dim=64, conv_dim=64, lstm_hidden=32, stage_blocks=(1, 1))(I3DTeacher)
# smaller still: unit tests that train end to end
register_model("i3d_tiny", modality_dim=16, fusion_dim=32, conv_dim=32, lstm_hidden=16, stage_blocks=(1, 1))(I3DTeacher)
register_model("student")(StudentTCN)  # model/student.py: the small, fast student distilled from the teacher
