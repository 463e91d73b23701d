"""Checks that optimise: the smoke run (a few steps of the exact training configuration on
the corpus's extreme samples) and the overfit run (a tiny subset to 0% WER)."""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from data.dataset import collate
from harness.findings import Finding, status_from, table
from harness.plots import curve_png
from harness.probes import first_nonfinite_module
from harness.thresholds import DEFAULTS
from model import training
from model.decode import greedy_decode
from model.masking import pad_mask
from model.metrics import word_error_rate


# the plateau share the overfit check judges by default; train.py warns on the dev split at it
PLATEAU_BLANK_SHARE = DEFAULTS["plateau_blank_share"]


def blank_share(log_probs: torch.Tensor, out_lengths: torch.Tensor, blank: int = 0) -> float:
    """Share of the valid output frames whose most likely class is the blank."""
    valid = pad_mask(out_lengths.to(log_probs.device), log_probs.shape[1])
    return float((log_probs.argmax(-1) == blank)[valid].float().mean()) if valid.any() else 0.0


def extreme_indices(scan_files, records, k_random: int = 4, seed: int = 0) -> list[int]:
    """Indices (into `records`) of the longest, shortest, most-missing and largest-valued
    samples, then a few random ones: the batches a smoke run must survive."""
    info = {f.id: f for f in scan_files if not f.error}
    usable = [i for i, r in enumerate(records) if r.id in info]
    if not usable:
        return []
    frames = [info[records[i].id].frames for i in usable]
    missing = [np.mean(list(info[records[i].id].missing.values())) for i in usable]
    largest = [info[records[i].id].max_abs for i in usable]
    picks = [usable[int(np.argmax(frames))], usable[int(np.argmin(frames))], usable[int(np.argmax(missing))], usable[int(np.argmax(largest))]]
    rng = np.random.default_rng(seed)
    rest = [i for i in usable if i not in picks]
    picks += [int(i) for i in rng.choice(rest, size=min(k_random, len(rest)), replace=False)] if rest else []
    return list(dict.fromkeys(picks))


def _batches(dataset, chunks: list[list[int]], user_step=None, make_batch=None) -> tuple[list, list]:
    """(the user step's batches or None each, the Batches) of these index chunks: with a user
    train_step, what its make_batch gives; else make_batch's Batch (the user's collate_fn), else
    the project's collate."""
    if user_step is not None:
        pairs = [user_step.make_batch(c) for c in chunks]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    if make_batch is not None:
        return [None] * len(chunks), [make_batch(c) for c in chunks]
    return [None] * len(chunks), [collate([dataset[i] for i in c]) for c in chunks]


def check_smoke(cfg, model, dataset, indices: list[int], device: torch.device, thresholds: dict, user_step=None, make_batch=None) -> Finding:
    """`smoke_steps` optimisation steps with the training configuration's optimizer, schedule,
    AMP and clipping: loss finite, gradients bounded, parameters changed, loss not diverging,
    and each step's weight change (relative to the weights, scaled to the peak learning rate)
    small enough: a learning rate far too high shows there long before the loss diverges.

    With a user's train_step (harness.checks.step.UserStep) its step runs instead of this
    project's, with the optimizer built as training builds it (no schedule: the step takes none);
    make_batch(indices) -> Batch builds the batches (the user's collate_fn)."""
    start = time.perf_counter()
    steps = int(thresholds["smoke_steps"])
    model = model.to(device)
    optimizer = training.build_optimizer(cfg, model)
    scheduler = None if user_step is not None else training.build_scheduler(cfg, optimizer, total_steps=max(steps, cfg.epochs * max(1, len(dataset) // cfg.batch_size)))
    scaler = training.make_scaler(device, cfg)
    raws, batches = _batches(dataset, [indices[j : j + cfg.batch_size] for j in range(0, len(indices), cfg.batch_size)], user_step, make_batch)
    before = [p.detach().clone() for p in model.parameters()]
    losses, norms, ratios, fails, samples = [], [], [], [], []
    for step in range(steps):
        batch = batches[step % len(batches)]
        lr_now = optimizer.param_groups[0]["lr"]
        previous = [p.detach().clone() for p in model.parameters()]
        if user_step is not None:
            res = user_step.result(model, raws[step % len(batches)], batch, optimizer)
        else:
            res = training.train_step(model, batch, optimizer, scaler, cfg, device, scheduler)
        if not res.finite:
            b = training.to_model_input(batch, device, training.batch_transform(cfg))  # what the model saw
            first = first_nonfinite_module(model, b.features, b.lengths)
            where = f"; first non-finite module '{first[0]}' ({first[1]})" if first else ""
            if not torch.isfinite(b.features).all():
                where += "; the model input itself holds NaN/Inf (see the model_input and normalization checks)"
            what = "loss" if not np.isfinite(res.loss) else "gradients"
            fails.append(f"step {step + 1}: non-finite {what} for samples {res.nonfinite_ids}{where}")
            samples = res.nonfinite_ids
            break
        losses.append(res.loss)
        norms.append(res.grad_norm)
        if lr_now > 0:
            # ||delta w|| / ||w|| of this step; Adam's step is proportional to the learning rate,
            # so scale it to the configured peak (warm-up steps run at a fraction of it)
            delta = math.sqrt(sum(float((p.detach() - q).pow(2).sum()) for p, q in zip(model.parameters(), previous)))
            norm = math.sqrt(sum(float(q.pow(2).sum()) for q in previous))
            ratios.append(delta / max(norm, 1e-12) * cfg.lr / lr_now)
    changed = max(float((p.detach() - b).abs().max()) for p, b in zip(model.parameters(), before))
    blank_after = None
    if losses and len(losses) == steps:
        model.eval()
        b = training.to_model_input(batches[0], device, training.batch_transform(cfg))
        with torch.no_grad(), training.autocast_context(device, cfg):
            lp, ol = model(b.features, b.lengths)
        blank_after = blank_share(lp.float(), ol)
    if not fails:
        if changed == 0.0:
            fails.append("parameters did not change in any step: the model is frozen (learning rate 0, or the optimizer holds no parameters)")
        if max(norms) > thresholds["max_global_grad_norm"]:
            fails.append(f"gradient norm reached {max(norms):.3g} > {thresholds['max_global_grad_norm']:g}")
        k = max(1, min(3, len(losses) // 3))
        first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
        if last > thresholds["smoke_divergence"] * first:
            fails.append(f"loss diverges: {first:.3f} -> {last:.3f} in {steps} steps (learning rate {cfg.lr:g} too high?)")
        # the first Adam steps are sign-like and large; judge the settled second half
        update_ratio = float(np.median(ratios[len(ratios) // 2 :])) if ratios else 0.0
        if update_ratio > thresholds["max_update_ratio"]:
            fails.append(
                f"learning rate {cfg.lr:g} too high: at that rate each step changes the weights by {update_ratio:.1%} of their norm "
                f"(limit {thresholds['max_update_ratio']:.0%}; healthy training moves them ~0.1-1% a step)"
            )
    whose = f" with train_step {user_step.spec!r}" if user_step is not None else ""
    return Finding(
        check="smoke",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or (f"{steps} steps{whose} on extreme samples: loss {losses[0]:.3f} -> {losses[-1]:.3f}, max grad norm {max(norms):.3g}"
                                     + (f", {blank_after:.0%} of output frames blank" if blank_after is not None else "")),
        hint="replay these samples (the forward/gradient checks name modules); lower the learning rate; keep clipping on" if fails else "",
        values={"key": f"loss {losses[0]:.2f}->{losses[-1]:.2f}" if losses else "non-finite", "losses": losses, "grad_norms": norms,
                "max_param_change": changed, "update_ratios": ratios, "blank_share": blank_after},
        samples=samples or [sid for b in batches for sid in b.ids],
        plots={"Smoke run loss": curve_png({"loss": losses, "grad norm": norms}, "step", "value")} if losses else {},
        seconds=time.perf_counter() - start,
    )


def check_overfit(cfg, model, dataset, indices: list[int], device: torch.device, thresholds: dict, eval_every: int = 10,
                  user_step=None, make_batch=None) -> Finding:
    """Train on a fixed tiny subset until greedy decoding reaches 0% WER within `overfit_steps`.

    Every evaluation also decodes the best path with the loss's blank id (model.decode directly):
    training's greedy decoder must agree with it exactly, else it reads the output differently
    from the loss (blank index, id offset) and WER cannot fall however well the loss does.
    With a user's train_step (harness.checks.step.UserStep) its step trains instead of this
    project's; make_batch(indices) -> Batch builds the batch (the user's collate_fn)."""
    start = time.perf_counter()
    model = model.to(device)
    optimizer = training.build_optimizer(cfg, model)
    scaler = training.make_scaler(device, cfg)
    raws, batches = _batches(dataset, [list(indices)], user_step, make_batch)
    raw, batch = raws[0], batches[0]
    refs = [list(g) for g in batch.glosses]
    transform = training.batch_transform(cfg)
    losses, wers, blanks, reached, disagree = [], [], [], None, None
    for step in range(1, int(thresholds["overfit_steps"]) + 1):
        if user_step is not None:
            res = user_step.result(model, raw, batch, optimizer)
        else:
            res = training.train_step(model, batch, optimizer, scaler, cfg, device)
        losses.append(res.loss)
        if not res.finite:
            break
        if step % eval_every == 0:
            model.eval()
            b = training.to_model_input(batch, device, transform)  # exactly what the training step feeds the model
            with torch.no_grad(), training.autocast_context(device, cfg):
                log_probs, out_lengths = model(b.features, b.lengths)
            log_probs, out_lengths = log_probs.float().cpu(), out_lengths.cpu()
            hyps = [dataset.vocab.decode(h.tokens) for h in training.decode(log_probs, out_lengths, 1)]
            best = [dataset.vocab.decode(h.tokens) for h in greedy_decode(log_probs, out_lengths, blank=dataset.vocab.blank_id)]
            wers.append(word_error_rate(refs, hyps).wer)
            blanks.append(blank_share(log_probs, out_lengths, dataset.vocab.blank_id))
            if hyps != best:
                i = next(k for k, (h, r) in enumerate(zip(hyps, best)) if h != r)
                disagree = (step, batch.ids[i], hyps[i], best[i], word_error_rate(refs, best).wer)
                break
            if wers[-1] == 0.0:
                reached = step
                break
    fails = []
    plateau, stuck_wer = thresholds["plateau_blank_share"], thresholds["overfit_stuck_wer"]
    if disagree is not None:
        step, sid, hyp, best, best_wer = disagree
        fails.append(
            f"at step {step} the decoder gives {hyp} for {sid} where a best-path decode with the loss's blank id "
            f"{dataset.vocab.blank_id} gives {best} (WER {wers[-1]:.0%} vs {best_wer:.0%}): the decoder does not read "
            "the output the way the loss does (blank index or vocabulary offset mismatch)"
        )
    elif reached is None:
        finite = [x for x in losses if np.isfinite(x)]
        if len(finite) < len(losses):
            fails.append(f"loss became non-finite at step {len(losses)}")
        elif blanks and min(blanks[-3:]) >= plateau and min(wers) >= stuck_wer:
            fails.append(
                f"CTC sits on its all-blank plateau: {blanks[-1]:.0%} of the output frames decode as blank after {len(losses)} steps "
                f"(WER {wers[-1]:.0%}, loss {finite[0]:.2f} -> {finite[-1]:.2f}): the model learned the blank and the label "
                "prior, not the input (an input without signal, a learning rate too low, or a normalization that flattens it)"
            )
        elif finite and finite[-1] < 0.5 * finite[0] and wers and min(wers) >= stuck_wer:
            fails.append(
                f"loss fell {finite[0]:.2f} -> {finite[-1]:.2f} but WER stayed {min(wers):.0%}: "
                "the decoder does not read the output the way the loss does (blank index or vocabulary mismatch)"
            )
        else:
            stuck = next((i for i, b in enumerate(blanks) if b < plateau), len(blanks))
            on_plateau = (f"; the first {stuck * eval_every} steps sat on CTC's all-blank plateau (>= {plateau:.0%} of "
                          f"output frames blank)" if stuck * eval_every >= 0.25 * int(thresholds["overfit_steps"]) else "")
            fails.append(f"did not reach 0% WER in {thresholds['overfit_steps']} steps (best {min(wers) if wers else 1:.0%}, "
                         f"loss {losses[0]:.2f} -> {losses[-1]:.2f}){on_plateau}")
    return Finding(
        check="overfit",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or f"0% WER on {len(indices)} samples after {reached} steps ({time.perf_counter() - start:.1f} s)",
        hint="a model that cannot overfit 4 samples will not learn the corpus: check labels, decoder, learning rate" if fails else "",
        values={"key": f"{reached} steps" if reached else "not reached", "steps": reached, "seconds": time.perf_counter() - start,
                "losses": losses, "wers": wers, "blank_shares": blanks},
        samples=list(batch.ids),
        tables={"Overfit WER every %d steps" % eval_every: table(["step", "WER"], [[(i + 1) * eval_every, f"{w:.2f}"] for i, w in enumerate(wers)])},
        plots={"Overfit loss": curve_png({"loss": [x if np.isfinite(x) else np.nan for x in losses]}, "step", "CTC loss")},
        seconds=time.perf_counter() - start,
    )
