"""Checks of the model on real batches: forward, loss at init, gradients, batch sizes,
modalities, smoke run and overfit. Pure functions: (model or factory, batches, thresholds) in,
a Finding out. They call the same model/ and model.training functions training calls.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict

import numpy as np
import torch

from data.dataset import Batch, collate
from data.layout import modality_widths
from harness.findings import SKIP, Finding, status_from, table
from harness.plots import bar_png
from harness.probes import NONFINITE_HINTS, fused_note, module_kind, nonfinite_inputs, one_line, prefix_diff, repad, trace_nonfinite
from model.ctc import ctc_loss_per_sample, uniform_ctc_loss
from model.masking import pad_mask


# ----------------------------------------------------------------------------- 4. forward pass


def check_forward(model, batch: Batch, thresholds: dict, label: str = "") -> Finding:
    """Every module's output finite (watched modules name the first that is not, and the samples
    whose output is not), log-probs normalised, output lengths equal to model.output_lengths()."""
    start = time.perf_counter()
    model.eval()
    fails, values = [], {}
    with torch.no_grad():
        log_probs, out_lengths = model(batch.features, batch.lengths)
    expected = model.output_lengths(batch.lengths.cpu()).to(out_lengths.device)
    if not torch.equal(out_lengths, expected):
        same_as_input = torch.equal(out_lengths.cpu(), batch.lengths.cpu()) and not torch.equal(expected.cpu(), batch.lengths.cpu())
        why = ": the model returns its input lengths, not divided by the temporal stride" if same_as_input else ""
        fails.append(f"output lengths {out_lengths.tolist()} differ from model.output_lengths() {expected.tolist()}{why}")
    if log_probs.shape[1] != int(out_lengths.max()):
        fails.append(f"log-probs have {log_probs.shape[1]} frames, the longest output length is {int(out_lengths.max())}")
    samples, modality, hint = [], "", ""
    valid = pad_mask(out_lengths.clamp(max=log_probs.shape[1]), log_probs.shape[1])
    finite = torch.isfinite(log_probs) | ~valid[..., None]
    bad_out = [i for i in range(len(batch)) if not bool(finite[i].all())]
    trace = trace_nonfinite(model, batch.features, batch.lengths)
    if trace.module is not None or bad_out:
        bad_in = nonfinite_inputs(batch)
        if bad_in:
            cause = "the input already holds NaN/Inf"
            samples = bad_in
            hint = "the model input is not finite: fix it first (the model_input and normalization checks name where it is born)"
        else:
            parts = []
            if bad_out:
                parts.append(f"the output of {len(bad_out)} of {len(batch)} sample(s) holds NaN/Inf: {_which(batch, bad_out)}")
                samples = [batch.ids[i] for i in bad_out]
            else:
                rows = trace.rows or list(range(len(batch)))
                samples = [batch.ids[i] for i in rows]
                parts.append(f"the output's valid frames are finite, but a module's output is not for sample(s) {samples}")
            if trace.module is not None:
                fused = fused_note(model, trace.module) if trace.fused else ""
                parts.append(f"first non-finite output at module '{trace.module}' ({trace.module_type}){fused}, {trace.share:.1%} of its values")
                values.update(first_nonfinite_module=trace.module, first_nonfinite_type=trace.module_type)
                hint = f"{trace.module} ({trace.module_type}): {NONFINITE_HINTS.get(trace.kind, NONFINITE_HINTS['other'])}"
            else:
                last = f" ('{trace.last_module}', {trace.last_type})" if trace.last_module else ""
                parts.append(f"no module's output is non-finite: it is born in a functional op of forward after the last module{last}")
                values["nonfinite_in_functional_op"] = True
                hint = f"look at forward after the last module: {NONFINITE_HINTS['other']}"
            cause = "; ".join(parts)
        fails.append(f"forward pass not finite: {cause}")
        values["nonfinite_samples"] = samples
        name = trace.module or ""
        modality = name.split(".")[2] if name.startswith("fusion.proj.") else ""
    # normalisation is judged on the finite valid frames: a NaN is not "raw logits"
    lse = torch.logsumexp(log_probs.float(), dim=-1)[valid]
    lse = lse[torch.isfinite(lse)]
    norm_err = float(lse.abs().max()) if lse.numel() else float("nan")
    values["logsumexp_max_abs"] = norm_err
    if lse.numel() and norm_err > thresholds["logprob_norm_tol"]:
        # a log_softmax over the wrong axis still normalises, just over time instead of the vocabulary
        over_time = float(torch.logsumexp(log_probs.float(), dim=1).abs().max()) < thresholds["logprob_norm_tol"]
        why = "log_softmax taken over the time axis, not the vocabulary" if over_time else "raw logits given to CTC?"
        fails.append(f"the output is not log-probabilities: logsumexp over the vocabulary is {norm_err:.3g}, not 0 ({why})")
    values["key"] = f"|logsumexp| {norm_err:.1e}" + (f", {len(samples)} non-finite" if samples else "")
    if fails and not hint:
        hint = "apply log_softmax at the head; make output_lengths follow every strided layer"
    return Finding(
        check=f"forward{label}",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or f"{len(batch)} samples: all module outputs finite, log-probs normalised, output lengths exact",
        hint=hint,
        values=values,
        samples=samples,
        modality=modality,
        seconds=time.perf_counter() - start,
    )


def _which(batch: Batch, rows: list) -> str:
    """Sample ids with their lengths, saying which is the longest of the batch (no padded frames)."""
    longest = int(batch.lengths.max())
    parts = []
    for i in rows:
        n = int(batch.lengths[i])
        note = ", the longest of the batch: no padded frames" if n == longest and len(batch) > 1 else ""
        parts.append(f"{batch.ids[i]} ({n} frames{note})")
    text = ", ".join(parts[:10]) + (" ..." if len(parts) > 10 else "")
    if len(batch) > 1 and all(int(batch.lengths[i]) == longest for i in rows) and len(rows) < len(batch):
        text += "; only the samples without padded frames: a key padding mask the wrong way round masks every key of exactly those"
    return text


# ----------------------------------------------------------------------------- 5. loss at init


def losses_at_init(model, batch: Batch, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-sample CTC loss of the model's eval-mode output, per-sample CTC loss of a uniform
    prediction of the same output lengths, output lengths) on `batch`. Leaves the model in eval mode."""
    model.eval()
    with torch.no_grad():
        log_probs, out_lengths = model(batch.features, batch.lengths)
        losses = ctc_loss_per_sample(log_probs, out_lengths, batch.targets, batch.target_lengths)
        uniform = uniform_ctc_loss(out_lengths, batch.targets, batch.target_lengths, vocab_size)
    return losses, uniform, out_lengths


def check_loss_at_init(model, batch: Batch, vocab_size: int, thresholds: dict) -> Finding:
    """Per-sample CTC loss finite, and close to the loss of a uniform prediction of the same lengths."""
    start = time.perf_counter()
    losses, uniform, out_lengths = losses_at_init(model, batch, vocab_size)
    bad = [batch.ids[i] for i in torch.nonzero(~torch.isfinite(losses)).flatten().tolist()]
    # a CTC negative log-likelihood of a non-empty target is > 0; exactly 0 means an infinite
    # (infeasible) loss was zeroed, as zero_infinity=True does
    zeroed = [batch.ids[i] for i in range(len(batch)) if float(losses[i]) == 0.0 and int(batch.target_lengths[i]) > 0]
    ratio = float(losses[torch.isfinite(losses)].mean() / uniform[torch.isfinite(losses)].mean()) if len(bad) < len(batch) else float("nan")
    lo, hi = thresholds["init_loss_ratio"]
    fails = []
    if bad:
        short = [batch.ids[i] for i in range(len(batch)) if int(out_lengths[i]) < int(batch.target_lengths[i])]
        why = " (output shorter than target: CTC-infeasible)" if short else ""
        fails.append(f"loss at init not finite for {len(bad)} sample(s){why}")
    if zeroed:
        fails.append(
            f"loss at init is exactly 0 for {len(zeroed)} sample(s) with non-empty targets: infinite losses are being zeroed "
            "(zero_infinity=True hides CTC-infeasible samples; they silently stop contributing)"
        )
        bad += zeroed
    if not bad and not lo <= ratio <= hi:
        fails.append(f"loss at init is {ratio:.2f}x the uniform-prediction loss (allowed {lo}..{hi}): the initial output is far from uniform")
    rows = [[sid, f"{float(a):.3f}", f"{float(b):.3f}"] for sid, a, b in zip(batch.ids, losses, uniform)]
    return Finding(
        check="loss_at_init",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or f"finite for all {len(batch)} probe samples, {ratio:.2f}x the uniform-prediction loss",
        hint="check CTC feasibility and the head's initialisation (small weights, zero bias)" if fails else "",
        values={"key": f"ratio {ratio:.2f}", "ratio_to_uniform": ratio, "mean_loss": float(losses[torch.isfinite(losses)].mean()) if len(bad) < len(batch) else float("nan")},
        samples=bad,
        tables={"Loss at init per sample (per target gloss)": table(["id", "loss", "uniform"], rows)},
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------- 7. gradient health


def layer_grad_norms(model) -> "OrderedDict[str, float]":
    """Gradient norm per top-level layer group (e.g. fusion.proj.hands, stem, blocks.3, lstm, classifier)."""
    norms = OrderedDict()
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        parts = name.split(".")
        group = ".".join(parts[:3]) if parts[0] == "fusion" and parts[1] == "proj" else ".".join(parts[:2]) if parts[0] == "blocks" else parts[0]
        norms[group] = norms.get(group, 0.0) + float(p.grad.detach().float().pow(2).sum())
    return OrderedDict((k, math.sqrt(v)) for k, v in norms.items())


def check_gradients(model, batch: Batch, thresholds: dict, distributed: bool = False) -> Finding:
    """Finite; global and per-layer norms; every parameter gets a gradient; vanishing/exploding
    layers by ratio to the median layer; whether padded input frames get gradient.

    A parameter outside the graph (no gradient) fails under DistributedDataParallel
    (`distributed`: DDP raises or hangs on unused parameters unless find_unused_parameters=True)
    and warns otherwise; padded frames receiving gradient warn (a layer reads them; whether that
    changes any output is judged by padding[model])."""
    start = time.perf_counter()
    model.train()
    model.zero_grad(set_to_none=True)
    x = batch.features.clone().requires_grad_(True)
    log_probs, out_lengths = model(x, batch.lengths)
    loss = ctc_loss_per_sample(log_probs, out_lengths, batch.targets, batch.target_lengths).mean()
    fails, warns, samples = [], [], []
    finite_loss = bool(torch.isfinite(loss))
    if not finite_loss:
        fails.append("loss is not finite, so no gradient can be judged")
    else:
        loss.backward()
    # without a backward pass every parameter lacks a gradient: that is no dead branch
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad] if finite_loss else []
    unused = [n for n, p in trainable if p.grad is None]
    zero = [n for n, p in trainable if p.grad is not None and not torch.any(p.grad != 0)]
    dead = unused + zero
    nonfinite = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    norms = layer_grad_norms(model)
    global_norm = math.sqrt(sum(v * v for v in norms.values())) if norms else 0.0
    hints = []
    if finite_loss:
        if nonfinite:
            fails.append(f"non-finite gradients in {len(nonfinite)} parameter(s), first {nonfinite[0]}")
        if unused:
            owners = _owners(model, unused)
            text = f"{len(unused)} parameter(s) get no gradient (dead branch: not in the graph of the loss), owned by {owners}"
            if distributed:
                fails.append(text + ": DistributedDataParallel raises or hangs on unused parameters")
                hints.append("call the module in forward, delete it, or wrap with DistributedDataParallel(find_unused_parameters=True)")
            else:
                warns.append(text + " (under DistributedDataParallel this fails unless find_unused_parameters=True)")
                hints.append("call the module in forward or delete it")
        if zero:
            warns.append(f"{len(zero)} parameter(s) get an all-zero gradient, owned by {_owners(model, zero)}")
        if global_norm > thresholds["max_global_grad_norm"]:
            fails.append(f"global gradient norm {global_norm:.3g} > {thresholds['max_global_grad_norm']:g} (exploding)")
        finite_norms = [v for v in norms.values() if v > 0 and math.isfinite(v)]
        if finite_norms:
            median = float(np.median(finite_norms))
            hi = [k for k, v in norms.items() if v > median * thresholds["layer_grad_ratio"]]
            lo = [k for k, v in norms.items() if 0 < v < median / thresholds["layer_grad_ratio"]]
            if hi:
                warns.append(f"exploding layers (>{thresholds['layer_grad_ratio']:g}x median norm): {hi}")
            if lo:
                warns.append(f"vanishing layers (<1/{thresholds['layer_grad_ratio']:g} of median norm): {lo}")
        pad = ~pad_mask(batch.lengths, x.shape[1])
        if x.grad is not None and pad.any():
            leak = float(x.grad[pad].abs().max())
            if leak > 0:
                warns.append(f"padded frames receive gradient (max {leak:.3g}): a layer reads padded input frames; "
                             "whether that changes any output is judged by padding[model]")
                samples = [batch.ids[i] for i in range(len(batch)) if pad[i].any() and float(x.grad[i][pad[i]].abs().max()) > 0]
    modality = ""
    if dead and dead[0].startswith("fusion.proj."):
        modality = dead[0].split(".")[2]
    rows = [[k, f"{v:.4g}"] for k, v in norms.items()]
    model.zero_grad(set_to_none=True)
    if fails and not hints:
        hints.append("find the named parameters/layers")
    return Finding(
        check="gradients",
        status=status_from(bool(fails), bool(warns)),
        summary="; ".join(fails + warns) or f"finite, global norm {global_norm:.3g}, every parameter has a gradient, no padded frame gets gradient",
        hint="; ".join(hints),
        values={"key": f"norm {global_norm:.3g}", "global_norm": global_norm, "layer_norms": dict(norms), "dead": len(dead),
                "unused": len(unused), "distributed": distributed},
        samples=samples,
        modality=modality,
        features=dead[:50] + nonfinite[:50],
        tables={"Gradient norm by layer": table(["layer", "grad norm"], rows)},
        plots={"Gradient norm by layer": bar_png(list(norms), list(norms.values()), "gradient norm (log)", log=True)},
        seconds=time.perf_counter() - start,
    )


def _owners(model, names: list) -> str:
    """The modules owning these parameters, by qualified name and type: 'aux_head (Linear)'."""
    owners = []
    for n in names:
        path = n.rpartition(".")[0]
        try:
            module = model.get_submodule(path) if path else model
            owner = f"{path or '<model>'} ({type(module).__name__})"
        except AttributeError:
            owner = path or "<model>"
        if owner not in owners:
            owners.append(owner)
    return ", ".join(owners[:8]) + (f" and {len(owners) - 8} more" if len(owners) > 8 else "")


# ----------------------------------------------------------------------------- 8. batch sizes


def check_batch_size(model, samples: list, thresholds: dict, device=None, to_input=None) -> Finding:
    """Forward and backward work for len(samples); in eval mode each sample's output equals its
    output alone (padding does not leak; a NaN is never equal to a number). `to_input`
    (batch -> batch) is what training applies between loader and model (device,
    batch_transform). Where a sample's output differs, where that is born is measured:
    `values["born_in"]` is "padding[batch_transform]" when the sample's model input differs alone
    and in the batch and that changes the output, else "padding[model]" when the model's output
    differs on identical inputs (the sample's alone input zero-padded into the batch)."""
    start = time.perf_counter()
    n = len(samples)
    device = device or next(model.parameters()).device
    to_input = to_input or (lambda b: b.to(device))
    batch = to_input(collate(samples))
    atol = thresholds["padding_atol"]
    fails, values = [], {}
    model.train()
    model.zero_grad(set_to_none=True)
    log_probs, out_lengths = model(batch.features, batch.lengths)
    loss = ctc_loss_per_sample(log_probs, out_lengths, batch.targets, batch.target_lengths).mean()
    if not torch.isfinite(loss):
        fails.append(f"batch size {n}: loss not finite")
    else:
        loss.backward()
        if any(p.grad is not None and not torch.isfinite(p.grad).all() for p in model.parameters()):
            fails.append(f"batch size {n}: non-finite gradients")
    model.zero_grad(set_to_none=True)
    model.eval()
    worst, leaking, nonfinite, nonfinite_ids, rows, raised, raise_text = 0.0, [], [], [], [], [], ""
    alone_inputs, alone_outputs, input_diffs = [], [], []
    with torch.no_grad():
        try:
            together, out_len = model(batch.features, batch.lengths)
        except Exception as exc:  # noqa: BLE001 - the model fails in eval mode on this batch: that is the finding
            fails.append(f"batch size {n}: the eval-mode forward pass raises {one_line(exc)}")
            together = None
        for i, s in enumerate(samples if together is not None else []):
            single = to_input(collate([s]))
            k = int(single.lengths[0])
            input_diffs.append(prefix_diff(batch.features[i], single.features[0], k))
            alone_inputs.append(single)
            in_batch_bad = not bool(torch.isfinite(together[i, : int(out_len[i])]).all())
            try:
                alone, alone_len = model(single.features, single.lengths)
            except Exception as exc:  # noqa: BLE001 - the model fails on a batch of one: that is the finding
                raised.append(s.id)
                raise_text = raise_text or one_line(exc)
                alone_outputs.append(None)
                if in_batch_bad:
                    nonfinite.append(f"{s.id} (in the padded batch)")
                    nonfinite_ids.append(s.id)
                continue
            m = int(alone_len[0])
            diff = prefix_diff(together[i], alone[0], m)
            alone_outputs.append(alone[0, :m])
            alone_bad = not bool(torch.isfinite(alone[0, :m]).all())
            if alone_bad or in_batch_bad:
                where = "alone and in the padded batch" if alone_bad and in_batch_bad else "alone only" if alone_bad else "in the padded batch only"
                nonfinite.append(f"{s.id} ({where})")
                nonfinite_ids.append(s.id)
            worst = max(worst, diff)
            rows.append([s.id, s.length, f"{input_diffs[-1]:.3g}", f"{diff:.3g}"])
            if diff > atol:
                leaking.append(s.id)
        if raised:
            fails.append(f"sample(s) {', '.join(raised)} alone (a batch of one, no padding): the forward pass raises {raise_text}")
        if nonfinite:
            fails.append(f"batch size {n}: eval-mode output not finite for {', '.join(nonfinite)}")
        differing = [i for i, s in enumerate(samples) if s.id in leaking and alone_outputs[i] is not None]
        if differing:
            origin = _padding_origin(model, batch, together, alone_inputs, alone_outputs, input_diffs, differing, atol)
            values.update(origin)
            text = (f"padding leaks: {len(differing)} sample(s) give different log-probs alone and in a padded batch "
                    f"(max diff {worst:.3g})")
            if origin.get("born_in") == "padding[batch_transform]":
                text += (f"; born in the batch_transform (padding[batch_transform]): a sample's model input differs by up to "
                         f"{origin['transform_input_diff']:.3g} alone and in the batch (its statistics include padded frames), "
                         f"which changes its output by {origin['transform_effect']:.3g}")
            elif origin.get("born_in") == "padding[model]":
                text += (f"; born in the model (padding[model]): on identical inputs (each sample's own input zero-padded into "
                         f"the batch) its output still differs by {origin['model_diff']:.3g}")
            fails.append(text)
    values.update(key=f"diff {worst:.1e}", max_diff=worst)
    hint = ""
    attention = any(module_kind(m) == "attention" for m in model.modules())
    if values.get("born_in") == "padding[batch_transform]":
        hint = "take the batch_transform's statistics over valid frames only and keep padded frames at 0 (see padding[batch_transform])"
    elif nonfinite or raised or together is None:
        hint = "see the forward check (it names the first non-finite module)" + (
            "; with attention: a key padding mask must be True at padded frames (an inverted one masks every key of an unpadded sample)"
            if attention else "")
    elif fails:
        hint = "see padding[model] for the module that mixes padded frames in: mask padded frames after every temporal conv/pool, pack the RNN input, pass a key padding mask, avoid norms over time"
    return Finding(
        check=f"batch_size[{n}]",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or f"batch size {n}: forward/backward finite, alone vs padded max diff {worst:.1e}",
        hint=hint,
        values=values,
        samples=list(dict.fromkeys(leaking + raised + nonfinite_ids)),
        tables={"Alone vs in the padded batch": table(["id", "frames", "max |input diff|", "max |output diff|"], rows)} if rows else {},
        seconds=time.perf_counter() - start,
    )


def _padding_origin(model, batch: Batch, together, alone_inputs, alone_outputs, input_diffs, differing, atol) -> dict:
    """Where the difference of the `differing` samples is born: feed the model every sample's
    alone input zero-padded into the batch. Its output still differing from the alone one is
    the model's; the batched input's output differing from it is the transform's (a sample's
    model input depends on the batch). Both: the transform's, its root comes first."""
    feats = [a.features[0] for a in alone_inputs]
    if any(f.shape[1:] != batch.features.shape[2:] or f.shape[0] > batch.features.shape[1] for f in feats):
        return {}
    x, _ = repad(feats, batch.features.shape[1])
    repadded, _ = model(x, batch.lengths)
    model_diff = max(prefix_diff(repadded[i], alone_outputs[i], alone_outputs[i].shape[0]) for i in differing)
    effect = max((prefix_diff(together[i], repadded[i], alone_outputs[i].shape[0]) for i in differing if input_diffs[i] > atol), default=0.0)
    out = {"model_diff": model_diff, "transform_effect": effect, "transform_input_diff": max(input_diffs[i] for i in differing)}
    if effect > atol:
        out["born_in"] = "padding[batch_transform]"
    elif model_diff > atol:
        out["born_in"] = "padding[model]"
    return out


# ----------------------------------------------------------------------------- 9. modalities


def modality_input_gradients(model, batch: Batch, modalities) -> dict:
    """Mean |d loss / d input| per modality block of a full-input model."""
    model.train()
    model.zero_grad(set_to_none=True)
    x = batch.features.clone().requires_grad_(True)
    log_probs, out_lengths = model(x, batch.lengths)
    ctc_loss_per_sample(log_probs, out_lengths, batch.targets, batch.target_lengths).mean().backward()
    out, start = {}, 0
    for name, width in modality_widths(modalities).items():
        out[name] = float(x.grad[..., start : start + width].abs().mean())
        start += width
    model.zero_grad(set_to_none=True)
    return out


SHAPE_WORDS = ("shape", "size", "mat1 and mat2", "expected input", "expects", "dimension", "channels")


def _expected_width(model) -> int | None:
    """The input width a model's first layer expects (in_features / in_channels / input_size /
    normalized_shape of the first module that has one), None if none says."""
    for m in model.modules():
        for attr in ("in_features", "in_channels", "input_size"):
            if isinstance(getattr(m, attr, None), int):
                return int(getattr(m, attr))
        shape = getattr(m, "normalized_shape", None)
        if isinstance(shape, tuple) and len(shape) == 1:
            return int(shape[0])
    return None


def _single_modality(build_single, name: str, width: int, sub: Batch) -> tuple[str, float | None, bool | None]:
    """(how the single-modality model of `name` went, its loss, finite or None when not measured)."""
    try:
        single = build_single(name)
    except Exception as exc:  # noqa: BLE001 - a factory that cannot build it: not measured
        return f"not measured: the factory cannot build a model for '{name}' alone ({one_line(exc)})", None, None
    single.train()
    try:
        lp, ol = single(sub.features, sub.lengths)
    except Exception as exc:  # noqa: BLE001 - judged below: a shape error is a factory ignoring input_dim
        expected = _expected_width(single)
        if (expected is not None and expected != width) or any(w in str(exc).lower() for w in SHAPE_WORDS):
            expects = f" it expects {expected}" if expected is not None and expected != width else f" it fails on that width ({one_line(exc)})"
            return f"not measured: the factory ignores input_dim (built with input_dim={width}{expects})", None, None
        return f"not measured: the model built for '{name}' alone raises {one_line(exc)}", None, None
    loss = ctc_loss_per_sample(lp, ol, sub.targets, sub.target_lengths).mean()
    ok = bool(torch.isfinite(loss))
    if ok:
        loss.backward()
        ok = all(p.grad is None or torch.isfinite(p.grad).all() for p in single.parameters())
    return "measured", float(loss.detach()), ok


def check_modalities(full_model, batch: Batch, build_single, modalities) -> Finding:
    """Each single-modality model runs forward/backward finite; in the full model each modality's
    input receives a non-zero gradient (none ignored). build_single(name) -> model for that modality.

    A factory that ignores input_dim (the single model does not take its modality's width) or
    cannot build a model for one modality is not a failure: that row is not measured and the
    full model's per-modality input gradients are judged alone; with nothing measurable at all
    the check skips."""
    start = time.perf_counter()
    fails, rows, bad, notes = [], [], "", []
    try:
        grads = modality_input_gradients(full_model, batch, modalities)
    except Exception as exc:  # noqa: BLE001 - the full model's gradient cannot be measured
        grads, full_error = None, one_line(exc)
    else:
        full_error = "" if all(math.isfinite(g) for g in grads.values()) else "its loss or input gradient is not finite"
        grads = grads if not full_error else None
    measured_single = 0
    offset = 0
    for name, width in modality_widths(modalities).items():
        sub = Batch(batch.features[..., offset : offset + width], batch.lengths, batch.targets, batch.target_lengths, batch.ids, batch.glosses, batch.normalization)
        offset += width
        status, loss, ok = _single_modality(build_single, name, width, sub)
        if ok is None:
            notes.append(f"'{name}': {status}")
        else:
            measured_single += 1
            if not ok:
                fails.append(f"model built for '{name}' alone is not finite in forward/backward")
                bad = bad or name
        grad = grads[name] if grads is not None else None
        rows.append([name, width, status if ok is None else f"{loss:.3f}", "-" if ok is None else "yes" if ok else "NO",
                     f"{grad:.3g}" if grad is not None else "not measured"])
        if grad == 0:
            fails.append(f"the full model ignores '{name}': its input receives zero gradient")
            bad = bad or name
    if grads is None and not measured_single:
        why = f"the full model's input gradient could not be measured ({full_error})"
        reasons = "; ".join(notes) if notes else ""
        return Finding(check="modalities", status=SKIP, summary=f"nothing measurable: {why}" + (f"; {reasons}" if reasons else ""),
                       values={"key": "not measured"}, seconds=time.perf_counter() - start)
    judged = []
    if grads is not None:
        judged.append("receives gradient in the full model")
    if measured_single:
        judged.append(f"{measured_single} of {len(rows)} work alone")
    summary = "; ".join(fails) or f"each of {list(modalities)} " + " and ".join(judged)
    if notes:
        summary += " (" + "; ".join(notes) + ")"
    if grads is None:
        summary += f"; the full model's input gradient is not measured ({full_error})"
    return Finding(
        check="modalities",
        status=status_from(bool(fails)),
        summary=summary,
        hint=f"look at the fusion branch of '{bad}' (detached or unused projection?)" if fails else
             ("build the model from input_dim so each modality can be checked alone" if notes else ""),
        values={"key": f"{len(modalities)} modalities", "input_grad": grads or {}, "single_measured": measured_single},
        modality=bad,
        tables={"Modalities": table(["modality", "width", "loss alone", "finite", "mean |grad| in full model"], rows)},
        seconds=time.perf_counter() - start,
    )
