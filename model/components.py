"""The user's own components, named in the training configuration.

    model = "i3d_teacher"                       # a registered name, or
    model = "my_project.models:make_model"      # factory(vocab_size: int, input_dim: int, **model_overrides) -> nn.Module
    dataset = "my_project.data:make_dataset"    # factory(split: str[, data_dir=...]) -> torch Dataset of mappings
    batch_transform = "my_project.loop:prepare" # fn(features [B, T, F], lengths [B]) -> features

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

from data.dataset import Sample, Vocabulary

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


def import_object(spec: str, key: str, base_dir=None, expected: str = "a callable"):
    """'package.module:attr.sub' -> the object; ComponentError naming `key` if it cannot be had.

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
    if not callable(obj):
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


def model_contract_problems(model, vocab_size: int, input_dim: int, where: str) -> list[str]:
    """Run the contract on a dummy batch (two samples of 24 and 17 frames); [] if kept.

    Only what makes the model unusable is checked here (types, ranks, sizes); whether the output
    is normalised and the lengths follow the stride is the forward check's job, with real data.
    """
    if not isinstance(model, nn.Module):
        return [f"{where} returned {type(model).__name__}, expected a torch.nn.Module"]
    problems = []
    if not callable(getattr(model, "output_lengths", None)):
        problems.append("no output_lengths(lengths [B]) -> [B] method (the frames left after its temporal stride)")
    try:
        inspect.signature(model.forward).bind(None, None)
    except TypeError:
        problems.append(f"forward{inspect.signature(model.forward)} does not take (features, lengths)")
    if problems:
        return problems
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    lengths = torch.tensor([24, 17], dtype=torch.long, device=device)
    x = torch.randn(2, 24, input_dim, device=device) * 0.1
    x[1, 17:] = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x, lengths)
    except Exception as exc:  # noqa: BLE001 - the user's forward: report, never a deep traceback
        return [f"forward(features [2, 24, {input_dim}] float32, lengths [2] long) raised {type(exc).__name__}: {exc}"]
    finally:
        model.train(was_training)
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


def build_external_model(spec: str, vocab_size: int, input_dim: int, overrides: dict | None = None, base_dir=None) -> nn.Module:
    factory = import_object(spec, "model", base_dir, "a factory(vocab_size, input_dim) -> nn.Module")
    where = f"model = {spec!r}"
    try:
        model = factory(vocab_size, input_dim, **(overrides or {}))
    except Exception as exc:  # noqa: BLE001
        raise ComponentError(f"{where}: factory(vocab_size={vocab_size}, input_dim={input_dim}) raised {type(exc).__name__}: {exc}") from exc
    problems = model_contract_problems(model, vocab_size, input_dim, where)
    if problems:
        raise ComponentError(f"{where} breaks the model contract (model.components.CTCModel):\n  - " + "\n  - ".join(problems))
    return model


# ----------------------------------------------------------------------------- the dataset


def _item_error(spec, split, index, text) -> ComponentError:
    return ComponentError(f"dataset = {spec!r}, split {split!r}, item {index}: {text}")


def parse_item(item, spec: str, split: str, index: int) -> tuple[str, np.ndarray | torch.Tensor, tuple[str, ...]]:
    """A user dataset item -> (id, features [T, F], glosses); ComponentError naming what is wrong."""
    if not isinstance(item, Mapping):
        raise _item_error(spec, split, index, f"got {type(item).__name__}, expected a mapping with keys {list(ITEM_KEYS)}")
    missing = [k for k in ITEM_KEYS if k not in item]
    if missing:
        raise _item_error(spec, split, index, f"missing key(s) {missing} (has {sorted(map(str, item))}); expected {list(ITEM_KEYS)}")
    sid, feats, glosses = item["id"], item["features"], item["glosses"]
    if not isinstance(sid, str) or not sid:
        raise _item_error(spec, split, index, f"id {sid!r} is not a non-empty str")
    if isinstance(glosses, str):
        glosses = tuple(glosses.split())
    elif isinstance(glosses, (list, tuple)) and all(isinstance(g, str) for g in glosses):
        glosses = tuple(glosses)
    else:
        raise _item_error(spec, split, index, f"(id {sid!r}) glosses is {type(glosses).__name__}, expected a space-separated str or a list of str")
    if not (torch.is_tensor(feats) or isinstance(feats, np.ndarray)) or feats.ndim != 2:
        got = f"shape {tuple(feats.shape)}" if hasattr(feats, "shape") else type(feats).__name__
        raise _item_error(spec, split, index, f"(id {sid!r}) features is {got}, expected a [T, F] tensor or array")
    if feats.shape[0] < 1:
        raise _item_error(spec, split, index, f"(id {sid!r}) features has 0 frames")
    return sid, feats, glosses


def _as_float_tensor(feats) -> torch.Tensor:
    if torch.is_tensor(feats):
        return feats.detach().to("cpu", torch.float32)
    return torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))


class ExternalDataset(torch.utils.data.Dataset):
    """A user's dataset of one split as model-ready Samples: the harness's vocabulary (blank 0,
    built from train) encodes the glosses; features pass through untouched (the user's dataset
    owns its normalization: Batch.normalization is "external")."""

    def __init__(self, inner, spec: str, split: str, vocab: Vocabulary, width: int | None = None):
        self.inner, self.spec, self.split, self.vocab, self.width = inner, spec, split, vocab, width
        self.normalization = EXTERNAL
        self._unknown = "error" if split == "train" else "skip"

    def __len__(self) -> int:
        return len(self.inner)

    def item(self, i: int) -> tuple[str, torch.Tensor, tuple[str, ...]]:
        sid, feats, glosses = parse_item(self.inner[i], self.spec, self.split, i)
        x = _as_float_tensor(feats)
        if self.width is not None and x.shape[1] != self.width:
            raise _item_error(self.spec, self.split, i, f"(id {sid!r}) features have F={x.shape[1]} per frame, other items {self.width}: every item needs the same width")
        return sid, x, glosses

    def __getitem__(self, i: int) -> Sample:
        sid, x, glosses = self.item(i)
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
