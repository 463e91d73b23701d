"""Faults of the model and the training loop: the head and its output lengths, masking and
packing, a dead fusion branch, the learning rate, the decoder's blank, a CTC loss that zeroes
infinities, and the loop's own steps between loader and model (configured as batch_transform)."""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable
from unittest import mock

import torch
import torch.nn.functional as F

from harness.faults.base import patched
from harness.faults.data import truncate_samples
from model.decode import Hypothesis, greedy_decode
from model.i3d import I3DTeacher, ModalityFusion
from model.masking import pad_mask


# ----------------------------------------------------------------------------- the training loop's steps


def per_sample_zscore(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The incident's training-loop step, as a batch_transform: per sample one mean and std over
    (time, features) of the zero-padded batch, x <- (x - mean) / (std + 1e-6). [B, T, F] float32."""
    return (features - features.mean(dim=(1, 2), keepdim=True)) / (features.std(dim=(1, 2), keepdim=True) + 1e-6)


# the incident's second normalization, configured as the user's loop would have it
LOOP_ZSCORE = "harness.faults:per_sample_zscore"


def inverted_padding_mask(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A loop step meant to zero the padded frames, with the comparison the wrong way round:
    it zeroes every valid frame and keeps the (zero) padding. [B, T, F] -> [B, T, F]."""
    keep = ~pad_mask(lengths, features.shape[1])
    return features * keep.unsqueeze(-1)


@contextlib.contextmanager
def blank_plateau(setup):
    yield dataclasses.replace(setup, cfg=setup.cfg.replace(batch_transform="harness.faults:inverted_padding_mask"))


@contextlib.contextmanager
def double_normalization(setup):
    yield dataclasses.replace(setup, cfg=setup.cfg.replace(batch_transform=LOOP_ZSCORE))


# ----------------------------------------------------------------------------- the model


def forward_returning(head: Callable):
    """Patch I3DTeacher.forward: head(model, logits, out_lengths, input lengths) -> outputs."""

    def forward(self, x, lengths):
        feats, out_lengths = self.forward_features(x, lengths)
        return head(self, self.forward_head(feats), out_lengths, lengths)

    return mock.patch.object(I3DTeacher, "forward", forward)


@contextlib.contextmanager
def raw_logits(setup):
    with patched(setup, forward_returning(lambda m, logits, out, inp: (logits, out))):
        yield setup


@contextlib.contextmanager
def lengths_not_strided(setup):
    with patched(setup, forward_returning(lambda m, logits, out, inp: (F.log_softmax(logits, -1), inp.long()))):
        yield setup


@contextlib.contextmanager
def log_softmax_over_time(setup):
    with patched(setup, forward_returning(lambda m, logits, out, inp: (F.log_softmax(logits, dim=1), out))):
        yield setup


@contextlib.contextmanager
def masking_disabled(setup):
    def every_frame_valid(lengths, steps):
        return torch.ones(len(lengths), steps, dtype=torch.bool, device=lengths.device)  # pad_mask's [B, steps], all true

    with patched(setup, mock.patch("model.i3d.pad_mask", every_frame_valid), mock.patch("model.student.pad_mask", every_frame_valid)):
        yield setup


@contextlib.contextmanager
def lstm_not_packed(setup):
    # the BiLSTM runs over the zero-padded tensor: its backward direction starts in the padding
    pack = mock.patch("model.i3d.pack_padded_sequence", lambda h, lengths, batch_first, enforce_sorted: h)
    unpack = mock.patch("model.i3d.pad_packed_sequence", lambda out, batch_first, total_length: (out, None))
    with patched(setup, pack, unpack):
        yield setup


@contextlib.contextmanager
def dead_branch(setup, modality: str = "hands"):
    def forward(self, x):
        parts = [self.proj[name](x[..., sl]) for name, sl in self.slices.items()]
        parts = [p.detach() if name == modality else p for name, p in zip(self.slices, parts)]
        return self.mix(torch.cat(parts, dim=-1))

    with patched(setup, mock.patch.object(ModalityFusion, "forward", forward)):
        yield setup


# ----------------------------------------------------------------------------- optimisation, loss and decoding


@contextlib.contextmanager
def lr_100x(setup):
    yield dataclasses.replace(setup, cfg=setup.cfg.replace(lr=setup.cfg.lr * 100))


def blank_last_decode(log_probs, out_lengths, beam_width: int = 1) -> list[Hypothesis]:
    """A decoder written for a blank-last model (blank = V-1, gloss k at id k-1), mapping its ids
    back with +1: the true blank 0 becomes gloss 1 and every gloss id shifts by one."""
    vocab = log_probs.shape[-1]
    out = []
    for h in greedy_decode(log_probs, out_lengths, blank=vocab - 1):
        out.append(Hypothesis([t + 1 for t in h.tokens], h.score, h.timesteps))
    return out


@contextlib.contextmanager
def decoder_blank_mismatch(setup):
    with patched(setup, mock.patch("model.training.decode", blank_last_decode)):
        yield setup


@contextlib.contextmanager
def zero_infinity(setup):
    truncate_samples(setup)
    import model.ctc as ctc

    original = ctc.ctc_loss

    def ctc_loss(log_probs, out_lengths, targets, target_lengths, blank=0, reduction="mean", zero_infinity=False):
        return original(log_probs, out_lengths, targets, target_lengths, blank, reduction, zero_infinity=True)

    with patched(setup, mock.patch("model.ctc.ctc_loss", ctc_loss)):
        yield setup
