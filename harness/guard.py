"""A guard for the user's own training loop: a healthy step costs one finiteness test of the
loss and of the gradient norm (no hooks); the first non-finite step is diagnosed, saved and
turned into a command that replays it.

    from harness import guard

    g = guard(model, config="cfg.toml")             # config: optional, lets the replay rebuild the model
    for batch in loader:
        optimizer.zero_grad()
        loss = criterion(model(batch["features"], batch["lengths"]), batch)
        loss.backward()
        if g.step(batch, loss):                      # after backward, before the optimizer step
            optimizer.step()

or, the block as one step (the gradients are checked just before the optimizer applies them):

    with g.watch(batch):
        loss = ...
        loss.backward()
        optimizer.step()

On a non-finite loss or gradient the guard says whether the batch was already non-finite (which
samples, by the batch's own ids), replays the batch through the model (still in the state of the
failing step) watching every module (harness/probes.py) to name the first whose output is
non-finite, saves the batch as given, the model's state_dict and module names to
OUT_DIR/nonfinite_step<N>.pt (atomically), prints what it found and the command that replays it
(`python -m harness replay FILE [--config CFG]`), then raises NonFiniteStep, or with
on_nonfinite="skip" clears the gradients and returns a falsy NonFinite so the loop skips the step.

Importing this module makes it callable: `harness.guard(model, ...)` is `Guard(model, ...)`.
"""
from __future__ import annotations

import dataclasses
import io
import math
import shlex
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from harness.probes import NONFINITE_HINTS, NonfiniteTrace, one_line, trace_nonfinite

ID_KEYS = ("id", "ids", "video_id", "video_ids", "sample_id", "sample_ids")
FORMAT = "harness-guard/1"  # the saved file's "format" entry
MAX_NAMES = 5  # names shown in a message (parameters, samples)


class NonFiniteStep(RuntimeError):
    """A training step's loss or gradients were not finite; `.failure` holds what the guard found
    and `.command` the command that replays the saved batch."""

    def __init__(self, failure: "NonFinite"):
        super().__init__(failure.message)
        self.failure = failure

    def __reduce__(self):
        return type(self), (self.failure,)

    @property
    def command(self) -> str:
        return self.failure.command


@dataclass
class NonFinite:
    """What the guard found at a non-finite step. Falsy, so `if g.step(batch, loss):` skips it."""

    step: int
    loss: float | None  # the loss value (None: not given, or not a number)
    loss_finite: bool
    grad_params: list  # names of the parameters whose gradient holds NaN/Inf
    input_nonfinite: bool  # the batch itself held NaN/Inf
    inputs: list  # where in the batch: "batch['features']", ...
    samples: list  # the samples concerned, by the batch's ids (or "row i")
    module: str | None = None  # first module whose output was non-finite in the replay
    module_type: str = ""
    share: float = 0.0  # share of that output's values that are non-finite
    model_input_nonfinite: bool = False  # what reached the model was non-finite
    output_nonfinite: bool = False
    note: str = ""  # why the replay could not run, or what it means
    hint: str = ""
    path: str = ""  # the saved file
    command: str = ""  # the command that replays it
    message: str = ""

    def __bool__(self) -> bool:
        return False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- the batch


def default_forward(model: nn.Module, batch, features_key: str = "features"):
    """How the guard calls the model on a batch when no `forward` is given: a mapping with
    `features_key` (the configuration's item_keys.features, else "features") and "lengths" keys,
    a (features, lengths, ...) tuple or list, an object with .features and .lengths, or one tensor."""
    if isinstance(batch, Mapping) and features_key in batch:
        return model(batch[features_key], batch["lengths"]) if "lengths" in batch else model(batch[features_key])
    if isinstance(batch, (tuple, list)) and batch and torch.is_tensor(batch[0]):
        return model(batch[0], batch[1]) if len(batch) >= 2 and torch.is_tensor(batch[1]) else model(batch[0])
    if hasattr(batch, "features") and hasattr(batch, "lengths"):
        return model(batch.features, batch.lengths)
    if torch.is_tensor(batch):
        return model(batch)
    raise TypeError(f"guard: cannot call the model on a batch of type {type(batch).__name__} by default; "
                    "pass guard(model, forward=lambda model, batch: model(...))")


def tensors_in(batch, where: str = "batch", depth: int = 0) -> list[tuple[str, torch.Tensor]]:
    """(where, tensor) of every tensor of a batch: mappings, sequences and dataclass-like objects
    searched three levels down."""
    if torch.is_tensor(batch):
        return [(where, batch)]
    if depth > 3:
        return []
    if isinstance(batch, Mapping):
        return [t for k, v in batch.items() for t in tensors_in(v, f"{where}[{k!r}]", depth + 1)]
    if isinstance(batch, (tuple, list)):
        return [t for i, v in enumerate(batch) for t in tensors_in(v, f"{where}[{i}]", depth + 1)]
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return [t for f in dataclasses.fields(batch) for t in tensors_in(getattr(batch, f.name), f"{where}.{f.name}", depth + 1)]
    return []


def batch_size(batch) -> int:
    sizes = [t.shape[0] for _, t in tensors_in(batch) if t.dim() >= 1]
    return int(sizes[0]) if sizes else 1


def batch_ids(batch, size: int | None = None) -> list[str] | None:
    """The samples' own ids: an "id"/"ids"/"video_id"/... entry of a mapping (or attribute), or in a
    tuple/list the one element that is a sequence of str of the batch's size."""
    size = batch_size(batch) if size is None else size
    found = None
    if isinstance(batch, Mapping):
        found = next((batch[k] for k in ID_KEYS if k in batch), None)
    elif isinstance(batch, (tuple, list)):
        found = next((v for v in batch if isinstance(v, (tuple, list)) and len(v) == size and v and all(isinstance(s, str) for s in v)), None)
    else:
        found = next((getattr(batch, k) for k in ID_KEYS if hasattr(batch, k)), None)
    if found is None:
        return None
    if torch.is_tensor(found):
        found = found.reshape(-1).tolist()
    if isinstance(found, (str, int)):
        found = [found]
    ids = [str(x) for x in found]
    return ids if len(ids) == size else None


def nonfinite_rows(t: torch.Tensor) -> list[int]:
    """Rows (first axis: the batch) of a floating tensor holding NaN/Inf."""
    if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
        return []
    bad = ~torch.isfinite(t.detach())
    if t.dim() == 0:
        return [0] if bool(bad) else []
    return torch.nonzero(bad.reshape(t.shape[0], -1).any(dim=1)).flatten().tolist()


def nonfinite_samples(batch) -> tuple[list[str], list[int]]:
    """(the names of the batch's tensors that hold NaN/Inf, the rows (samples) that do, in order)."""
    where, rows = [], []
    for name, t in tensors_in(batch):
        r = nonfinite_rows(t)
        if r:
            where.append(name)
            rows += [i for i in r if i not in rows]
    return where, rows


def _name_rows(rows, ids) -> list[str]:
    return [ids[r] if ids is not None and r < len(ids) else f"row {r}" for r in rows]


def _detached(batch, depth: int = 0):
    """The batch as given, its tensors detached on the CPU (the structure kept: what is saved)."""
    if torch.is_tensor(batch):
        return batch.detach().cpu()
    if depth > 3:
        return batch
    if isinstance(batch, Mapping):
        return {k: _detached(v, depth + 1) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(_detached(v, depth + 1) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(_detached(v, depth + 1) for v in batch)
    return batch


# ----------------------------------------------------------------------------- replaying a call


class _Call(nn.Module):
    """An adapter that lets probes.trace_nonfinite watch any call of the model: its one child
    is the model (named "model"), its forward makes the call and keeps the output."""

    def __init__(self, model: nn.Module, call):
        super().__init__()
        self.model = model
        self._call = call
        self.output = None

    def forward(self, *_):
        self.output = self._call()
        return self.output


@dataclass
class Replay:
    """One watched forward pass: where NaN/Inf first appeared, what the model received and returned."""

    trace: NonfiniteTrace | None
    output: object = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    error: str = ""  # the call raised

    @property
    def module(self) -> str | None:
        """The first non-finite module's name in the user's model ("" for the model's own forward)."""
        if self.trace is None or self.trace.module is None:
            return None
        name = self.trace.module
        return "" if name == "model" else name.removeprefix("model.")

    def model_inputs_nonfinite(self) -> bool:
        return any(nonfinite_rows(t) for _, t in tensors_in((self.args, self.kwargs)))

    def output_nonfinite(self) -> bool:
        return any(nonfinite_rows(t) for _, t in tensors_in(self.output))

    def vocab_size(self) -> int | None:
        """V of a CTC model's (log_probs [B, T', V], lengths) output."""
        out = self.output[0] if isinstance(self.output, (tuple, list)) and self.output else self.output
        return int(out.shape[-1]) if torch.is_tensor(out) and out.dim() == 3 else None

    def input_dim(self) -> int | None:
        first = self.args[0] if self.args else None
        return int(first.shape[-1]) if torch.is_tensor(first) and first.dim() == 3 else None


def replay_call(model: nn.Module, call, size: int) -> Replay:
    """Run `call()` (which calls `model`) once without gradients, every module of the model
    watched (harness/probes.py); the model's first call's arguments are kept. The model's
    buffers (BatchNorm statistics) and the random number generators are left as they were."""
    captured = {}

    def keep_inputs(module, args, kwargs):
        captured.setdefault("inputs", (args, kwargs))

    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    handle = model.register_forward_pre_hook(keep_inputs, with_kwargs=True)
    adapter = _Call(model, call)
    try:
        with torch.random.fork_rng(devices=devices):
            trace = trace_nonfinite(adapter, torch.empty(size, 0), None)
        error = ""
    except Exception as exc:  # noqa: BLE001 - the user's forward: reported, not raised over the failure being diagnosed
        trace, error = None, one_line(exc)
    finally:
        handle.remove()
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in buffers and b.shape == buffers[name].shape:
                    b.copy_(buffers[name])
    args, kwargs = captured.get("inputs", ((), {}))
    return Replay(trace, adapter.output, tuple(args), dict(kwargs), error)


def describe_module(replay: Replay, model: nn.Module) -> str:
    """'gru' (GRU, rnn, 50.0% of its output non-finite), or the model's own forward."""
    t = replay.trace
    if replay.module == "":
        last = t.last_module.removeprefix("model.") if t.last_module and t.last_module != "model" else None
        after = f" after its last submodule '{last}'" if last else ""
        return f"the model's own forward ({type(model).__name__}): a functional op{after}, {t.share:.1%} of its output non-finite"
    return f"'{replay.module}' ({t.module_type}, {t.share:.1%} of its output non-finite)"


# ----------------------------------------------------------------------------- the guard


class Guard:
    """Watches the user's training loop for non-finite losses and gradients (see the module's
    docstring). Build it with harness.guard(model, ...)."""

    def __init__(self, model: nn.Module, config=None, out_dir="harness_guard", forward=None, on_nonfinite: str = "raise",
                 max_saves: int = 3, quiet: bool = False):
        if not isinstance(model, nn.Module):
            raise TypeError(f"guard(model=...): got {type(model).__name__}; expected the torch.nn.Module being trained")
        if on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"guard(on_nonfinite={on_nonfinite!r}): expected 'raise' (stop with NonFiniteStep) or 'skip' (step() returns False)")
        if forward is not None and not callable(forward):
            raise TypeError(f"guard(forward=...): got {type(forward).__name__}; expected fn(model, batch) -> the model's output")
        if max_saves < 1:
            raise ValueError(f"guard(max_saves={max_saves}): must be >= 1 (files saved for the first non-finite steps)")
        self.model = model
        self.on_nonfinite = on_nonfinite
        self.out_dir = Path(out_dir)
        self.max_saves = max_saves
        self.quiet = quiet
        self.config_path, self.config = _load_config(config)
        key = (getattr(self.config, "item_keys", None) or {}).get("features", "features")
        self.forward = forward or (lambda model, batch: default_forward(model, batch, key))
        self._named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self._params = [p for _, p in self._named]
        self._foreach = True
        self.steps = 0  # steps checked
        self.skipped = 0  # non-finite steps skipped (on_nonfinite="skip")
        self.failures: list[NonFinite] = []

    # ------------------------------------------------------------------ the healthy path

    def healthy(self, loss=None) -> bool:
        """Whether the loss (if given) and every gradient are finite: one fused norm of the
        gradients, one device-to-host read. A norm that overflows is checked element-wise before
        a step is called non-finite."""
        grads = [p.grad for p in self._params if p.grad is not None]
        probe = None
        if torch.is_tensor(loss):
            probe = loss.detach().sum()
        elif loss is not None and not math.isfinite(float(loss)):
            return False
        if grads:
            if self._foreach:
                try:
                    norm = torch.stack(torch._foreach_norm(grads)).sum()
                    probe = norm if probe is None else probe + norm.to(probe.device)
                except (RuntimeError, TypeError, NotImplementedError):
                    self._foreach = False  # sparse gradients, several devices or dtypes: element-wise from now on
            if not self._foreach and not all(bool(torch.isfinite(g).all()) for g in grads):
                return False
        return probe is None or bool(torch.isfinite(probe))

    def step(self, batch, loss):
        """Check a step after loss.backward() and before optimizer.step(): True when the loss and
        the gradients are finite; otherwise diagnose, save and print, then raise NonFiniteStep
        (on_nonfinite="raise") or clear the gradients and return a falsy NonFinite ("skip")."""
        self.steps += 1
        if self.healthy(loss):
            return True
        return self._nonfinite(batch, loss)

    def watch(self, batch) -> "_Watch":
        """The block as one step: `with g.watch(batch): ...; loss.backward(); optimizer.step()`.
        The gradients are checked just before any torch optimizer steps inside the block (or at
        its end when none does); call `.check(loss)` on the block's value to check the loss too.
        With on_nonfinite="skip" the rest of the block is abandoned and `.ok` is False."""
        return _Watch(self, batch)

    # ------------------------------------------------------------------ the failing step

    def _nonfinite(self, batch, loss):
        bad_grads = [n for n, p in self._named if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        loss_finite = _finite(loss)
        if loss_finite and not bad_grads:
            return True  # the norm overflowed; every value is finite
        n = len(self.failures)
        failure = self._diagnose(batch, loss, loss_finite, bad_grads, save=n < self.max_saves)
        self.failures.append(failure)
        if not self.quiet:
            print(failure.message if n < self.max_saves else failure.message.splitlines()[0] + " (not saved: max_saves reached)",
                  file=sys.stderr, flush=True)
        if self.on_nonfinite == "raise":
            raise NonFiniteStep(failure)
        self.model.zero_grad(set_to_none=True)
        self.skipped += 1
        return failure

    def _diagnose(self, batch, loss, loss_finite: bool, bad_grads: list, save: bool) -> NonFinite:
        size = batch_size(batch)
        ids = batch_ids(batch, size)
        where, rows = nonfinite_samples(batch)
        replay = replay_call(self.model, lambda: self.forward(self.model, batch), size)  # parameters and buffers left as they were
        if not rows and replay.trace is not None and replay.trace.rows:
            rows = list(replay.trace.rows)
        if not rows and torch.is_tensor(loss) and loss.dim() >= 1 and loss.shape[0] == size:
            rows = nonfinite_rows(loss)  # a per-sample loss
        failure = NonFinite(
            step=self.steps, loss=_number(loss), loss_finite=loss_finite, grad_params=bad_grads,
            input_nonfinite=bool(where), inputs=where, samples=_name_rows(sorted(rows), ids),
            model_input_nonfinite=replay.model_inputs_nonfinite(), output_nonfinite=replay.output_nonfinite(),
        )
        if replay.trace is not None and replay.module is not None:
            failure.module, failure.module_type, failure.share = replay.module, replay.trace.module_type, replay.trace.share
            failure.hint = NONFINITE_HINTS.get(replay.trace.kind, "")
        failure.note = _replay_note(replay, failure)
        if failure.input_nonfinite:
            failure.hint = "the batch is non-finite before the model sees it: fix the data or its preprocessing for the samples named"
        if save:
            self._save(failure, batch, replay)
        failure.message = _message(failure, self.model, replay)
        return failure

    def _save(self, failure: NonFinite, batch, replay: Replay) -> None:
        """Save the step (atomically) and set failure.path and .command; a write that fails is
        said in failure.note, not raised over the failure being reported."""
        from data.corpus import atomic_write

        pickled, pickle_note = _model_bytes(self.model)
        path = self.out_dir / f"nonfinite_step{self.steps}.pt"
        command = "python -m harness replay " + shlex.quote(str(path)) + (f" --config {shlex.quote(self.config_path)}" if self.config_path else "")
        if pickled is None and self.config is None:
            command += "  # add --config with the model factory: " + pickle_note
        failure.path, failure.command = str(path), command
        failure.message = _message(failure, self.model, replay)
        payload = {
            "format": FORMAT, "step": self.steps, "failure": failure.to_json(),
            "batch": _detached(batch), "model_inputs": {"args": _detached(list(replay.args)), "kwargs": _detached(replay.kwargs)},
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "module_names": [n for n, _ in self.model.named_modules() if n],
            "model_class": f"{type(self.model).__module__}.{type(self.model).__qualname__}", "training": self.model.training,
            "vocab_size": replay.vocab_size(), "input_dim": replay.input_dim(),
            "model_pickle": pickled, "model_pickle_note": pickle_note,
            "config_path": self.config_path, "config": self.config.to_dict() if self.config is not None else None,
        }
        try:
            atomic_write(path, lambda f: torch.save(payload, f))
        except OSError as exc:
            failure.path = failure.command = ""
            failure.note = "; ".join(x for x in (failure.note, f"the step could not be saved to {path}: {exc}") if x)


class _Watch:
    """`with g.watch(batch):` (see Guard.watch)."""

    def __init__(self, guard: Guard, batch):
        self.guard, self.batch = guard, batch
        self.ok = True
        self.failure: NonFinite | None = None
        self._checked = False
        self._handle = None

    def __enter__(self) -> "_Watch":
        self.guard.steps += 1
        self._handle = register_optimizer_step_pre_hook(self._before_optimizer_step)
        return self

    def _before_optimizer_step(self, optimizer, args, kwargs):
        if not self._checked:
            self._check(None, in_block=True)

    def check(self, loss) -> bool:
        """Check the loss and the gradients now (after backward); True when finite."""
        return self._check(loss, in_block=True)

    def _check(self, loss, in_block: bool) -> bool:
        self._checked = True
        if self.guard.healthy(loss):
            return True
        result = self.guard._nonfinite(self.batch, loss)  # raises NonFiniteStep with on_nonfinite="raise"
        if result is True:
            return True
        self.ok, self.failure = False, result
        if in_block:
            raise _SkipStep()
        return False

    def __exit__(self, exc_type, exc, tb):
        self._handle.remove()
        if exc_type is _SkipStep:
            return True  # the rest of the block (the optimizer step) is skipped
        if exc_type is None and not self._checked:
            self._check(None, in_block=False)  # no optimizer stepped in the block: its gradients all the same
        return False


class _SkipStep(Exception):
    """Leaves a watched block whose step is skipped (caught by its __exit__)."""


def guard(model: nn.Module, config=None, out_dir="harness_guard", forward=None, on_nonfinite: str = "raise",
          max_saves: int = 3, quiet: bool = False) -> Guard:
    """A Guard on `model` (see Guard and the module's docstring).

    config: the path of the TOML/JSON configuration whose `model` builds this model (or a
        TrainConfig): the printed replay command rebuilds the model from it; without it the
        replay unpickles the model saved with the batch (its class must be importable).
    out_dir: where non-finite steps are saved. forward: fn(model, batch) -> output, how the loop
    calls the model (default: default_forward). on_nonfinite: "raise" or "skip". max_saves: files
    saved at most (later non-finite steps are only printed). quiet: print nothing.
    """
    return Guard(model, config=config, out_dir=out_dir, forward=forward, on_nonfinite=on_nonfinite, max_saves=max_saves, quiet=quiet)


# ----------------------------------------------------------------------------- helpers


def _load_config(config):
    """(path as given or None, TrainConfig or None)."""
    if config is None:
        return None, None
    from model.config import TrainConfig, load_config

    if isinstance(config, TrainConfig):
        return None, config
    if isinstance(config, (str, Path)):
        try:
            return str(config), load_config(config)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"guard(config={str(config)!r}): {exc}") from None
    raise TypeError(f"guard(config=...): got {type(config).__name__}; expected the path of a TOML/JSON configuration or a TrainConfig")


def _finite(loss) -> bool:
    if loss is None:
        return True
    if torch.is_tensor(loss):
        return bool(torch.isfinite(loss.detach()).all())
    try:
        return math.isfinite(float(loss))
    except (TypeError, ValueError):
        return True


def _number(loss) -> float | None:
    try:
        if torch.is_tensor(loss):
            return float(loss.detach().float().sum()) if loss.numel() else None
        return float(loss)
    except (TypeError, ValueError, RuntimeError):
        return None


def _model_bytes(model: nn.Module) -> tuple[bytes | None, str]:
    """The model pickled (torch.save), so that a replay without a configuration can rebuild it;
    None and the reason when another process could not load it."""
    cls = type(model)
    if cls.__module__ == "__main__":
        return None, f"its class {cls.__qualname__} is defined in __main__ (a script or notebook), which another process cannot import"
    buffer = io.BytesIO()
    try:
        torch.save(model, buffer)
    except Exception as exc:  # noqa: BLE001 - a model that cannot be pickled: the state_dict is saved all the same
        return None, f"the model could not be pickled ({one_line(exc)})"
    return buffer.getvalue(), ""


def _replay_note(replay: Replay, failure: NonFinite) -> str:
    if replay.error:
        return f"the replay of the forward pass raised {replay.error}"
    if replay.trace is None:
        return ""
    if failure.module is None and not failure.output_nonfinite:
        if failure.grad_params and failure.loss_finite:
            return "the forward pass is finite on this batch: the backward pass made the gradients non-finite"
        return "the forward pass is finite on this batch: the loss (or what the loop computes after the model) made it non-finite"
    if failure.model_input_nonfinite and not failure.input_nonfinite:
        return "the batch is finite but the model's input is not: the forward's own preprocessing made it non-finite"
    return ""


def _shown(names: list, n: int = MAX_NAMES) -> str:
    return ", ".join(map(str, names[:n])) + (f" ... ({len(names)})" if len(names) > n else "")


def _message(f: NonFinite, model: nn.Module, replay: Replay) -> str:
    what = " and ".join(w for w, bad in (("loss", not f.loss_finite), ("gradients", bool(f.grad_params))) if bad)
    lines = [f"harness guard: non-finite {what} at step {f.step}"
             + (f" (loss = {f.loss:g})" if f.loss is not None else "")
             + (f"; non-finite gradients in {len(f.grad_params)} parameter(s): {_shown(f.grad_params)}" if f.grad_params else "")]
    if f.input_nonfinite:
        lines.append(f"  input: already non-finite in {', '.join(f.inputs)}: samples {_shown(f.samples)}")
    else:
        lines.append("  input: the batch is finite")
    if f.module is not None:
        enters = " (where the non-finite input enters the model)" if f.input_nonfinite or f.model_input_nonfinite else ""
        lines.append(f"  first non-finite module: {describe_module(replay, model)}{enters}")
    if f.note:
        lines.append(f"  {f.note}")
    if f.samples and not f.input_nonfinite:
        lines.append(f"  samples: {_shown(f.samples)}")
    if f.hint:
        lines.append(f"  hint: {f.hint}")
    if f.path:
        lines.append(f"  saved: {f.path} (the batch as given, the model's state_dict and module names)")
        lines.append(f"  replay: {f.command}")
    return "\n".join(lines)


class _CallableModule(types.ModuleType):
    """`harness.guard` is this module: calling it builds a Guard (`from harness import guard;
    g = guard(model)`), and `harness.guard.Guard` etc. stay reachable however it was imported."""

    def __call__(self, model, *args, **kwargs) -> Guard:
        return guard(model, *args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
