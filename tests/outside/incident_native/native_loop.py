"""One training step (user code): CTC on the [T, B, V] output, gradient clipping, and a batch
with a non-finite loss skipped. The blank is the last class (the last line of vocab.txt)."""
import torch
from torch import nn

CLIP = 1.0


def _ctc(num_classes):
    return nn.CTCLoss(blank=num_classes - 1, zero_infinity=True)


def train_step(model, batch, optimizer):
    features, lengths, labels, label_lengths, _ = batch
    optimizer.zero_grad()
    log_probs = model(features, lengths)  # [T, B, V]
    loss = _ctc(log_probs.shape[-1])(log_probs, labels, lengths, label_lengths)
    if not torch.isfinite(loss):
        return loss  # skip the batch
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    optimizer.step()
    return loss


def train_step_stop(model, batch, optimizer):
    """As train_step, but a non-finite loss stops training with the batch's video ids."""
    features, lengths, labels, label_lengths, ids = batch
    optimizer.zero_grad()
    log_probs = model(features, lengths)
    loss = _ctc(log_probs.shape[-1])(log_probs, labels, lengths, label_lengths)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()} on videos {ids}")
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    optimizer.step()
    return loss


def train_step_no_zero_grad(model, batch, optimizer):
    """As train_step without optimizer.zero_grad()."""
    features, lengths, labels, label_lengths, _ = batch
    log_probs = model(features, lengths)
    loss = _ctc(log_probs.shape[-1])(log_probs, labels, lengths, label_lengths)
    if not torch.isfinite(loss):
        return loss
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    optimizer.step()
    return loss


def train_step_batch_first(model, batch, optimizer):
    """As train_step, with the output made batch first before the loss."""
    features, lengths, labels, label_lengths, _ = batch
    optimizer.zero_grad()
    log_probs = model(features, lengths).transpose(0, 1)  # [B, T, V]
    loss = _ctc(log_probs.shape[-1])(log_probs, labels, lengths, label_lengths)
    if not torch.isfinite(loss):
        return loss
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    optimizer.step()
    return loss
