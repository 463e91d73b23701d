"""The student: a small, fast CTC network, distilled from the I3D teacher by model/distill.py.

The student, `create_model("student", vocab_size=..., modalities=...)`, is a depthwise-separable
temporal conv net (the model family of on-device keyword spotters and sign recognisers that run
beside MediaPipe in a phone or a browser):

    x [B, T, F] -> modality fusion (per modality LayerNorm + Linear, concat, Linear)   [B, T, hidden]
      -> strided depthwise-separable convs (strides (2, 2))                           [B, hidden, T/4]
      -> residual depthwise-separable blocks, dilations (1, 2, 4, ...)                [B, hidden, T/4]
      -> Linear classifier, log_softmax                                               [B, T/4, V]

It keeps the model contract of the teacher (model/components.py: CTCModel): log-softmax over
V = vocab_size with the blank at 0, `output_lengths(lengths)` exact (ceil(L / 2) per strided
conv), and padding never leaks: padded frames are zeroed after the fusion (every fusion op is per
frame, so the 6516-wide input is not copied just to mask it; collate pads with zeros) and after
every conv layer, the convolutions' "same" zero padding then sees the same zeros alone and in a
padded batch,
and the norms count valid frames only (model.i3d.MaskedBatchNorm1d: batch statistics of the
valid frames in training, running statistics in eval). No recurrence: every layer is a
convolution over time, which is what makes it fast on a CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from data.layout import MODALITIES, input_dim, modality_widths, parse_modalities
from model.i3d import NORM_LAYERS, check_inputs, conv_output_lengths
from model.masking import pad_mask


@dataclass
class StudentConfig:
    """Constructor arguments of StudentTCN; dataclasses.asdict() of it is a checkpoint's model_args."""

    vocab_size: int = 1296  # 1295 PHOENIX-2014 glosses + CTC blank (id 0), as I3DConfig
    modalities: tuple = MODALITIES
    modality_dim: int = 32  # per-modality projection width (the teacher's is 128)
    hidden: int = 192  # channels of every conv layer
    strides: tuple = (2, 2)  # the strided depthwise-separable convs; total stride = product (the teacher's is 4)
    dilations: tuple = (1, 2, 4, 1, 2, 4)  # one residual block per entry, at the output frame rate
    kernel_size: int = 5  # depthwise kernel (odd: "same" length arithmetic)
    dropout: float = 0.1
    norm: str = "batch"  # conv normalisation over valid frames, as I3DConfig.norm

    def __post_init__(self):
        self.modalities = parse_modalities(self.modalities)
        self.strides = tuple(int(s) for s in self.strides)
        self.dilations = tuple(int(d) for d in self.dilations)
        problems = []
        if self.vocab_size < 2:
            problems.append(f"vocab_size={self.vocab_size} (needs the blank plus at least one gloss)")
        for name in ("modality_dim", "hidden"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be >= 1)")
        if not self.strides or any(s < 1 for s in self.strides):
            problems.append(f"strides={self.strides} (one or more strides >= 1)")
        if any(d < 1 for d in self.dilations):
            problems.append(f"dilations={self.dilations} (each >= 1)")
        if self.kernel_size < 1 or self.kernel_size % 2 != 1:
            problems.append(f"kernel_size={self.kernel_size} (odd, >= 1: 'same' padding)")
        if self.norm not in NORM_LAYERS:
            problems.append(f"norm={self.norm!r} (one of {sorted(NORM_LAYERS)})")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout} (must be in [0, 1))")
        if problems:
            raise ValueError("invalid StudentConfig: " + "; ".join(problems))

    @property
    def temporal_stride(self) -> int:
        return math.prod(self.strides)


class StudentFusion(nn.Module):
    """Per modality a Linear to modality_dim then a LayerNorm over those few channels, concatenated
    and mixed to `out_dim`: forward(x [B, T, F]) -> [B, T, out_dim], every op per frame.

    The teacher's ModalityFusion normalises each modality's raw columns before projecting them;
    here the LayerNorm comes after the projection (modality_dim wide, not up to 4887), which keeps
    every modality on the same scale (the face block, 86% of the raw values, cannot swamp the
    hands) for a fraction of the cost. Parameters are named fusion.proj.<modality>, as the
    teacher's, which the harness's gradient and modality checks read.
    """

    def __init__(self, modalities, modality_dim: int, out_dim: int, dropout: float):
        super().__init__()
        widths = modality_widths(modalities)
        self.slices, start = {}, 0
        for name, width in widths.items():  # layout order: the dataset slices columns the same way
            self.slices[name] = slice(start, start + width)
            start += width
        self.proj = nn.ModuleDict({name: nn.Sequential(nn.Linear(width, modality_dim), nn.LayerNorm(modality_dim)) for name, width in widths.items()})
        self.mix = nn.Sequential(nn.GELU(), nn.Linear(len(widths) * modality_dim, out_dim), nn.LayerNorm(out_dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x):
        parts = [self.proj[name](x[..., sl]) for name, sl in self.slices.items()]  # each (B, T, modality_dim)
        return self.mix(torch.cat(parts, dim=-1))


class DepthwiseSeparableConv1d(nn.Module):
    """Depthwise conv over time (one filter a channel, "same" padding, optional stride/dilation)
    -> norm over valid frames -> GELU -> pointwise 1x1 conv -> norm -> zero padded frames.

    forward(x [B, C_in, T], lengths [B]) -> (y [B, C_out, T'], out_lengths [B]); T' = ceil(T / stride).
    x must be 0 on padded frames (every layer here leaves them so). Only the output is masked:
    the pointwise conv is per frame and the norms count valid frames only, so what the padded
    frames hold in between never reaches a valid one.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1, norm: str = "batch"):
        super().__init__()
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.padding = dilation * (kernel_size // 2)
        self.depthwise = nn.Conv1d(in_channels, in_channels, kernel_size, stride, self.padding, dilation=dilation, groups=in_channels, bias=False)
        self.norm1 = NORM_LAYERS[norm](in_channels)
        self.pointwise = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.norm2 = NORM_LAYERS[norm](out_channels)
        self.act = nn.GELU()

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        # floor((L + 2p - d (k - 1) - 1) / s) + 1 with p = d (k // 2): ceil(L / s)
        return conv_output_lengths(lengths, self.dilation * (self.kernel_size - 1) + 1, self.stride, self.padding)

    def forward(self, x, lengths):
        y = self.depthwise(x)
        out_lengths = self.output_lengths(lengths)
        mask = pad_mask(out_lengths, y.shape[-1])[:, None, :]  # (B, 1, T')
        y = self.norm2(self.pointwise(self.act(self.norm1(y, mask))), mask)
        return y.masked_fill(~mask, 0.0), out_lengths


class ResidualDSBlock(nn.Module):
    """GELU(x + dropout(DSConv(x))) at stride 1; padded frames stay 0 (both terms are 0 there, GELU(0) = 0)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float, norm: str):
        super().__init__()
        self.conv = DepthwiseSeparableConv1d(channels, channels, kernel_size, 1, dilation, norm)
        self.dropout = nn.Dropout(dropout)
        self.act = nn.GELU()

    def output_lengths(self, lengths):
        return lengths

    def forward(self, x, lengths):
        y, _ = self.conv(x, lengths)
        return self.act(x + self.dropout(y)), lengths


class StudentTCN(nn.Module):
    """forward(x [B, T, F] float, lengths [B] long) -> (log_probs [B, T', V] float, out_lengths [B] long).

    F = data.layout.input_dim(config.modalities); T' = output_lengths(T) = ceil(T / 2) per stride 2.
    log_probs are a log_softmax over V = config.vocab_size (blank = 0). Frames of a sample at or
    beyond its out_length are padding.
    """

    config_class = StudentConfig

    def __init__(self, config: StudentConfig | None = None):
        super().__init__()
        self.config = config = config or StudentConfig()
        self.input_dim = input_dim(config.modalities)
        self.fusion = StudentFusion(config.modalities, config.modality_dim, config.hidden, config.dropout)
        self.downsample = nn.ModuleList(
            DepthwiseSeparableConv1d(config.hidden, config.hidden, config.kernel_size, s, 1, config.norm) for s in config.strides
        )
        self.blocks = nn.ModuleList(ResidualDSBlock(config.hidden, config.kernel_size, d, config.dropout, config.norm) for d in config.dilations)
        self.head_dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden, config.vocab_size)
        # near-uniform predictions at init, as the teacher (the harness's loss_at_init checks it)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    @property
    def temporal_stride(self) -> int:
        return self.config.temporal_stride

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Exact frame count after the strided convs: [B] long -> [B] long."""
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        for layer in self.downsample:
            lengths = layer.output_lengths(lengths)
        return lengths

    def forward_features(self, x, lengths):
        """(x [B, T, F], lengths [B]) -> (feats [B, T', hidden], out_lengths [B]); padded frames are 0."""
        check_inputs(self, x, lengths)
        lengths = lengths.long()
        # every fusion op is per frame, so masking its output is enough: padded frames contribute
        # nothing and their input receives exactly zero gradient (no copy of the wide input)
        h = self.fusion(x)  # (B, T, hidden)
        h = h.masked_fill(~pad_mask(lengths, h.shape[1])[:, :, None], 0.0).transpose(1, 2)  # (B, hidden, T)
        for layer in self.downsample:
            h, lengths = layer(h, lengths)
        for block in self.blocks:
            h, lengths = block(h, lengths)
        return h.transpose(1, 2), lengths  # (B, T', hidden)

    def forward_head(self, feats):
        return self.classifier(self.head_dropout(feats))

    def forward(self, x, lengths):
        feats, out_lengths = self.forward_features(x, lengths)
        return F.log_softmax(self.forward_head(feats), dim=-1), out_lengths
