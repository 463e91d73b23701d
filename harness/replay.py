"""Replay of a batch saved on a non-finite step, the model rebuilt in the state of that step.

- train.py's nonfinite_batch.pt (harness.diagnostics.save_nonfinite_batch): `pytest --replay FILE`
  turns it into a failing check (check_replay) naming the module and the samples.
- harness.guard's nonfinite_step<N>.pt, saved in the user's own loop (the batch as the loop had
  it): `python -m harness replay FILE [--config CFG]` (replay_file) re-runs the model's forward
  pass on it, every module watched, and prints the verdict; it reads train.py's files too.

A saved step is a pickle: replay files you wrote yourself.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from data.dataset import Batch
from harness.checks.model import check_gradients
from harness.findings import Finding, status_from
from harness.probes import first_nonfinite_module, nonfinite_inputs
from harness.thresholds import DEFAULTS
from model.ctc import ctc_loss_per_sample


def check_replay(path) -> Finding:
    """Re-run a batch that train.py saved when it met a non-finite value (nonfinite_batch.pt):
    rebuild the model from the saved arguments and state, and name the module and samples."""
    from model.registry import model_from_checkpoint_args

    start = time.perf_counter()
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = model_from_checkpoint_args(payload["model_name"], payload["model_args"])
    model.load_state_dict(payload["model_state"])
    model.eval()
    batch = Batch(payload["features"], payload["lengths"], payload["targets"], payload["target_lengths"], list(payload["ids"]), [()] * len(payload["ids"]), payload["normalization"])
    fails, samples, values = [], [], {"step": payload["step"], "epoch": payload["epoch"]}
    bad_in = nonfinite_inputs(batch)
    if bad_in:
        fails.append(f"input features are non-finite for samples {bad_in}")
        samples += bad_in
    first = first_nonfinite_module(model, batch.features, batch.lengths)
    if first:
        fails.append(f"first non-finite output at module '{first[0]}' ({first[1]}, {first[2]:.1%} of values)")
        values["first_nonfinite_module"] = first[0]
    with torch.no_grad():
        log_probs, out_lengths = model(batch.features, batch.lengths)
        losses = ctc_loss_per_sample(log_probs, out_lengths, batch.targets, batch.target_lengths)
    bad_loss = [batch.ids[i] for i in torch.nonzero(~torch.isfinite(losses)).flatten().tolist()]
    if bad_loss:
        infeasible = [batch.ids[i] for i in range(len(batch)) if int(out_lengths[i]) < int(batch.target_lengths[i])]
        why = f" (CTC-infeasible: output shorter than target for {infeasible})" if infeasible else ""
        fails.append(f"CTC loss non-finite for samples {bad_loss}{why}")
        samples += bad_loss
    if not fails:
        # forward and loss are finite in eval mode: the failure lives in the backward pass or in
        # training-mode layers (dropout); check the gradients the same way training computes them
        grad = check_gradients(model, batch, DEFAULTS)
        if not grad.ok:
            fails.append(f"backward pass: {grad.summary}")
    return Finding(
        check="replay",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or "the saved batch replays finite: the failure did not reproduce (optimizer state or AMP?)",
        hint="fix the named samples (clean-features / CTC feasibility checks) or the named module" if fails else "",
        values=values,
        samples=list(dict.fromkeys(samples or payload["ids"])),
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------- python -m harness replay


class ReplayError(ValueError):
    """A saved step that cannot be replayed (file, model or configuration): one line saying why."""


def _load(path: Path) -> dict:
    """The saved payload: tensors and containers only when it holds nothing else; a batch of a
    class of the user's own needs the full unpickler (replay files you wrote yourself)."""
    import pickle

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ReplayError(f"{path}: cannot read it as a saved step ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(payload, dict):
        raise ReplayError(f"{path}: not a saved step (holds a {type(payload).__name__}; expected what harness.guard or train.py saves)")
    return payload


def _config_of(payload: dict, config):
    from model.config import TrainConfig, config_fields, load_config

    if config is not None:
        try:
            return load_config(config), f"--config {config}"
        except (OSError, ValueError, TypeError) as exc:
            raise ReplayError(f"--config {config}: {exc}") from None
    saved = payload.get("config")
    if isinstance(saved, dict):
        known = config_fields()
        return TrainConfig(**{k: v for k, v in saved.items() if k in known}), "the configuration saved with the batch"
    return None, ""


def rebuild_model(payload: dict, config=None) -> tuple[torch.nn.Module, str]:
    """The model of a saved step, in the state of that step: the configuration's model (--config,
    else the one the guard was given) with the saved state_dict, else the pickled model. Returns
    the model and where it came from."""
    import io

    from harness.probes import one_line

    state = payload["state_dict"]
    cfg, where = _config_of(payload, config)
    problem = ""
    if cfg is not None:
        from model.training import build_model

        vocab, dim = payload.get("vocab_size"), payload.get("input_dim")
        try:
            if vocab is None:
                raise ReplayError("the step recorded no vocabulary size (the model's output is not [B, T', V])")
            model = build_model(cfg, vocab, dim)
            model.load_state_dict(state)
            return model, f"the model of {where} ({cfg.model}, vocab_size={vocab}, input_dim={dim}) with the saved state_dict"
        except Exception as exc:  # noqa: BLE001 - the user's factory: reported as one line
            problem = f"the model of {where} ({cfg.model}) cannot take the saved state: {one_line(exc)}"
    pickled = payload.get("model_pickle")
    if pickled:
        model = torch.load(io.BytesIO(pickled), map_location="cpu", weights_only=False)
        model.load_state_dict(state)
        return model, f"the pickled {payload.get('model_class', 'model')} saved with the batch" + (f" ({problem})" if problem else "")
    if problem:
        raise ReplayError(problem)
    why = payload.get("model_pickle_note") or "no model was pickled"
    raise ReplayError(f"the file holds no configuration and no pickled model ({why}): pass --config CFG whose `model` builds this model")


def replay_file(path, config=None) -> int:
    """`python -m harness replay FILE [--config CFG]`: re-run a saved non-finite step, print the
    verdict; exit 1 when the non-finite value reproduces, 0 when not, 2 when it cannot be replayed."""
    from harness.guard import FORMAT, batch_ids, batch_size, default_forward, describe_module, nonfinite_samples, replay_call

    path = Path(path)
    try:
        if not path.is_file():
            raise ReplayError(f"{path}: no such file (the guard prints the path it saved)")
        payload = _load(path)
        if "model_name" in payload and "format" not in payload:  # train.py's nonfinite_batch.pt
            finding = check_replay(path)
            print(finding.message())
            return 0 if finding.ok else 1
        if payload.get("format") != FORMAT:
            raise ReplayError(f"{path}: not a step saved by harness.guard (format {payload.get('format')!r}, expected {FORMAT!r})")
        model, source = rebuild_model(payload, config)
    except ReplayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model.train(bool(payload.get("training", False)))
    batch = payload["batch"]
    inputs = payload.get("model_inputs") or {}
    args, kwargs = list(inputs.get("args") or ()), dict(inputs.get("kwargs") or {})
    call = (lambda: model(*args, **kwargs)) if args or kwargs else (lambda: default_forward(model, batch))
    size = batch_size(batch)
    ids = batch_ids(batch, size)
    where, rows = nonfinite_samples(batch)
    replay = replay_call(model, call, size)
    if not rows and replay.trace is not None:
        rows = list(replay.trace.rows)
    samples = [ids[r] if ids is not None and r < len(ids) else f"row {r}" for r in sorted(rows)]
    recorded = payload.get("failure") or {}
    lines = [f"replay of {path} (step {payload.get('step')}): {source}"]
    lines.append(f"  input: already non-finite in {', '.join(where)}" if where else "  input: the batch is finite")
    if replay.error:
        lines.append(f"  the forward pass raised {replay.error}")
    if replay.module is not None:
        lines.append(f"  first non-finite module: {describe_module(replay, model)}")
    if replay.model_inputs_nonfinite() and not where:
        lines.append("  the model's input is non-finite although the batch is not: the forward's own preprocessing made it")
    if samples:
        lines.append(f"  samples: {', '.join(samples[:10])}{' ...' if len(samples) > 10 else ''} ({len(samples)})")
    reproduced = bool(where) or replay.module is not None or replay.output_nonfinite() or replay.model_inputs_nonfinite()
    if reproduced:
        lines.append("  verdict: reproduced: the forward pass on the saved batch is non-finite")
    else:
        at_step = []
        if recorded.get("grad_params"):
            at_step.append(f"non-finite gradients in {len(recorded['grad_params'])} parameter(s), first {recorded['grad_params'][0]}")
        if recorded.get("loss_finite") is False:
            at_step.append(f"loss {recorded.get('loss')}")
        lines.append("  verdict: not reproduced: the forward pass is finite on the saved batch"
                     + (f"; at the step: {'; '.join(at_step)} (the loss or the backward pass made it non-finite)" if at_step else ""))
    print("\n".join(lines))
    return 1 if reproduced else 0
