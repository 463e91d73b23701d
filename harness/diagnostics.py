"""Diagnostics train.py prints or saves: first-batch statistics and non-finite post-mortems."""
from __future__ import annotations

from pathlib import Path

import torch

from data.dataset import Batch
from data.layout import modality_widths
from harness.checks.model import losses_at_init
from harness.probes import first_nonfinite_module
from model.masking import pad_mask


def modality_summary(batch: Batch, modalities) -> list[tuple]:
    """(modality, width, mean, std, min, max) over the valid (unpadded) frames of a batch."""
    valid = pad_mask(batch.lengths, batch.features.shape[1])
    x = batch.features[valid].float()  # (frames, F)
    rows, start = [], 0
    widths = modality_widths(modalities) if modalities is not None else {"all": x.shape[1]}  # None: not the layout
    for name, width in widths.items():
        block = x[:, start : start + width]
        start += width
        rows.append((name, width, float(block.mean()), float(block.std()), float(block.min()), float(block.max())))
    return rows


def first_batch_report(model, batch: Batch, modalities, vocab_size: int) -> str:
    """Features after normalization by modality, loss at init, output vs target lengths."""
    lines = [f"first batch {batch.ids} (normalization: {batch.normalization})", "  modality   width      mean       std       min       max"]
    for name, width, mean, std, lo, hi in modality_summary(batch, modalities):
        lines.append(f"  {name:<9} {width:>6} {mean:>9.3f} {std:>9.3f} {lo:>9.3f} {hi:>9.3f}")
    was_training = model.training
    loss, uniform, out_lengths = losses_at_init(model, batch, vocab_size)  # what check_loss_at_init judges
    model.train(was_training)
    lines.append(f"  loss at init {float(loss.mean()):.3f} (uniform prediction {float(uniform.mean()):.3f})")
    lines.append(f"  output lengths {out_lengths.tolist()} vs target lengths {batch.target_lengths.tolist()}")
    return "\n".join(lines)


def save_nonfinite_batch(path, model, batch: Batch, model_name: str, model_args: dict, step: int, epoch: int, config: dict) -> str:
    """Save the batch and model state that produced a non-finite value, for `pytest --replay`.

    Returns a one-line diagnosis: the first module whose output became non-finite and the samples.
    """
    from data.corpus import atomic_write

    module = first_nonfinite_module(model, batch.features, batch.lengths)
    payload = {
        "features": batch.features.detach().cpu(),
        "lengths": batch.lengths.cpu(),
        "targets": batch.targets.cpu(),
        "target_lengths": batch.target_lengths.cpu(),
        "ids": list(batch.ids),
        "normalization": batch.normalization,
        "model_name": model_name,
        "model_args": model_args,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": step,
        "epoch": epoch,
        "config": config,
    }
    atomic_write(Path(path), lambda f: torch.save(payload, f))
    nonfinite_in = [batch.ids[i] for i in range(len(batch)) if not torch.isfinite(batch.features[i]).all()]
    where = f"first non-finite output at module '{module[0]}' ({module[1]})" if module else "forward is finite; the loss or backward pass is not"
    inputs = f"; non-finite input features in {nonfinite_in}" if nonfinite_in else ""
    return f"{where}{inputs}; batch {list(batch.ids)} saved to {path}"
