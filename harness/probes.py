"""Probes of a model on a batch: where a non-finite value first appears, and the pieces the
padding probe (harness/checks/padding.py) builds on: every module's output as plain tensors,
whatever the module returns (nested tensors, PackedSequence, tuples, dicts), and what kind of
layer a module is.

The probes never raise inside the forward pass they watch: a module output they cannot read is skipped.
"""
from __future__ import annotations

import functools
import sysconfig
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from data.dataset import Batch

MAX_DEPTH = 4  # nesting of tuples / lists / dicts searched for tensors in a module's output


def _dense(t: torch.Tensor) -> torch.Tensor | None:
    """A nested tensor padded with 0 to a strided one; a strided tensor as it is; None if it
    cannot be read as one."""
    if not getattr(t, "is_nested", False):
        return t
    try:
        return torch.nested.to_padded_tensor(t, 0.0)
    except Exception:  # noqa: BLE001 - a layout this torch cannot pad: skipped
        try:
            parts = t.unbind()
            return torch.nn.utils.rnn.pad_sequence(list(parts), batch_first=True) if parts else None
        except Exception:  # noqa: BLE001
            return None


def output_tensors(output, packed: bool = True, _depth: int = 0) -> list[torch.Tensor]:
    """The floating-point tensors of a module's output (or inputs), in order, as strided tensors:
    nested tensors padded with 0, a PackedSequence as its flat `.data` (or skipped with
    packed=False: its rows are time steps of several samples), tuples, lists and dicts searched
    `MAX_DEPTH` levels down."""
    if _depth > MAX_DEPTH or output is None:
        return []
    if isinstance(output, PackedSequence):
        return output_tensors(output.data, packed, _depth + 1) if packed else []
    if torch.is_tensor(output):
        if not output.is_floating_point():
            return []
        dense = _dense(output)
        return [dense] if dense is not None else []
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        found = []
        for item in output:
            found += output_tensors(item, packed, _depth + 1)
        return found
    return []


def _nonfinite_share(t: torch.Tensor) -> float:
    """Share of a tensor's values that are NaN/Inf (a nested tensor: of its real values, not its padding)."""
    if getattr(t, "is_nested", False):
        parts = [p.reshape(-1) for p in t.unbind()]
        t = torch.cat(parts) if parts else t.new_zeros(0)
    return float((~torch.isfinite(t)).float().mean()) if t.numel() else 0.0


def _nonfinite_rows(t: torch.Tensor, batch_size: int) -> list[int]:
    """Batch indices holding NaN/Inf in a dense tensor whose first axis of size `batch_size` is
    the batch axis; [] when it has none."""
    axis = next((d for d in range(min(t.dim(), 2)) if t.shape[d] == batch_size), None)
    if axis is None:
        return []
    bad = (~torch.isfinite(t)).movedim(axis, 0).reshape(batch_size, -1).any(dim=1)
    return torch.nonzero(bad).flatten().tolist()


@dataclass
class NonfiniteTrace:
    """Where a forward pass first produced NaN/Inf."""

    module: str | None = None  # qualified name of the first module (completion order) whose output holds NaN/Inf
    module_type: str = ""
    share: float = 0.0  # share of that output's values that are non-finite
    rows: list = field(default_factory=list)  # batch indices whose output at that module holds NaN/Inf
    last_module: str | None = None  # the last module to complete its forward
    last_type: str = ""
    kind: str = ""  # module_kind of the first non-finite module
    fused: bool = False  # it has submodules and none of them ran: a fused fast path computed it


def trace_nonfinite(model: nn.Module, features: torch.Tensor, lengths: torch.Tensor) -> NonfiniteTrace:
    """Run one forward pass (no_grad) watching every submodule (watch_modules); return where
    NaN/Inf first appears in a module's output, in the order modules complete (a leaf before the
    module that holds it), and which module completed last (a value born after it is born in a
    functional op)."""
    trace = NonfiniteTrace()
    batch_size = int(features.shape[0])

    def watch(name, call, module, inputs, output):
        trace.last_module, trace.last_type = name, type(module).__name__
        if trace.module is not None:
            return
        raw = output if isinstance(output, (tuple, list, dict)) else (output,)
        for item in _flat(raw):
            if not (torch.is_tensor(item) and item.is_floating_point()):
                continue
            share = _nonfinite_share(item)
            if share > 0:
                dense = _dense(item)
                trace.module, trace.module_type, trace.share = name, type(module).__name__, share
                trace.rows = _nonfinite_rows(dense, batch_size) if dense is not None else []
                trace.kind = module_kind(module)
                trace.fused = any(True for _ in module.children()) and not any(n.startswith(name + ".") for n in completed)
                return

    completed = set()

    def record(name, call, module, inputs, output):
        try:
            watch(name, call, module, inputs, output)
        finally:
            completed.add(name)

    with watch_modules(model, record), torch.no_grad():
        model(features, lengths)
    return trace


def _flat(output, depth: int = 0) -> list:
    """Tensors of an output, nested tensors kept as they are (their padding is no value),
    a PackedSequence as its data."""
    if depth > MAX_DEPTH:
        return []
    if isinstance(output, PackedSequence):
        return [output.data]
    if torch.is_tensor(output):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _flat(item, depth + 1)]
    return []


def first_nonfinite_module(model: torch.nn.Module, features: torch.Tensor, lengths: torch.Tensor):
    """Run a forward pass watching every module; return (module name, class, share non-finite) of the first
    module, in execution order, whose output holds NaN/Inf; None if all outputs are finite."""
    trace = trace_nonfinite(model, features, lengths)
    return (trace.module, trace.module_type, trace.share) if trace.module is not None else None


def nonfinite_inputs(batch: Batch) -> list[str]:
    """Ids of the samples whose input features hold NaN/Inf."""
    bad = ~torch.isfinite(batch.features)
    return [batch.ids[i] for i in sorted(set(torch.nonzero(bad)[:, 0].tolist()))] if bad.any() else []


# ----------------------------------------------------------------------------- kinds of layer

_ATTENTION = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder,
              nn.TransformerDecoder, nn.Transformer)
_TIME_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm)
_FRAME_NORMS = (nn.LayerNorm,) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
          nn.modules.pooling._AdaptiveMaxPoolNd, nn.modules.pooling._LPPoolNd)
_PER_FRAME = (nn.Linear, nn.Bilinear, nn.Identity, nn.Dropout, nn.Flatten, nn.Unflatten, nn.Embedding)


def module_kind(module: nn.Module) -> str:
    """What a layer does over time: 'attention', 'rnn', 'time_norm' (statistics over frames:
    BatchNorm in training, GroupNorm, InstanceNorm), 'frame_norm' (LayerNorm, RMSNorm), 'pool',
    'conv', 'per_frame' (Linear, activations, dropout), or 'other' (a module of the user's
    own, judged by its name where it says attention / rnn / norm / pool / conv)."""
    if isinstance(module, _ATTENTION):
        return "attention"
    if isinstance(module, nn.RNNBase):
        return "rnn"
    if isinstance(module, _TIME_NORMS):
        return "time_norm"
    if isinstance(module, _FRAME_NORMS):
        return "frame_norm"
    if isinstance(module, _POOLS):
        return "pool"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, _PER_FRAME) or type(module).__module__ == "torch.nn.modules.activation":
        return "per_frame"
    name = type(module).__name__.lower()
    for words, kind in ((("attention", "attn", "transformer"), "attention"), (("lstm", "gru", "rnn"), "rnn"),
                        (("groupnorm", "batchnorm", "instancenorm"), "time_norm"), (("pool",), "pool"), (("conv", "tcn"), "conv")):
        if any(w in name for w in words):
            return kind
    return "other"


NONFINITE_HINTS = {
    "attention": ("a key padding mask row that masks every key makes a softmax over nothing = NaN: is the mask inverted? "
                  "(True must mean padded: src_key_padding_mask = arange(T)[None] >= lengths[:, None])"),
    "rnn": "the recurrent state overflows: bound the RNN's input (normalize it) and clip gradients",
    "time_norm": "a norm over time divides by a ~0 variance (a constant or all-padding input): raise its eps or normalize over valid frames",
    "frame_norm": "a per-frame norm divides by a ~0 variance (an input constant over its features): raise its eps",
    "pool": "a pool over a window with no valid value (all -inf after masking): mask with a finite value",
    "conv": "its weights or its input overflow: check the scale of its input and its initialisation",
    "per_frame": "its weights or its input overflow: check the scale of its input and its initialisation",
    "other": "a functional op in its forward: log of 0, division by 0, sqrt of a negative, softmax over an all -inf row",
}


# ----------------------------------------------------------------------------- comparing passes


def nan_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a - b| over the values finite in both; inf where one is finite and the other
    not (or they hold different non-finite values): a NaN is never 'equal' to a number."""
    a, b = a.detach().float(), b.detach().float()
    if a.shape != b.shape:
        return float("inf")
    fa, fb = torch.isfinite(a), torch.isfinite(b)
    if not torch.equal(fa, fb):
        return float("inf")
    if bool(fa.all()):  # the common case: no mask to index with
        return float((a - b).abs().max()) if a.numel() else 0.0
    na, nb = a[~fa], b[~fb]
    if not ((na == nb) | (torch.isnan(na) & torch.isnan(nb))).all():
        return float("inf")
    return float((a[fa] - b[fa]).abs().max()) if fa.any() else 0.0


def prefix_diff(a: torch.Tensor, b: torch.Tensor, n: int) -> float:
    """nan_diff of two [T, ...] tensors over their first n frames (inf when either is shorter)."""
    if a.shape[0] < n or b.shape[0] < n:
        return float("inf")
    return nan_diff(a[:n], b[:n])


def repad(feats: list, total: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples' [T_i, F] features zero-padded into one batch of `total` frames (default the
    longest): (features [B, T, F], lengths [B])."""
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long, device=feats[0].device)
    x = feats[0].new_zeros((len(feats), total or int(lengths.max()), feats[0].shape[-1]))
    for b, f in enumerate(feats):
        x[b, : f.shape[0]] = f
    return x, lengths


def finite_scale(t: torch.Tensor) -> float:
    """max(1, largest finite |value|): the scale a difference of a module's output is judged at."""
    t = t.detach().float()
    if t.numel() == 0:
        return 1.0
    ok = torch.isfinite(t)
    if bool(ok.all()):
        return max(1.0, float(t.abs().max()))
    return max(1.0, float(t[ok].abs().max())) if ok.any() else 1.0


@contextmanager
def watch_modules(model: nn.Module, callback):
    """Within the block, call callback(name, call, module, inputs, output) as each submodule's
    forward returns (completion order: a leaf before the module that holds it; `call` counts
    the module's earlier completions in the block). Each submodule's forward is wrapped on the
    instance, not observed with a forward hook: a registered hook switches fused fast paths off
    (nn.TransformerEncoderLayer in eval mode runs fused only without hooks), so the model would
    compute something else than it does unobserved. An exception in the callback is swallowed;
    a module whose forward cannot be wrapped (TorchScript) is not watched."""
    calls: dict[str, int] = {}
    wrapped = []

    def wrap(name, module, bound):
        @functools.wraps(bound)
        def forward(*args, **kwargs):
            output = bound(*args, **kwargs)
            call = calls.get(name, 0)
            calls[name] = call + 1
            try:
                callback(name, call, module, args + tuple(kwargs.values()), output)
            except Exception:  # noqa: BLE001 - a probe must never break the forward pass it watches
                pass
            return output

        return forward

    for name, module in model.named_modules():
        if not name:
            continue
        own = module.__dict__.get("forward", _NONE)  # a forward set on the instance itself: put back after
        try:
            module.forward = wrap(name, module, module.forward)
        except Exception:  # noqa: BLE001
            continue
        wrapped.append((module, own))
    try:
        yield
    finally:
        for module, own in wrapped:
            if own is _NONE:
                module.__dict__.pop("forward", None)
            else:
                module.__dict__["forward"] = own


_NONE = object()


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and the first line of its message (torch's
    dispatcher errors list every backend over a hundred lines)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit or len(lines) > 1 else ''}"


_LIBRARY_DIRS = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})


def code_frame(exc: BaseException, skip_dirs: tuple = ()):
    """The innermost traceback frame of an exception in code that is not a library's (torch,
    numpy, the standard library) nor under one of `skip_dirs`: where the harness's, the
    project's or the user's code last stood; None if there is none."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        name = frame.filename
        if name.startswith("<") or any(name.startswith(d) for d in _LIBRARY_DIRS) or "site-packages" in name:
            continue
        if skip_dirs and any(Path(name).resolve().is_relative_to(d) for d in skip_dirs):
            continue
        return frame
    return None


def fused_note(model: nn.Module, name: str) -> str:
    """What to say of a module whose submodules did not run (a fused fast path, as
    nn.TransformerEncoderLayer runs in eval mode without gradients): which attention it holds."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return " (a fused fast path computed it: its submodules did not run)"
    inner = next(((n, m) for n, m in module.named_modules() if n and module_kind(m) == "attention"), None)
    if inner is None:
        return " (a fused fast path computed it: its submodules did not run)"
    return f" (a fused fast path computed it, its attention '{name}.{inner[0]}' ({type(inner[1]).__name__}) included)"
