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
from harness.findings import Finding, status_from, table
from harness.plots import bar_png
from harness.probes import first_nonfinite_module, nonfinite_inputs
from model.ctc import ctc_loss_per_sample, uniform_ctc_loss
from model.masking import pad_mask


# ----------------------------------------------------------------------------- 4. forward pass


def check_forward(model, batch: Batch, thresholds: dict, label: str = "") -> Finding:
    """Every module's output finite (hooks name the first that is not), log-probs normalised,
    output lengths equal to model.output_lengths()."""
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
    samples, modality = [], ""
    first = first_nonfinite_module(model, batch.features, batch.lengths)
    if first is not None:
        name, cls, share = first
        bad_in = nonfinite_inputs(batch)
        cause = "the input already holds NaN/Inf" if bad_in else f"first non-finite output at module '{name}' ({cls}), {share:.1%} of its values"
        fails.append(f"forward pass not finite: {cause}")
        samples = bad_in or list(batch.ids)
        modality = name.split(".")[2] if name.startswith("fusion.proj.") else ""
        values["first_nonfinite_module"] = name
    valid = pad_mask(out_lengths, log_probs.shape[1])
    lse = torch.logsumexp(log_probs.float(), dim=-1)[valid]
    norm_err = float((lse.abs()).max()) if lse.numel() and torch.isfinite(lse).all() else float("inf")
    values["logsumexp_max_abs"] = norm_err
    if first is None and norm_err > thresholds["logprob_norm_tol"]:
        # a log_softmax over the wrong axis still normalises, just over time instead of the vocabulary
        over_time = float(torch.logsumexp(log_probs.float(), dim=1).abs().max()) < thresholds["logprob_norm_tol"]
        why = "log_softmax taken over the time axis, not the vocabulary" if over_time else "raw logits given to CTC?"
        fails.append(f"the output is not log-probabilities: logsumexp over the vocabulary is {norm_err:.3g}, not 0 ({why})")
    values["key"] = f"|logsumexp| {norm_err:.1e}"
    return Finding(
        check=f"forward{label}",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or f"{len(batch)} samples: all module outputs finite, log-probs normalised, output lengths exact",
        hint=("the model input is not finite: fix it first (the model_input and normalization checks name where it is born)" if samples and nonfinite_inputs(batch)
              else "apply log_softmax at the head; make output_lengths follow every strided layer; find the module named above") if fails else "",
        values=values,
        samples=samples,
        modality=modality,
        seconds=time.perf_counter() - start,
    )


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


def check_gradients(model, batch: Batch, thresholds: dict) -> Finding:
    """Finite; global and per-layer norms; every parameter gets a gradient; vanishing/exploding
    layers by ratio to the median layer; padded input frames get exactly zero gradient."""
    start = time.perf_counter()
    model.train()
    model.zero_grad(set_to_none=True)
    x = batch.features.clone().requires_grad_(True)
    log_probs, out_lengths = model(x, batch.lengths)
    loss = ctc_loss_per_sample(log_probs, out_lengths, batch.targets, batch.target_lengths).mean()
    fails, warns, samples = [], [], []
    if not torch.isfinite(loss):
        fails.append("loss is not finite, so no gradient can be judged")
    else:
        loss.backward()
    # without a backward pass every parameter lacks a gradient: that is no dead branch
    dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))] if torch.isfinite(loss) else []
    nonfinite = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    norms = layer_grad_norms(model)
    global_norm = math.sqrt(sum(v * v for v in norms.values())) if norms else 0.0
    if torch.isfinite(loss):
        if nonfinite:
            fails.append(f"non-finite gradients in {len(nonfinite)} parameter(s), first {nonfinite[0]}")
        if dead:
            fails.append(f"{len(dead)} parameter(s) get no gradient (dead branch), e.g. {dead[0]}")
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
                fails.append(f"padded frames receive gradient (max {leak:.3g}): padding leaks into the loss")
                samples = [batch.ids[i] for i in range(len(batch)) if pad[i].any()]
    modality = ""
    if dead and dead[0].startswith("fusion.proj."):
        modality = dead[0].split(".")[2]
    rows = [[k, f"{v:.4g}"] for k, v in norms.items()]
    model.zero_grad(set_to_none=True)
    return Finding(
        check="gradients",
        status=status_from(bool(fails), bool(warns)),
        summary="; ".join(fails + warns) or f"finite, global norm {global_norm:.3g}, every parameter has a gradient, no padding leak",
        hint="find the named parameters/layers; a dead branch is cut from the graph (detach, unused module)" if fails else "",
        values={"key": f"norm {global_norm:.3g}", "global_norm": global_norm, "layer_norms": dict(norms), "dead": len(dead)},
        samples=samples,
        modality=modality,
        features=dead[:50] + nonfinite[:50],
        tables={"Gradient norm by layer": table(["layer", "grad norm"], rows)},
        plots={"Gradient norm by layer": bar_png(list(norms), list(norms.values()), "gradient norm (log)", log=True)},
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------- 8. batch sizes


def check_batch_size(model, samples: list, thresholds: dict, device=None, to_input=None) -> Finding:
    """Forward and backward work for len(samples); in eval mode each sample's output equals its
    output alone (padding does not leak). `to_input` (batch -> batch) is what training applies
    between loader and model (device, batch_transform); a leak it causes is named as its own."""
    start = time.perf_counter()
    n = len(samples)
    device = device or next(model.parameters()).device
    to_input = to_input or (lambda b: b.to(device))
    batch = to_input(collate(samples))
    fails = []
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
    worst, leaking, input_leak = 0.0, [], 0.0
    with torch.no_grad():
        together, out_len = model(batch.features, batch.lengths)
        for i, s in enumerate(samples):
            single = to_input(collate([s]))
            input_leak = max(input_leak, float((batch.features[i, : s.length] - single.features[0]).abs().max()))
            alone, _ = model(single.features, single.lengths)
            diff = float((together[i, : out_len[i]] - alone[0, : out_len[i]]).abs().max())
            worst = max(worst, diff)
            if diff > thresholds["padding_atol"]:
                leaking.append(s.id)
    if leaking:
        where = (
            f": the model input itself differs (by up to {input_leak:.3g}), so the step between loader and model "
            "(batch_transform) takes statistics over padded frames" if input_leak > thresholds["padding_atol"] else ""
        )
        fails.append(f"padding leaks: {len(leaking)} sample(s) give different log-probs alone and in a padded batch (max diff {worst:.3g}){where}")
    return Finding(
        check=f"batch_size[{n}]",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or f"batch size {n}: forward/backward finite, alone vs padded max diff {worst:.1e}",
        hint="mask padded frames after every temporal conv/pool, pack the LSTM input, avoid norms over time" if fails else "",
        values={"key": f"diff {worst:.1e}", "max_diff": worst},
        samples=leaking,
        seconds=time.perf_counter() - start,
    )


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


def check_modalities(full_model, batch: Batch, build_single, modalities) -> Finding:
    """Each single-modality model runs forward/backward finite; in the full model each modality's
    input receives a non-zero gradient (none ignored). build_single(name) -> model for that modality."""
    start = time.perf_counter()
    fails, rows, bad = [], [], ""
    grads = modality_input_gradients(full_model, batch, modalities)
    offset = 0
    for name, width in modality_widths(modalities).items():
        single = build_single(name)
        sub = Batch(batch.features[..., offset : offset + width], batch.lengths, batch.targets, batch.target_lengths, batch.ids, batch.glosses, batch.normalization)
        offset += width
        single.train()
        lp, ol = single(sub.features, sub.lengths)
        loss = ctc_loss_per_sample(lp, ol, sub.targets, sub.target_lengths).mean()
        ok = bool(torch.isfinite(loss))
        if ok:
            loss.backward()
            ok = all(p.grad is None or torch.isfinite(p.grad).all() for p in single.parameters())
        rows.append([name, width, f"{loss.item():.3f}", "yes" if ok else "NO", f"{grads[name]:.3g}"])
        if not ok:
            fails.append(f"model built for '{name}' alone is not finite in forward/backward")
            bad = bad or name
        if grads[name] == 0:
            fails.append(f"the full model ignores '{name}': its input receives zero gradient")
            bad = bad or name
    return Finding(
        check="modalities",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or f"each of {list(modalities)} works alone and receives gradient in the full model",
        hint=f"look at the fusion branch of '{bad}' (detached or unused projection?)" if fails else "",
        values={"key": f"{len(modalities)} modalities", "input_grad": grads},
        modality=bad,
        tables={"Modalities": table(["modality", "width", "loss alone", "finite", "mean |grad| in full model"], rows)},
        seconds=time.perf_counter() - start,
    )
