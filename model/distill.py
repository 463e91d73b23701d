"""Teacher -> student distillation: the loss, and the frozen teacher it is taken from.

Distillation (model/training.py compute_loss, when the configuration names a `teacher`):

    loss = CTC + distill_weight * T^2 * KL(teacher_T || student_T)

on the frame posteriors at temperature T (softmax(log_probs / T): the log-probs differ from
the logits by a per-frame constant, so tempering them is tempering the logits), averaged over
each sample's valid student frames, then over the batch like the CTC term. The teacher is
frozen: eval mode (no dropout, running batch-norm statistics), no gradient, its parameters out
of the optimizer. Where the output frame rates differ (a student with strides (2, 2, 2) against
the teacher's 4), `align_posteriors` resamples the teacher's tempered posteriors onto the
student's valid frames by linear interpolation (align_corners=False) over each sample's valid
frames only: for an integer factor 2 that is the average of each pair of teacher frames (average
pooling); upwards it interpolates between neighbouring frames. Each aligned frame is a convex
combination of teacher distributions, so it is a distribution again. With equal strides (the
default: both 4) the alignment is the identity.

The teacher is a checkpoint train.py wrote (`load_teacher`); the student is any model of the
registry (model/student.py: the small student network), or the user's own.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.masking import pad_mask
from model.registry import model_from_checkpoint_args


# ----------------------------------------------------------------------------- distillation loss


def tempered(log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(log_probs / T) over the vocabulary, in float32."""
    return F.log_softmax(log_probs.float() / temperature, dim=-1)


def align_posteriors(probs: torch.Tensor, lengths: torch.Tensor, target_lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Resample per-frame distributions onto another frame rate, per sample over valid frames.

    probs [B, T_src, V] (rows are distributions on the first lengths[b] frames), lengths [B],
    target_lengths [B] -> [B, steps, V]: sample b's first lengths[b] frames linearly interpolated
    (align_corners=False) onto target_lengths[b] frames; frames beyond are 0. Where the lengths
    already agree the frames are copied unchanged. For a factor of exactly 2 down this is the
    average of each pair of frames; every output frame is a convex combination of input frames.
    """
    batch, _, vocab = probs.shape
    out = probs.new_zeros(batch, steps, vocab)
    src, dst = lengths.tolist(), target_lengths.tolist()
    if src == dst:
        n = min(steps, probs.shape[1])
        out[:, :n] = probs[:, :n]
        return out * pad_mask(target_lengths.to(probs.device), steps)[:, :, None]
    for b, (ls, lt) in enumerate(zip(src, dst)):
        if lt < 1 or ls < 1:
            continue
        seq = probs[b, :ls].transpose(0, 1)[None]  # (1, V, ls)
        out[b, :lt] = seq[0].transpose(0, 1) if ls == lt else F.interpolate(seq, size=lt, mode="linear", align_corners=False)[0].transpose(0, 1)
    return out


def distillation_loss(student_log_probs, student_lengths, teacher_log_probs, teacher_lengths, temperature: float) -> torch.Tensor:
    """[B] float32: T^2 * KL(teacher_T || student_T) averaged over each sample's valid student frames.

    teacher_log_probs [B, T_t, V] (no gradient needed), student_log_probs [B, T_s, V]; the
    teacher's tempered posteriors are aligned onto the student's frames (align_posteriors) when
    the frame counts differ. T = 0 divides by zero (NaN): the harness's distill_loss check names it.
    """
    if teacher_log_probs.shape[-1] != student_log_probs.shape[-1]:
        raise ValueError(
            f"teacher has V={teacher_log_probs.shape[-1]} classes, the student V={student_log_probs.shape[-1]}: "
            "distillation needs the same vocabulary (ids and glosses)"
        )
    with torch.autocast(device_type=student_log_probs.device.type, enabled=False):
        s_lengths = student_lengths.to(student_log_probs.device).long()
        steps = student_log_probs.shape[1]
        log_q = tempered(student_log_probs, temperature)  # (B, T_s, V)
        p = tempered(teacher_log_probs.detach(), temperature).exp()
        p = align_posteriors(p, teacher_lengths.to(p.device).long(), s_lengths, steps)
        kl = (torch.xlogy(p, p) - p * log_q).sum(-1)  # (B, T_s): KL per frame (0 on padded frames, where p = 0)
        valid = pad_mask(s_lengths, steps).float()
        per_frame = (kl * valid).sum(1) / valid.sum(1).clamp(min=1.0)
        return per_frame * float(temperature) ** 2


def uniform_student_kl(teacher_log_probs, teacher_lengths, temperature: float) -> torch.Tensor:
    """[B]: T^2 * KL(teacher_T || uniform) averaged over the teacher's valid frames = T^2 (log V - H).

    What the distillation loss of a freshly initialised (near-uniform) student should be close to."""
    p_log = tempered(teacher_log_probs, temperature)
    entropy = -(p_log.exp() * p_log).sum(-1)  # (B, T)
    valid = pad_mask(teacher_lengths.to(p_log.device).long(), p_log.shape[1]).float()
    kl = (math.log(p_log.shape[-1]) - entropy) * valid
    return kl.sum(1) / valid.sum(1).clamp(min=1.0) * float(temperature) ** 2


# ----------------------------------------------------------------------------- the teacher


def file_digest(path) -> str:
    """sha256 of a file (a teacher checkpoint), hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Teacher:
    """A teacher checkpoint, loaded: the frozen module and what it was trained on."""

    module: nn.Module
    path: str  # resolved path of the checkpoint file
    sha256: str
    model_name: str
    model_args: dict
    vocab: list  # glosses in id order (id 1 first; 0 is the blank)
    config: dict  # the TrainConfig it was trained with (cfg.to_dict()), {} if the file holds none
    norm_stats: dict | None

    def record(self) -> dict:
        """What a student's checkpoint records of the teacher it learned from."""
        return {"path": self.path, "sha256": self.sha256, "model_name": self.model_name, "vocab": list(self.vocab)}


class TeacherLoadError(ValueError):
    """The teacher checkpoint cannot be loaded as a teacher (missing file, not weights-only, no model)."""


def load_teacher(path, device="cpu") -> Teacher:
    """Load a checkpoint train.py wrote (weights_only=True) as a frozen teacher on `device`."""
    p = Path(path)
    if not p.is_file():
        raise TeacherLoadError(f"teacher checkpoint {path} not found")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling error: name it
        raise TeacherLoadError(f"teacher checkpoint {path} does not load with torch.load(weights_only=True): {type(exc).__name__}: {exc}") from None
    missing = [k for k in ("model_name", "model_args", "model", "vocab") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise TeacherLoadError(f"teacher checkpoint {path} lacks {missing}: expected a checkpoint written by train.py (last.pt / best.pt)")
    try:
        module = model_from_checkpoint_args(ckpt["model_name"], dict(ckpt["model_args"]))
        module.load_state_dict(ckpt["model"])
    except Exception as exc:  # noqa: BLE001
        raise TeacherLoadError(f"teacher checkpoint {path}: model {ckpt['model_name']!r} does not rebuild from its model_args: {type(exc).__name__}: {exc}") from None
    module = freeze_teacher(module.to(device))
    return Teacher(module, str(p.resolve()), file_digest(p), str(ckpt["model_name"]), dict(ckpt["model_args"]), list(ckpt["vocab"]),
                   dict(ckpt.get("config") or {}), ckpt.get("norm_stats"))


def freeze_teacher(module: nn.Module) -> nn.Module:
    """Eval mode (no dropout, running batch-norm statistics) and no gradient for any parameter.
    Applied every time the teacher is used, so nothing that toggles modes in between unfreezes it."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def teacher_posteriors(module: nn.Module, features: torch.Tensor, lengths: torch.Tensor):
    """The frozen teacher's (log_probs [B, T_t, V], out_lengths [B]) for a model input, without grad."""
    module = freeze_teacher(module)
    with torch.no_grad():
        return module(features, lengths)
