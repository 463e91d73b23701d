"""One training step: CTC on the model's [T', B, V] output, the blank being the last class
(the last line of vocab.txt), gradient clipping, and a stop on a non-finite loss."""
import torch
from torch import nn

CLIP = 1.0  # max global gradient norm


def train_step(model, batch, optimizer, guard=None):
    """zero_grad, forward, CTC loss, backward, clip, optimizer.step(); returns the loss.

    With a harness guard, the guard judges the loss and the gradients before the optimizer
    step (and stops with its diagnosis); without one, a non-finite loss raises FloatingPointError."""
    optimizer.zero_grad()
    log_probs = model(batch["x"], batch["lengths"])  # [T', B, V]
    ctc = nn.CTCLoss(blank=log_probs.shape[-1] - 1)
    loss = ctc(log_probs, batch["label_ids"], model.output_lengths(batch["lengths"]), batch["target_lengths"])
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    if guard is not None and not guard.step(batch, loss):
        return loss.detach()  # a guard made with on_nonfinite="skip": the step is skipped
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()} on clips {batch['video_id']}")
    optimizer.step()
    return loss.detach()
