"""The user's own components, named in the training configuration.

    model = "i3d_teacher"                       # a registered name, or
    model = "my_project.models:make_model"      # factory(vocab_size: int, input_dim: int, **model_overrides) -> nn.Module
    dataset = "my_project.data:make_dataset"    # factory(split: str[, data_dir=...]) -> torch Dataset of mappings
    batch_transform = "my_project.loop:prepare" # fn(features [B, T, F], lengths [B]) -> features

A project with conventions of its own declares them instead of adapting its code:

    output_layout = "TBV"                       # the model returns [T', B, V] (nn.CTCLoss's layout)
    output = "logits"                           # or "auto"; log_softmax over V is applied
    item_keys = { id = "video_id", glosses = "labels" }
    vocab = "vocab.txt"                         # the ids the items' labels and the model's output use
    blank = 12                                  # the blank's index in them
    collate_fn = "my_project.data:collate"      # fn(list of items) -> batch (UserCollate)
    train_step = "my_project.loop:train_step"   # fn(model, batch, optimizer) -> loss (TrainStep)

The model is then seen through one adapter, UserModel; items through parse_item with the
item_keys and the UserVocabulary.

Each "module.path:attribute" is imported from the configuration file's directory, the working
directory and PYTHONPATH. What a component must do is written down once, here: `CTCModel` for
the model, `DatasetItem` for the dataset's items, `BatchTransform` for the transform. A
component that breaks its contract raises ComponentError, whose message names the
configuration key, the object and what was expected.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import os
import site
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from data.dataset import BLANK, Batch, Sample, Vocabulary

EXTERNAL = "external"  # the Batch.normalization of a user dataset: its normalization is its own


class ComponentError(ValueError):
    """A configured component that does not import or breaks its contract."""


@runtime_checkable
class CTCModel(Protocol):
    """The model contract: CTC over glosses, blank 0.

    forward(features [B, T, F] float, lengths [B] long) -> (log_probs [B, T', V], out_lengths [B] long)
        log_probs: log-softmax over V = vocab_size (index 0 is the CTC blank)
        out_lengths: valid output frames of each sample, max(out_lengths) == T'
    output_lengths(lengths [B] long) -> [B] long: the same out_lengths, without running the model
    """

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor: ...


class DatasetItem(Protocol):
    """What a user dataset's __getitem__ returns: a mapping with these keys."""

    id: str  # unique across splits
    features: object  # [T, F] tensor or array, F the same for every item
    glosses: object  # space-separated str, or a list of glosses


class BatchTransform(Protocol):
    """What the user's loop does between the loader and the model (on the model's device)."""

    def __call__(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor: ...


ITEM_KEYS = ("id", "features", "glosses")


def is_component_path(name) -> bool:
    return isinstance(name, str) and ":" in name


def _search_dirs(base_dir) -> list[str]:
    dirs = [str(Path(base_dir).resolve())] if base_dir else []
    return list(dict.fromkeys(dirs + [os.getcwd()]))


PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("data", "model", "harness")  # this project's top-level packages


def _beside_project(module_name: str, base_dir) -> Path | None:
    """The user's own file or directory that `module_name` names when its first part is one of
    this project's packages (a model.py, data.py or harness.py in the configuration's directory,
    the working directory or another sys.path entry, PYTHONPATH included), or None: then the
    name is the project's. Installed libraries (site-packages, the standard library) are not
    the user's.

    Python cannot import both under one name; the project's packages are already imported, so
    the user's file is loaded from its path under another name (see _load_beside)."""
    top, _, rest = module_name.partition(".")
    if top not in PROJECT_PACKAGES:
        return None
    libraries = [sysconfig.get_path(k) for k in ("purelib", "platlib", "stdlib", "platstdlib")] + [site.getusersitepackages()]
    installed = {Path(p).resolve() for p in libraries if p}
    for d in dict.fromkeys(_search_dirs(base_dir) + [p or os.getcwd() for p in sys.path if isinstance(p, str)]):
        d = Path(d).resolve()
        if d == PROJECT_ROOT or any(d.is_relative_to(i) for i in installed):
            continue
        package = d / top
        if rest:  # only a directory has submodules: the user's when it holds the one named
            below = package / Path(*rest.split("."))
            if below.with_suffix(".py").is_file() or below.is_dir():
                return package
        elif (package / "__init__.py").is_file():
            return package
        elif (d / f"{top}.py").is_file():
            return d / f"{top}.py"
    return None


def _load_beside(source: Path):
    """The user's module at `source` (a .py file or a package directory), imported from its
    path under a name of its own ('_user_model_<hash of the path>'), once per process."""
    top = source.stem if source.is_file() else source.name
    alias = f"_user_{top}_{hashlib.sha1(str(source).encode()).hexdigest()[:8]}"
    if alias in sys.modules:
        return sys.modules[alias]
    if source.is_file():
        spec = importlib.util.spec_from_file_location(alias, source)
    elif (source / "__init__.py").is_file():
        spec = importlib.util.spec_from_file_location(alias, source / "__init__.py", submodule_search_locations=[str(source)])
    else:  # a namespace directory: only its submodules have code
        spec = importlib.machinery.ModuleSpec(alias, None, is_package=True)
        spec.submodule_search_locations = [str(source)]
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    try:
        if spec.loader is not None:
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[alias]
        raise
    return module


def _shadow_hint(exc: BaseException, base_dir) -> str:
    """For an import of this project's `model`, `data` or `harness` inside the user's code that
    meant the user's file of that name: which file it is and how to rename it."""
    if isinstance(exc, ImportError):
        name = exc.name or ""
    else:
        name = getattr(getattr(exc, "obj", None), "__name__", "")
    source = _beside_project(name, base_dir) if name else None
    if source is None:
        return ""
    top = name.partition(".")[0]
    return (f"; {source} has the name of this project's package {top!r}, so `import {top}` in your code gets the "
            f"project's; rename it (e.g. my_{source.name}) and import it by that name")


def _import_module(module_name: str, base_dir):
    """The module a spec names: the user's file when the name is one of this project's packages
    and the user has a file of that name (see _beside_project), else an ordinary import."""
    source = _beside_project(module_name, base_dir)
    if source is None:
        return importlib.import_module(module_name)
    module = _load_beside(source)
    rest = module_name.partition(".")[2]
    return importlib.import_module(f"{module.__name__}.{rest}") if rest else module


def import_object(spec: str, key: str, base_dir=None, expected: str = "a callable", callable_only: bool = True):
    """'package.module:attr.sub' -> the object; ComponentError naming `key` if it cannot be had
    (or, with callable_only, is not callable).

    A module named like one of this project's packages (`model = "model:make_model"` beside the
    user's model.py) is the user's file, loaded under a name of its own."""
    if not is_component_path(spec):
        raise ComponentError(f"{key} = {spec!r}: expected 'module.path:attribute' ({expected})")
    module_name, _, attr = spec.partition(":")
    for d in reversed(_search_dirs(base_dir)):
        if d not in sys.path:
            sys.path.insert(0, d)
    try:
        obj = _import_module(module_name, base_dir)
    except ImportError as exc:
        raise ComponentError(
            f"{key} = {spec!r}: cannot import module {module_name!r} ({exc}); it is looked up in "
            f"{_search_dirs(base_dir)} and PYTHONPATH{_shadow_hint(exc, base_dir)}"
        ) from None
    except AttributeError as exc:
        hint = _shadow_hint(exc, base_dir)
        if not hint:
            raise
        raise ComponentError(f"{key} = {spec!r}: importing module {module_name!r} raised AttributeError: {exc}{hint}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ComponentError(f"{key} = {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if callable_only and not callable(obj):
        raise ComponentError(f"{key} = {spec!r}: {type(obj).__name__} object is not callable; expected {expected}")
    return obj


def source_digest(specs, base_dir=None) -> str:
    """Hash of the source files behind the configured components: each one's module and every
    module loaded from that module's directory (its project's helpers), so editing any of them
    changes the gate's fingerprint."""
    specs = sorted({s for s in specs if is_component_path(s)})
    objects = [import_object(spec, "component", base_dir) for spec in specs]  # all imported before any file is listed
    modules = [_import_module(spec.partition(":")[0], base_dir) for spec in specs]  # already imported: the same objects
    files = set()
    for obj, module in zip(objects, modules):
        for o in (obj, module):
            try:
                source = Path(inspect.getsourcefile(inspect.unwrap(o))).resolve()
            except (TypeError, OSError):
                continue
            if source.is_file():
                files.add(source)
    roots = {f.parent for f in files}
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        # some modules have no real file (torch.classes and torch.ops report a relative '_classes.py')
        if isinstance(f, str) and f.endswith(".py") and Path(f).is_absolute() and Path(f).is_file() and any(Path(f).resolve().is_relative_to(r) for r in roots):
            files.add(Path(f).resolve())
    h = hashlib.sha256("\n".join(specs).encode())
    for f in sorted(files):
        h.update(str(f).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- the model


def _dummy_batch(input_dim: int, device, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The contract's dummy batch: two samples of 24 and 17 frames, zero-padded."""
    lengths = torch.tensor([24, 17], dtype=torch.long, device=device)
    x = (torch.randn(2, 24, input_dim, generator=generator) * 0.1).to(device)
    x[1, 17:] = 0
    return x, lengths


def _model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def dummy_forward(model: nn.Module, input_dim: int, generator: torch.Generator | None = None):
    """The model's output on the contract's dummy batch, in eval mode without gradients (its mode
    restored), or the one-line problem when forward does not take (features, lengths) or raises:
    (output, the batch's lengths, None) or (None, None, problem)."""
    try:
        inspect.signature(model.forward).bind(None, None)
    except TypeError:
        return None, None, f"forward{inspect.signature(model.forward)} does not take (features, lengths)"
    x, lengths = _dummy_batch(input_dim, _model_device(model), generator)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(x, lengths), lengths, None
    except Exception as exc:  # noqa: BLE001 - the user's forward: report, never a deep traceback
        return None, None, f"forward(features [2, 24, {input_dim}] float32, lengths [2] long) raised {type(exc).__name__}: {exc}"
    finally:
        model.train(was_training)


def model_contract_problems(model, vocab_size: int, input_dim: int, where: str, seen: dict | None = None) -> list[str]:
    """Run the contract on a dummy batch (two samples of 24 and 17 frames); [] if kept.

    Only what makes the model unusable is checked here (types, ranks, sizes); whether the output
    is normalised and the lengths follow the stride is the forward check's job, with real data.
    `seen`, if given, receives the forward's output under "out".
    """
    if not isinstance(model, nn.Module):
        return [f"{where} returned {type(model).__name__}, expected a torch.nn.Module"]
    problems = []
    if not callable(getattr(model, "output_lengths", None)):
        problems.append("no output_lengths(lengths [B]) -> [B] method (the frames left after its temporal stride)")
    if problems:
        return problems
    out, lengths, problem = dummy_forward(model, input_dim)
    if problem:
        return [problem]
    if seen is not None:
        seen["out"] = out
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return [f"forward returned {type(out).__name__}{'' if not isinstance(out, (tuple, list)) else f' of {len(out)}'}, expected a pair (log_probs, out_lengths)"]
    log_probs, out_lengths = out
    if not torch.is_tensor(log_probs) or log_probs.ndim != 3 or not log_probs.is_floating_point():
        got = f"shape {tuple(log_probs.shape)} {log_probs.dtype}" if torch.is_tensor(log_probs) else type(log_probs).__name__
        problems.append(f"log_probs is {got}, expected a float tensor [B, T', V] = [2, T', {vocab_size}]")
    else:
        if log_probs.shape[0] != 2:
            problems.append(f"log_probs has batch size {log_probs.shape[0]} for a batch of 2 (expected [B, T', V], batch first)")
        if log_probs.shape[-1] != vocab_size:
            extra = " (one more than the vocabulary: the model adds a blank of its own? blank 0 is already in vocab_size)" if log_probs.shape[-1] == vocab_size + 1 else ""
            problems.append(f"log_probs has V={log_probs.shape[-1]} classes, expected vocab_size={vocab_size} (glosses + blank 0){extra}")
    if not torch.is_tensor(out_lengths):
        problems.append(f"out_lengths is {type(out_lengths).__name__}, expected a long tensor [B]")
    elif out_lengths.shape != (2,) or out_lengths.is_floating_point():
        problems.append(f"out_lengths is shape {tuple(out_lengths.shape)} {out_lengths.dtype}, expected a long tensor [B] = [2]")
    else:
        expected = model.output_lengths(lengths)
        if not torch.is_tensor(expected) or expected.shape != (2,):
            problems.append(f"output_lengths(lengths [2]) returned {type(expected).__name__}, expected a long tensor [2]")
    return problems


def _call_factory(spec: str, vocab_size: int, input_dim: int, overrides: dict | None, base_dir) -> nn.Module:
    factory = import_object(spec, "model", base_dir, "a factory(vocab_size, input_dim) -> nn.Module")
    try:
        return factory(vocab_size, input_dim, **(overrides or {}))
    except Exception as exc:  # noqa: BLE001
        raise ComponentError(f"model = {spec!r}: factory(vocab_size={vocab_size}, input_dim={input_dim}) raised {type(exc).__name__}: {exc}") from exc


def _broken(where: str, problems: list[str], read_as: str = "") -> ComponentError:
    return ComponentError(f"{where} breaks the model contract (model.components.CTCModel){read_as}:\n  - " + "\n  - ".join(problems))


def build_external_model(spec: str, vocab_size: int, input_dim: int, overrides: dict | None = None, base_dir=None) -> nn.Module:
    where = f"model = {spec!r}"
    model = _call_factory(spec, vocab_size, input_dim, overrides, base_dir)
    problems = model_contract_problems(model, vocab_size, input_dim, where)
    if problems:
        raise _broken(where, problems)
    return model


class UserModel(nn.Module):
    """The user's model seen through this project's model contract (CTCModel), by the
    conventions the configuration declares; every check runs on it, `inner` is the user's module
    (inside the adapter its modules are named "inner.<the user's name>").

    forward(features, lengths) runs inner(features, lengths) and returns (log_probs [B, T', V],
    out_lengths [B]) with the CTC blank at index 0:
      - the output is a tensor, or a pair (tensor, lengths);
      - output_layout "TBV": the tensor is [T', B, V] and is transposed to [B, T', V];
      - output "logits": log_softmax over V is applied; "auto": applied when calibrate() found
        logits (|logsumexp| over V not ~0), not when it found log-probabilities;
      - without returned lengths: the input lengths when T' = T, else inner.output_lengths(lengths)
        (calibrate() reports a model that has neither);
      - `order` (UserVocabulary.order, when the user's blank is not 0): output column order[k]
        becomes column k, so the user's blank is at 0; targets go through the same permutation.
    The adapter has no state of its own: its state_dict is the user's module's."""

    def __init__(self, inner: nn.Module, layout: str = "BTV", output: str = "log_probs", order=None):
        super().__init__()
        self.inner = inner
        self.layout, self.output = layout, output
        order = list(order) if order is not None else None
        self.order = order if order is not None and order != list(range(len(order))) else None
        self.found = ""  # output "auto": "log-probabilities" or "logits", once calibrated
        self.notes: list[str] = []  # what calibrate() found, for describe()
        self._order_cache: dict = {}

    # ---------------------------------------------------------------- reading the output

    def split_output(self, out) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The user's forward output -> (tensor, lengths or None)."""
        if torch.is_tensor(out):
            return out, None
        if isinstance(out, (tuple, list)) and len(out) == 2 and torch.is_tensor(out[0]):
            return out[0], out[1]
        raise ComponentError(f"the model's forward returned {type(out).__name__}{f' of {len(out)}' if isinstance(out, (tuple, list)) else ''}; "
                             "expected log-probs (a tensor) or a pair (log_probs, out_lengths)")

    @property
    def applies_log_softmax(self) -> bool:
        return self.output == "logits" or (self.output == "auto" and self.found == "logits")

    def output_lengths_for(self, lengths: torch.Tensor, frames_out: int, frames_in: int) -> torch.Tensor:
        """Output lengths of a forward that returned none: the input lengths when T' = T, else
        inner.output_lengths(lengths)."""
        if frames_out == frames_in:
            return lengths
        if callable(getattr(self.inner, "output_lengths", None)):
            return torch.as_tensor(self.inner.output_lengths(lengths)).to(lengths.device)
        raise ComponentError(f"the model returned no output lengths and T' = {frames_out} frames for T = {frames_in}: return "
                             "(log_probs, out_lengths), or give it an output_lengths(lengths) method")

    def user_log_probs(self, out, lengths: torch.Tensor, frames_in: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The user's output -> (log-probs [B, T', V] in the user's class order, out_lengths [B])."""
        x, out_lengths = self.split_output(out)
        if self.layout == "TBV":
            x = x.transpose(0, 1)
        if self.applies_log_softmax:
            x = torch.log_softmax(x, dim=-1)
        if out_lengths is None:
            out_lengths = self.output_lengths_for(lengths, x.shape[1], frames_in)
        return x, out_lengths

    def to_project(self, log_probs: torch.Tensor) -> torch.Tensor:
        """Log-probs in the user's class order -> blank at 0 (the column permutation `order`)."""
        if self.order is None:
            return log_probs
        key = log_probs.device
        if key not in self._order_cache:
            self._order_cache[key] = torch.tensor(self.order, dtype=torch.long, device=key)
        return log_probs.index_select(-1, self._order_cache[key])

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs, out_lengths = self.user_log_probs(self.inner(features, lengths), lengths, features.shape[1])
        return self.to_project(log_probs), out_lengths

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        if callable(getattr(self.inner, "output_lengths", None)):
            return self.inner.output_lengths(lengths)
        return torch.as_tensor(lengths, dtype=torch.long)  # a model without a stride (calibrate() checked T' = T)

    def state_dict(self, *args, **kwargs):
        return self.inner.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.inner.load_state_dict(state_dict, strict=strict, assign=assign)

    # ---------------------------------------------------------------- calibration

    def calibrate(self, vocab_size: int, input_dim: int, blank: int = 0, tol: float = 1e-3) -> list[str]:
        """Run the user's model once on the contract's dummy batch (its own random generator):
        what breaks the declared conventions ([] if nothing), and what was found (self.found,
        self.notes, for describe())."""
        inner = self.inner
        out, lengths, problem = dummy_forward(inner, input_dim, torch.Generator().manual_seed(0))
        if problem:
            return [problem]
        try:
            y, returned = self.split_output(out)
        except ComponentError as exc:
            return [str(exc).replace("the model's forward", "forward")]
        if y.ndim != 3 or not y.is_floating_point():
            return [f"the output is shape {tuple(y.shape)} {y.dtype}, expected a float tensor "
                    f"{'[T, B, V]' if self.layout == 'TBV' else '[B, T, V]'} (output_layout = {self.layout!r})"]
        problems, notes = [], []
        b_axis = 1 if self.layout == "TBV" else 0
        shape = list(y.shape)
        if shape[b_axis] != 2:
            other = "BTV" if self.layout == "TBV" else "TBV"
            why = f": the model returns {other[0]}, {other[1]}, V? set output_layout = {other!r}" if shape[1 - b_axis] == 2 else ""
            problems.append(f"the output {shape} read as {'[T, B, V]' if self.layout == 'TBV' else '[B, T, V]'} (output_layout = {self.layout!r}) "
                            f"has batch size {shape[b_axis]} for a batch of 2{why}")
        frames = shape[1 - b_axis]
        if shape[2] != vocab_size:
            extra = " (one more than the vocabulary: a blank of its own? the blank is already in it)" if shape[2] == vocab_size + 1 else ""
            problems.append(f"the output has V={shape[2]} classes, expected vocab_size={vocab_size} (glosses + the blank at index {blank}){extra}")
        if problems:
            return problems
        if self.layout == "TBV":
            notes.append("output [T', B, V] (output_layout = 'TBV') read as [B, T', V]")
        if returned is None:
            if frames == 24:
                notes.append("no output lengths returned: T' = T, so the input lengths were assumed")
            elif callable(getattr(inner, "output_lengths", None)):
                notes.append(f"no output lengths returned: T' = {frames} for T = 24, so the model's output_lengths(lengths) was used")
            else:
                return [f"forward returns no output lengths and T' = {frames} frames for T = 24 (a temporal stride): return "
                        "(log_probs, out_lengths), or give the model an output_lengths(lengths) method"]
        elif not callable(getattr(inner, "output_lengths", None)):
            return ["no output_lengths(lengths [B]) -> [B] method (the frames left after its temporal stride)"]
        y = y.transpose(0, 1) if self.layout == "TBV" else y
        try:
            out_lengths = torch.as_tensor(returned if returned is not None else self.output_lengths_for(lengths, frames, 24)).to(y.device)
            valid = torch.arange(frames, device=y.device)[None, :] < out_lengths.reshape(-1, 1).clamp(max=frames)
        except (ComponentError, RuntimeError, TypeError, ValueError):
            valid = torch.ones(y.shape[:2], dtype=torch.bool, device=y.device)  # model_contract_problems judges the lengths
        lse = torch.logsumexp(y.float(), dim=-1)[valid]
        err = float(lse.abs().max()) if lse.numel() else 0.0
        if self.output == "auto":
            values = y.float()[valid]
            if err > tol and bool((values >= 0).all()) and float((values.sum(-1) - 1).abs().max()) < tol:
                return ["output = 'auto' found probabilities (each frame's values sum to 1): CTC needs log-probabilities; "
                        "return log_softmax (or the log of the probabilities)"]
            self.found = "logits" if err > tol else "log-probabilities"
            notes.append(f"output = 'auto' found {self.found} (|logsumexp| over V up to {err:.2g})"
                         + (": log_softmax over V applied" if self.found == "logits" else ", used as they are"))
        elif self.output == "logits":
            notes.append("output = 'logits': log_softmax over V applied" + (" (the output is already log-probabilities: that changes nothing)" if err <= tol else ""))
        if self.order is not None:
            notes.append(f"the blank at index {blank} moved to 0, label ids mapped alike")
        self.notes = notes
        return []

    def describe(self) -> str:
        return "; ".join(self.notes) or "output read as it is"


def build_user_model(cfg, vocab_size: int, input_dim: int, order=None, blank: int = 0) -> nn.Module:
    """The user's model factory (cfg.model) held to the model contract, through the conventions
    cfg declares (output_layout, output) and the blank permutation `order`: the user's module
    itself when it keeps the project's contract as it is, else a UserModel around it. A model
    whose forward returns a bare tensor also gets the adapter (lengths: UserModel)."""
    where = f"model = {cfg.model!r}"
    inner = _call_factory(cfg.model, vocab_size, input_dim, cfg.model_overrides, cfg.config_dir)
    declared = cfg.output_layout != "BTV" or cfg.output != "log_probs" or (order is not None and list(order) != sorted(order))
    if not declared:
        seen = {}
        problems = model_contract_problems(inner, vocab_size, input_dim, where, seen)
        if not problems:
            return inner
        if "out" not in seen and isinstance(inner, nn.Module):  # it stopped before running forward
            x, lengths = _dummy_batch(input_dim, _model_device(inner), torch.Generator().manual_seed(0))
            was_training = inner.training
            try:
                with torch.no_grad():
                    seen["out"] = inner.eval()(x, lengths)
            except Exception:  # noqa: BLE001 - the problems already say what is wrong
                pass
            finally:
                inner.train(was_training)
        if not torch.is_tensor(seen.get("out")):
            raise _broken(where, problems)
    if not isinstance(inner, nn.Module):
        raise _broken(where, [f"{where} returned {type(inner).__name__}, expected a torch.nn.Module"])
    adapter = UserModel(inner, cfg.output_layout, cfg.output, order)
    problems = adapter.calibrate(vocab_size, input_dim, blank) or model_contract_problems(adapter, vocab_size, input_dim, where)
    if problems:
        raise _broken(where, problems, f" read with output_layout = {cfg.output_layout!r}, output = {cfg.output!r}, blank = {blank}")
    return adapter



# ----------------------------------------------------------------------------- the dataset


def _item_error(spec, split, index, text) -> ComponentError:
    return ComponentError(f"dataset = {spec!r}, split {split!r}, item {index}: {text}")


def item_key_map(item_keys: Mapping | None = None) -> dict:
    """The configuration's item_keys as {"id": yours, "features": yours, "glosses": yours}
    ("labels" is another name for "glosses"); keys not given keep this project's names."""
    keys = dict(item_keys or {})
    if "labels" in keys:
        keys["glosses"] = keys.pop("labels")
    return {k: keys.get(k, k) for k in ITEM_KEYS}


class LabelId(str):
    """A label id that names no gloss: the blank's index (problem "blank") or an id outside
    the vocabulary (problem "outside"). It is kept in the glosses of the sample's record, where
    the labels check finds and reports it; targets and references leave it out."""

    def __new__(cls, uid: int, problem: str, text: str):
        obj = super().__new__(cls, text)
        obj.uid, obj.problem = int(uid), problem
        return obj

    def __reduce__(self):
        return LabelId, (self.uid, self.problem, str(self))


def clean_glosses(glosses) -> tuple[str, ...]:
    """The glosses without LabelId marks: what targets and WER references are made of."""
    return tuple(g for g in glosses if not isinstance(g, LabelId))


class UserVocabulary:
    """The user's vocabulary: `names[i]` is the gloss of the user's id i, `blank` the CTC blank's
    index (V = len(names), blank included; a blank right after the last gloss gets the name
    "<blank>").

    Every check runs on this project's convention, blank 0: `order` is the fixed permutation
    that gets there, internal id k = the user's id order[k] (order[0] = blank, then the other
    ids in increasing order). UserModel moves the output's column `blank` to 0 by it, and
    targets are mapped by the same permutation (to_internal / to_user), so the CTC loss of
    any sample is the same in both. `internal` is the project's Vocabulary in that order."""

    def __init__(self, names, blank: int = 0, source: str = "vocab"):
        names = list(names)
        if blank > len(names):
            raise ComponentError(f"{source}: blank = {blank} is beyond its ids 0..{len(names) - 1} "
                                 f"(blank = {len(names)} puts the blank right after the last gloss)")
        if blank == len(names):
            names.append(BLANK)
        self.names = [n if n is not None else f"<unused id {i}>" for i, n in enumerate(names)]
        self.blank, self.source = int(blank), source
        glosses = [n for i, n in enumerate(self.names) if i != self.blank]
        named_blank = [i for i, n in enumerate(self.names) if n == BLANK and i != self.blank]
        if named_blank:
            raise ComponentError(f"{source}: id {named_blank[0]} is {BLANK!r}, the blank's name, but blank = {self.blank}: "
                                 f"set blank = {named_blank[0]} (the blank's index in your vocabulary and model output)")
        twice = sorted({g for g in glosses if glosses.count(g) > 1})
        if twice:
            ids = [i for i, n in enumerate(self.names) if n == twice[0]]
            raise ComponentError(f"{source}: gloss {twice[0]!r} has ids {ids}; every gloss needs one id")
        self.order = [self.blank] + [i for i in range(len(self.names)) if i != self.blank]
        self.position = [0] * len(self.order)
        for k, u in enumerate(self.order):
            self.position[u] = k
        self.internal = Vocabulary([self.names[u] for u in self.order[1:]])
        self.stoi = {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    @property
    def blank_name(self) -> str:
        return self.names[self.blank]

    @property
    def permutes(self) -> bool:
        """Whether the user's ids differ from the project's (a blank other than 0)."""
        return self.blank != 0

    def describe(self) -> str:
        where = "the last index" if self.blank == len(self) - 1 else f"index {self.blank}"
        return f"{self.source}: {len(self) - 1} glosses + the blank at {where} (blank = {self.blank}), V = {len(self)}"

    def decode_ids(self, ids) -> tuple[str, ...]:
        """The user's label ids -> glosses; the blank's index and ids outside 0..V-1 become LabelId marks."""
        out = []
        for u in ids:
            u = int(u)
            if u == self.blank:
                out.append(LabelId(u, "blank", f"<id {u}: the blank>"))
            elif not 0 <= u < len(self):
                out.append(LabelId(u, "outside", f"<id {u}: outside 0..{len(self) - 1}>"))
            else:
                out.append(self.names[u])
        return tuple(out)

    def mark_blank_name(self, glosses) -> tuple[str, ...]:
        """Gloss names: the blank's own name among them becomes a LabelId mark."""
        return tuple(LabelId(self.blank, "blank", g) if g == self.blank_name else g for g in glosses)

    def user_ids(self, glosses) -> list[int]:
        """Glosses (names, LabelId marks) -> the user's ids; names outside the vocabulary are left out."""
        return [g.uid if isinstance(g, LabelId) else self.stoi[g] for g in glosses if isinstance(g, LabelId) or g in self.stoi]

    def to_internal(self, ids: torch.Tensor) -> torch.Tensor:
        """The user's ids (any shape; valid ids only) -> the project's (blank 0)."""
        return torch.as_tensor(self.position, dtype=torch.long, device=ids.device)[ids.long()]

    def to_user(self, ids: torch.Tensor) -> torch.Tensor:
        """The project's ids -> the user's."""
        return torch.as_tensor(self.order, dtype=torch.long, device=ids.device)[ids.long()]

    @classmethod
    def around_blank(cls, vocab: Vocabulary, blank: int, source: str = "the vocabulary built from train") -> "UserVocabulary":
        """The project's vocabulary (glosses in its order) with the blank at index `blank`."""
        glosses = vocab.to_list()
        if blank > len(glosses):
            raise ComponentError(f"blank = {blank} is beyond {source} ({len(glosses)} glosses + blank: ids 0..{len(glosses)}); "
                                 "name the vocabulary your ids use: vocab = \"vocab.txt\"")
        return cls(glosses[:blank] + [BLANK] + glosses[blank:], blank, source)


def _vocab_entries(obj, where: str) -> list:
    """A list of glosses (index = id) or a dict gloss -> id -> the list (None where no gloss has the id)."""
    if isinstance(obj, Mapping):
        bad = [g for g, i in obj.items() if not isinstance(g, str) or isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0]
        if bad:
            raise ComponentError(f"{where}: entry {bad[0]!r} -> {obj[bad[0]]!r}; expected gloss (str) -> id (int >= 0)")
        names = [None] * (max(map(int, obj.values()), default=-1) + 1)
        for g, i in obj.items():
            if names[int(i)] is not None:
                raise ComponentError(f"{where}: id {int(i)} is given to {names[int(i)]!r} and {g!r}; one gloss an id")
            names[int(i)] = g
        return names
    if isinstance(obj, (list, tuple)):
        bad = [i for i, g in enumerate(obj) if not isinstance(g, str) or not g]
        if bad:
            raise ComponentError(f"{where}: entry {bad[0]} is {obj[bad[0]]!r}; expected a list of glosses (non-empty str, index = id)")
        return list(obj)
    raise ComponentError(f"{where}: got {type(obj).__name__}; expected a list of glosses (index = id) or a dict gloss -> id")


def _read_vocab_file(path: Path, where: str) -> list:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return _vocab_entries(json.loads(text), where)
        except ValueError as exc:
            raise ComponentError(f"{where}: not JSON ({exc})") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    empty = [i for i, line in enumerate(lines) if not line]
    if empty:
        raise ComponentError(f"{where}: line {empty[0] + 1} is empty; one gloss a line, line i + 1 = id i")
    return lines


def load_user_vocab(spec, blank: int = 0, base_dir=None) -> UserVocabulary:
    """The configuration's `vocab`: a file (one gloss a line, line i + 1 = id i; .json: a list or
    a dict gloss -> id), "module.path:attribute" (a list or dict, or a callable returning one),
    or the list / dict itself; `blank` is the blank's index in it."""
    if isinstance(spec, (list, tuple, Mapping)):
        return UserVocabulary(_vocab_entries(spec, "vocab"), blank, "vocab (the configuration's list)" if not isinstance(spec, Mapping) else "vocab (the configuration's table)")
    if not isinstance(spec, str) or not spec:
        raise ComponentError(f"vocab = {spec!r}: expected a file, 'module.path:attribute', a list or a table")
    candidates = [Path(spec)] if Path(spec).is_absolute() else [Path(d) / spec for d in _search_dirs(base_dir)]
    found = next((p for p in candidates if p.is_file()), None)
    if found is not None:
        return UserVocabulary(_read_vocab_file(found, f"vocab = {spec!r}"), blank, Path(spec).name)
    if is_component_path(spec):
        obj = import_object(spec, "vocab", base_dir, "a list of glosses or a dict gloss -> id", callable_only=False)
        if callable(obj) and not isinstance(obj, (list, tuple, Mapping)):
            obj = obj()
        return UserVocabulary(_vocab_entries(obj, f"vocab = {spec!r}"), blank, spec)
    raise ComponentError(f"vocab = {spec!r}: no such file in {_search_dirs(base_dir)}; give a file of one gloss a line, "
                         "'module.path:attribute', a list or a table")


def _int_labels(glosses) -> list[int] | None:
    """Label ids as a list of ints, or None if `glosses` is not a sequence of integers."""
    if torch.is_tensor(glosses):
        integer = not glosses.is_floating_point() and not glosses.is_complex() and glosses.dtype != torch.bool
        return [int(g) for g in glosses.tolist()] if glosses.ndim == 1 and integer else None
    if isinstance(glosses, np.ndarray):
        return [int(g) for g in glosses.tolist()] if glosses.ndim == 1 and glosses.dtype.kind in "iu" else None
    if isinstance(glosses, (list, tuple)) and glosses and all(isinstance(g, (int, np.integer)) and not isinstance(g, bool) for g in glosses):
        return [int(g) for g in glosses]
    return None


def parse_item(item, spec: str, split: str, index: int, keys: Mapping | None = None, vocab: UserVocabulary | None = None
               ) -> tuple[str, np.ndarray | torch.Tensor, tuple[str, ...]]:
    """A user dataset item -> (id, features [T, F], glosses); ComponentError naming what is wrong.

    `keys` ({"id", "features", "glosses"} -> the item's key names, item_key_map) reads items
    of other key names. Glosses are a space-separated str, a list of str, or, with the user's
    vocabulary `vocab`, a list (or 1-D tensor / array) of its ids, decoded through it: the
    blank's index and ids outside it become LabelId marks, for the labels check to report."""
    keys = dict(keys or {k: k for k in ITEM_KEYS})
    wanted = [keys[k] for k in ITEM_KEYS]
    if not isinstance(item, Mapping):
        raise _item_error(spec, split, index, f"got {type(item).__name__}, expected a mapping with keys {wanted}")
    missing = [k for k in wanted if k not in item]
    if missing:
        hint = ""
        if all(keys[k] == k for k in ITEM_KEYS):
            hint = ", or name yours in the configuration: item_keys = { id = \"...\", features = \"...\", glosses = \"...\" }"
        raise _item_error(spec, split, index, f"missing key(s) {missing} (has {sorted(map(str, item))}); expected {wanted}{hint}")
    sid, feats, glosses = item[keys["id"]], item[keys["features"]], item[keys["glosses"]]
    if not isinstance(sid, str) or not sid:
        raise _item_error(spec, split, index, f"id {sid!r} is not a non-empty str")
    gname = keys["glosses"]
    ids = _int_labels(glosses)
    if isinstance(glosses, str):
        glosses = tuple(glosses.split())
    elif isinstance(glosses, (list, tuple)) and all(isinstance(g, str) for g in glosses):
        glosses = tuple(glosses)
    elif ids is not None:
        if vocab is None:
            shown = ids[:6] + (["..."] if len(ids) > 6 else [])
            raise _item_error(spec, split, index, f"(id {sid!r}) {gname} are integer ids {shown}: name the vocabulary they index in the "
                                                  "configuration, vocab = \"vocab.txt\" (one gloss a line, line i + 1 = id i), and blank = its index")
        glosses = vocab.decode_ids(ids)
    else:
        raise _item_error(spec, split, index, f"(id {sid!r}) {gname} is {type(glosses).__name__}, expected a space-separated str or a list of str"
                                              f"{' or of int ids (with vocab = ...)' if vocab is not None else ''}")
    if vocab is not None and ids is None:
        glosses = vocab.mark_blank_name(glosses)
    if not (torch.is_tensor(feats) or isinstance(feats, np.ndarray)) or feats.ndim != 2:
        got = f"shape {tuple(feats.shape)}" if hasattr(feats, "shape") else type(feats).__name__
        raise _item_error(spec, split, index, f"(id {sid!r}) {keys['features']} is {got}, expected a [T, F] tensor or array")
    if feats.shape[0] < 1:
        raise _item_error(spec, split, index, f"(id {sid!r}) {keys['features']} has 0 frames")
    return sid, feats, glosses


def _as_float_tensor(feats) -> torch.Tensor:
    if torch.is_tensor(feats):
        return feats.detach().to("cpu", torch.float32)
    return torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))


class ExternalDataset(torch.utils.data.Dataset):
    """A user's dataset of one split as model-ready Samples: the harness's vocabulary (blank 0,
    built from train, or the user's vocabulary in the project's order) encodes the glosses;
    features pass through untouched (the user's dataset owns its normalization:
    Batch.normalization is "external"). `keys` and `user_vocab` read items of the user's own
    key names and label ids (parse_item); label ids that name no gloss (LabelId) are left out
    of the targets and references: the labels check reports them."""

    def __init__(self, inner, spec: str, split: str, vocab: Vocabulary, width: int | None = None,
                 keys: Mapping | None = None, user_vocab: UserVocabulary | None = None):
        self.inner, self.spec, self.split, self.vocab, self.width = inner, spec, split, vocab, width
        self.keys, self.user_vocab = keys, user_vocab
        self.normalization = EXTERNAL
        self._unknown = "error" if split == "train" else "skip"

    def __len__(self) -> int:
        return len(self.inner)

    def item(self, i: int) -> tuple[str, torch.Tensor, tuple[str, ...]]:
        sid, feats, glosses = parse_item(self.inner[i], self.spec, self.split, i, self.keys, self.user_vocab)
        x = _as_float_tensor(feats)
        if self.width is not None and x.shape[1] != self.width:
            raise _item_error(self.spec, self.split, i, f"(id {sid!r}) features have F={x.shape[1]} per frame, other items {self.width}: every item needs the same width")
        return sid, x, glosses

    def __getitem__(self, i: int) -> Sample:
        sid, x, glosses = self.item(i)
        glosses = clean_glosses(glosses)
        targets = torch.tensor(self.vocab.encode(glosses, sid, self._unknown), dtype=torch.long)
        return Sample(id=sid, features=x, targets=targets, glosses=glosses, normalization=EXTERNAL)


def load_external_splits(spec: str, base_dir=None, data_dir=None, splits=("train", "dev", "test")) -> dict:
    """factory(split) for each split -> {split: user dataset}; a factory that takes a `data_dir`
    keyword gets the configuration's. Splits it has no data for (it raises KeyError or
    FileNotFoundError, returns None or an empty dataset) are left out; train is required."""
    factory = import_object(spec, "dataset", base_dir, "a factory(split: str) -> torch Dataset")
    try:
        takes_dir = "data_dir" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_dir = False
    kwargs = {"data_dir": data_dir} if takes_dir and data_dir is not None else {}
    out = {}
    for split in splits:
        try:
            ds = factory(split, **kwargs)
        except (KeyError, FileNotFoundError) as exc:
            if split == "train":
                raise ComponentError(f"dataset = {spec!r}: factory('train') raised {type(exc).__name__}: {exc}") from exc
            continue
        except Exception as exc:  # noqa: BLE001
            raise ComponentError(f"dataset = {spec!r}: factory({split!r}) raised {type(exc).__name__}: {exc}") from exc
        if ds is None:
            continue
        if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
            raise ComponentError(f"dataset = {spec!r}: factory({split!r}) returned {type(ds).__name__}, expected a map-style torch Dataset (__len__ and __getitem__)")
        if len(ds):
            out[split] = ds
    if "train" not in out:
        raise ComponentError(f"dataset = {spec!r}: factory('train') gave no samples; the harness builds the vocabulary from train")
    return out


def load_batch_transform(spec: str | None, base_dir=None):
    """The configured batch_transform, or None."""
    if spec is None:
        return None
    fn = import_object(spec, "batch_transform", base_dir, "fn(features [B, T, F], lengths [B]) -> features")
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        raise ComponentError(f"batch_transform = {spec!r}: {getattr(fn, '__name__', fn)}{inspect.signature(fn)} does not take (features, lengths)") from None
    except ValueError:
        pass  # no signature to inspect (a builtin): trust it
    return fn


def apply_transform(fn, features: torch.Tensor, lengths: torch.Tensor, spec: str) -> torch.Tensor:
    out = fn(features, lengths)
    if not torch.is_tensor(out) or out.shape[:2] != features.shape[:2]:
        got = f"shape {tuple(out.shape)}" if torch.is_tensor(out) else type(out).__name__
        raise ComponentError(f"batch_transform = {spec!r} returned {got} for features {tuple(features.shape)}; expected a tensor [B, T, F']")
    return out


# ----------------------------------------------------------------------------- the user's collate and training step


class UserCollate(Protocol):
    """collate_fn = "module.path:fn": fn(items: list of the dataset's items) -> batch, one of

    a dict:  features [B, T, F] float, zero-padded, under item_keys.features ("features")
             "lengths" [B] long, the valid frames of each sample
             optional, the targets under item_keys.glosses ("glosses") or "targets", in the
               vocabulary's ids: 1-D concatenated or 2-D padded [B, S] with "target_lengths"
               [B], or a list of id sequences
             optional, the ids under item_keys.id ("id") or "ids": a list of str
    a tuple: (features, lengths, targets, target_lengths[, ids]), the same values.

    The checks that run a batch (forward, loss_at_init, gradients, smoke, overfit, train_step)
    take its features, lengths and the order of the samples from it (by the ids, else the
    lengths must keep the order of the items given); the checks that compare a sample alone and
    in a batch (model_input, padding, batch_size) pad the items' features with zeros themselves.
    The targets, when present, must be those of the items' labels (the contract check compares
    them)."""

    def __call__(self, items: list) -> object: ...


class TrainStep(Protocol):
    """train_step = "module.path:fn": fn(model, batch, optimizer) -> loss.

    model: the user's module (for a model seen through UserModel, its `inner`: its own output
    conventions); batch: what collate_fn returns, or without one the dict {"features" [B, T, F],
    "lengths" [B], "targets" 1-D concatenated in the vocabulary's ids, "target_lengths" [B],
    "ids" list of str} (step_batch), its tensors on the configured device, before any
    batch_transform (the step does what the user's loop does); optimizer: the one training
    builds (model.training.build_optimizer). It does the backward pass, clipping and
    optimizer.step() itself and returns the loss (a float or a 0-dim tensor)."""

    def __call__(self, model: nn.Module, batch: object, optimizer: torch.optim.Optimizer) -> object: ...


def _load_function(spec: str, key: str, base_dir, arguments: tuple[str, ...], expected: str):
    fn = import_object(spec, key, base_dir, expected)
    try:
        inspect.signature(fn).bind(*arguments)
    except TypeError:
        raise ComponentError(f"{key} = {spec!r}: {getattr(fn, '__name__', fn)}{inspect.signature(fn)} does not take ({', '.join(arguments)})") from None
    except ValueError:
        pass  # no signature to inspect (a builtin): trust it
    return fn


def load_collate_fn(spec: str | None, base_dir=None):
    """The configured collate_fn, or None."""
    return None if spec is None else _load_function(spec, "collate_fn", base_dir, ("items",), "fn(list of items) -> batch")


def load_train_step(spec: str | None, base_dir=None):
    """The configured train_step, or None."""
    return None if spec is None else _load_function(spec, "train_step", base_dir, ("model", "batch", "optimizer"), "fn(model, batch, optimizer) -> loss")


def _batch_fields(raw, keys: Mapping, spec: str) -> dict:
    """A user batch (UserCollate) -> {"features", "lengths", "targets", "target_lengths", "ids"} (None where absent)."""
    keys = dict(keys or {k: k for k in ITEM_KEYS})
    where = f"collate_fn = {spec!r} returned"
    if isinstance(raw, Mapping):
        fkey = keys["features"]
        missing = [k for k in (fkey, "lengths") if k not in raw]
        if missing:
            raise ComponentError(f"{where} a dict without {missing} (has {sorted(map(str, raw))}); expected {fkey!r} [B, T, F] and 'lengths' [B] (model.components.UserCollate)")
        tkey = keys["glosses"] if keys["glosses"] in raw else "targets"
        ikey = keys["id"] if keys["id"] in raw else "ids"
        fields = {"features": raw[fkey], "lengths": raw["lengths"], "targets": raw.get(tkey), "target_lengths": raw.get("target_lengths"), "ids": raw.get(ikey)}
    elif isinstance(raw, (tuple, list)) and len(raw) in (4, 5):
        fields = dict(zip(("features", "lengths", "targets", "target_lengths", "ids"), list(raw) + [None] * (5 - len(raw))))
    else:
        got = f"{type(raw).__name__}{f' of {len(raw)}' if isinstance(raw, (tuple, list)) else ''}"
        raise ComponentError(f"{where} {got}; expected a dict with {keys['features']!r} and 'lengths', or a tuple (features, lengths, targets, target_lengths[, ids]) (model.components.UserCollate)")
    feats, lengths = fields["features"], fields["lengths"]
    if not torch.is_tensor(feats) or feats.ndim != 3 or not feats.is_floating_point():
        got = f"shape {tuple(feats.shape)} {feats.dtype}" if torch.is_tensor(feats) else type(feats).__name__
        raise ComponentError(f"{where} features of {got}; expected a float tensor [B, T, F]")
    try:
        lengths = torch.as_tensor(lengths).long().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ComponentError(f"{where} lengths of type {type(lengths).__name__}; expected a long tensor [B]") from None
    if lengths.shape != (feats.shape[0],):
        raise ComponentError(f"{where} lengths of shape {tuple(lengths.shape)} for features {tuple(feats.shape)}; expected [B] = [{feats.shape[0]}]")
    if int(lengths.max()) > feats.shape[1] or int(lengths.min()) < 1:
        raise ComponentError(f"{where} lengths {lengths.tolist()} for features of {feats.shape[1]} frames; each must lie in 1..T")
    fields["lengths"] = lengths
    ids = fields["ids"]
    if ids is not None and (not isinstance(ids, (list, tuple)) or len(ids) != feats.shape[0] or not all(isinstance(i, str) for i in ids)):
        raise ComponentError(f"{where} ids {ids!r}; expected a list of {feats.shape[0]} str (the items' ids)")
    return fields


def _sequences(targets, target_lengths, size: int) -> list[list[int]] | None:
    """A user batch's targets -> one id list a sample (None if it has none)."""
    if targets is None:
        return None
    if isinstance(targets, (list, tuple)):
        return [[int(t) for t in (seq.tolist() if hasattr(seq, "tolist") else seq)] for seq in targets]
    targets = torch.as_tensor(targets).cpu()
    if target_lengths is None:
        raise ComponentError("targets without target_lengths: return 'target_lengths' [B] beside them")
    tl = torch.as_tensor(target_lengths).long().cpu().reshape(-1)
    if tl.numel() != size:
        raise ComponentError(f"target_lengths has {tl.numel()} entries for {size} samples")
    if targets.ndim == 1:
        if int(tl.sum()) != targets.numel():
            raise ComponentError(f"target_lengths {tl.tolist()} sum to {int(tl.sum())}, the 1-D targets have {targets.numel()} ids")
        return [seq.tolist() for seq in torch.split(targets.long(), tl.tolist())]
    if targets.ndim == 2 and targets.shape[0] == size and (size == 0 or int(tl.max()) <= targets.shape[1]):
        return [targets[i, : int(tl[i])].long().tolist() for i in range(size)]
    raise ComponentError(f"targets of shape {tuple(targets.shape)} with target_lengths {tl.tolist()}; expected 1-D concatenated or [B, S] padded")


def batch_targets(raw, keys: Mapping | None) -> list[list[int]] | None:
    """The targets of a user batch (UserCollate, or step_batch's dict), one id list a sample
    in the batch's order; None when it carries none."""
    fields = _batch_fields(raw, keys, "?")
    return _sequences(fields["targets"], fields["target_lengths"], len(fields["lengths"]))


def _order_of(fields: dict, samples: list[Sample], spec: str) -> list[int]:
    """Which sample each row of a user batch is: row r holds samples[order[r]]."""
    ids = [s.id for s in samples]
    if len(fields["lengths"]) != len(samples):
        raise ComponentError(f"collate_fn = {spec!r} returned a batch of {len(fields['lengths'])} for {len(samples)} items")
    if fields["ids"] is not None:
        if sorted(fields["ids"]) != sorted(ids):
            raise ComponentError(f"collate_fn = {spec!r} returned ids {list(fields['ids'])} for the items {ids}")
        return [ids.index(i) for i in fields["ids"]]
    given = [s.length for s in samples]
    if fields["lengths"].tolist() != given:
        raise ComponentError(f"collate_fn = {spec!r} returned lengths {fields['lengths'].tolist()} for items of {given} frames and no ids: "
                             "return the items in the order given, or their ids beside them (model.components.UserCollate)")
    return list(range(len(samples)))


def batch_from_user(raw, samples: list[Sample], keys: Mapping | None, spec: str) -> Batch:
    """The Batch the checks judge, from a user batch (UserCollate) of the items behind `samples`:
    its features, lengths and sample order; targets, references and ids are the samples'."""
    fields = _batch_fields(raw, keys, spec)
    order = _order_of(fields, samples, spec)
    rows = [samples[k] for k in order]
    return Batch(
        features=fields["features"].detach().to("cpu", torch.float32).clone(),  # the user's step may change its batch in place
        lengths=fields["lengths"],
        targets=torch.cat([s.targets for s in rows]) if rows else torch.zeros(0, dtype=torch.long),
        target_lengths=torch.tensor([len(s.targets) for s in rows], dtype=torch.long),
        ids=[s.id for s in rows],
        glosses=[s.glosses for s in rows],
        normalization=rows[0].normalization if rows else EXTERNAL,
    )


def user_batch_problems(raw, samples: list[Sample], labels: list[list[int]], keys: Mapping | None, spec: str) -> list[str]:
    """What a user batch of the items behind `samples` breaks of UserCollate ([] if nothing):
    its form, its order, and targets other than the items' labels (`labels`: the user's ids of
    each sample's labels)."""
    try:
        fields = _batch_fields(raw, keys, spec)
        order = _order_of(fields, samples, spec)
        for r, k in enumerate(order):
            n, s = int(fields["lengths"][r]), samples[k]
            if n != s.length:
                return [f"collate_fn = {spec!r}: sample {s.id!r} has lengths {n}, its item {s.length} frames"]
        seqs = _sequences(fields["targets"], fields["target_lengths"], len(order))
    except ComponentError as exc:
        text = str(exc)
        return [text if text.startswith("collate_fn") else f"collate_fn = {spec!r}: {text}"]
    if seqs is not None:
        for r, k in enumerate(order):
            if seqs[r] != labels[k]:
                return [f"collate_fn = {spec!r}: the targets of sample {samples[k].id!r} are {seqs[r]}, its item's labels {labels[k]}"]
    return []


def step_batch(batch: Batch, user_vocab: UserVocabulary | None = None) -> dict:
    """The batch a train_step gets without a collate_fn (TrainStep): the dict
    {"features", "lengths", "targets" (in the vocabulary's ids), "target_lengths", "ids"}."""
    targets = batch.targets if user_vocab is None or not user_vocab.permutes else user_vocab.to_user(batch.targets)
    return {"features": batch.features, "lengths": batch.lengths, "targets": targets, "target_lengths": batch.target_lengths, "ids": list(batch.ids)}


def to_device(raw, device):
    """A user batch with its tensors (in a dict, tuple or list, one level deep) on `device`."""
    if torch.is_tensor(raw):
        return raw.to(device)
    if isinstance(raw, Mapping):
        return type(raw)({k: to_device(v, device) if torch.is_tensor(v) else v for k, v in raw.items()}) if isinstance(raw, dict) else raw
    if isinstance(raw, (tuple, list)):
        return type(raw)(to_device(v, device) if torch.is_tensor(v) else v for v in raw)
    return raw


def with_features(raw, keys: Mapping | None, features: torch.Tensor):
    """A copy of a user batch (UserCollate or step_batch) with other features."""
    keys = dict(keys or {k: k for k in ITEM_KEYS})
    if isinstance(raw, Mapping):
        out = dict(raw)
        out[keys["features"] if keys["features"] in raw else "features"] = features
        return out
    return type(raw)([features] + list(raw)[1:])


def features_of(raw, keys: Mapping | None) -> torch.Tensor:
    keys = dict(keys or {k: k for k in ITEM_KEYS})
    if isinstance(raw, Mapping):
        return raw[keys["features"] if keys["features"] in raw else "features"]
    return raw[0]
