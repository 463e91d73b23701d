"""CTC loss with batch-first inputs, input validation and float32 computation.

Shapes (batch first, as the model returns them):
    log_probs       [B, T, V] float, log_softmax over V, blank id 0 by default
    out_lengths     [B] integer, valid frames per sample (<= T)
    targets         [sum(target_lengths)] integer, all samples' gloss ids concatenated, no blank
    target_lengths  [B] integer
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check(log_probs, out_lengths, targets, target_lengths, blank: int):
    if not torch.is_tensor(log_probs) or log_probs.ndim != 3 or not log_probs.is_floating_point():
        got = f"{tuple(log_probs.shape)} {log_probs.dtype}" if torch.is_tensor(log_probs) else type(log_probs).__name__
        raise ValueError(f"log_probs must be a floating tensor [B, T, V] (batch first), got {got}")
    batch, steps, vocab = log_probs.shape
    for name, t in (("out_lengths", out_lengths), ("target_lengths", target_lengths)):
        if not torch.is_tensor(t) or t.shape != (batch,) or t.is_floating_point() or t.dtype == torch.bool:
            got = f"{tuple(t.shape)} {t.dtype}" if torch.is_tensor(t) else type(t).__name__
            raise ValueError(f"{name} must be an integer tensor [B] with B={batch}, got {got}")
    if not torch.is_tensor(targets) or targets.ndim != 1 or targets.is_floating_point() or targets.dtype == torch.bool:
        got = f"{tuple(targets.shape)} {targets.dtype}" if torch.is_tensor(targets) else type(targets).__name__
        raise ValueError(f"targets must be a 1-D integer tensor (all samples' targets concatenated), got {got}")
    if not 0 <= blank < vocab:
        raise ValueError(f"blank={blank} outside the vocabulary 0..{vocab - 1}")
    if batch == 0:
        return
    if int(out_lengths.min()) < 0 or int(out_lengths.max()) > steps:
        raise ValueError(f"out_lengths must lie in 0..T={steps}, got {out_lengths.tolist()}")
    if int(target_lengths.min()) < 0 or int(target_lengths.sum()) != targets.numel():
        raise ValueError(f"target_lengths {target_lengths.tolist()} must be >= 0 and sum to len(targets)={targets.numel()}")
    bad = torch.nonzero((targets == blank) | (targets < 0) | (targets >= vocab)).flatten()
    if bad.numel():
        pos = int(bad[0])
        sample = int(torch.searchsorted(torch.cumsum(target_lengths.cpu(), 0), pos, right=True))
        start = int(target_lengths[:sample].sum())
        value = int(targets[pos])
        what = f"is the blank id {blank}" if value == blank else f"is outside the vocabulary 0..{vocab - 1}"
        raise ValueError(
            f"targets[{pos}] = {value} (sample {sample}, position {pos - start}) {what}; "
            "targets must be gloss ids, never the blank"
        )


def ctc_loss(log_probs, out_lengths, targets, target_lengths, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False):
    """torch.nn.functional.ctc_loss on batch-first log_probs, always computed in float32.

    reduction "mean": per-sample loss divided by its target length, then averaged (torch's
    convention); "sum": summed; "none": [B] float32 (not divided). Infeasible samples (fewer
    frames than min_ctc_length of the target) give inf unless zero_infinity.
    """
    _check(log_probs, out_lengths, targets, target_lengths, blank)
    # float32 even under autocast: CTC's log-sum-exp recursion loses too much in bf16/fp16
    with torch.autocast(device_type=log_probs.device.type, enabled=False):
        return F.ctc_loss(
            log_probs.float().transpose(0, 1),  # (T, B, V), torch's layout
            targets.long(), out_lengths.long(), target_lengths.long(),
            blank=blank, reduction=reduction, zero_infinity=zero_infinity,
        )


def ctc_loss_per_sample(
    log_probs, out_lengths, targets, target_lengths, blank: int = 0, normalize_by_target_length: bool = True, zero_infinity: bool = False
):
    """[B] float32 CTC losses (negative log-likelihoods).

    By default each is divided by its target length (at least 1), so .mean() equals
    ctc_loss(reduction="mean") and long sentences do not dominate; pass
    normalize_by_target_length=False for the raw negative log-likelihood per sample.
    """
    losses = ctc_loss(log_probs, out_lengths, targets, target_lengths, blank, "none", zero_infinity)
    if normalize_by_target_length:
        losses = losses / target_lengths.to(losses.device).clamp(min=1).float()
    return losses


def uniform_ctc_loss(out_lengths, targets, target_lengths, vocab_size: int, blank: int = 0, normalize_by_target_length: bool = True):
    """[B] CTC loss of a uniform prediction (log_probs = -log V on every frame), per sample.

    The loss a freshly initialised model should be close to; normalised like ctc_loss_per_sample.
    """
    steps = int(out_lengths.max()) if out_lengths.numel() else 0
    uniform = torch.full((len(out_lengths), steps, vocab_size), -math.log(vocab_size), device=out_lengths.device)
    return ctc_loss_per_sample(uniform, out_lengths, targets, target_lengths, blank, normalize_by_target_length)


def min_ctc_length(target_ids) -> int:
    """Fewest frames a CTC alignment of the target needs: its length plus one blank per adjacent repeat."""
    ids = [int(t) for t in (target_ids.tolist() if hasattr(target_ids, "tolist") else target_ids)]
    return len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))
