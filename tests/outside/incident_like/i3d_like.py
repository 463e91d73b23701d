"""I3D-style teacher for CTC over 6516 MediaPipe features a frame (user code, torch only).

    clamp(-100, 100)
    modality fusion: Linear per modality (pose, hands, face; position + motion columns) -> concat -> Linear 512
    stem: Conv1d(512, 384, 7) + GroupNorm(8) + ReLU + MaxPool1d(3, stride 2)        T -> ceil(T / 2)
    inception blocks (I3D "Mixed"): 1x1 | 1x1-3 | 1x1-5 | maxpool3-1x1, concatenated, GroupNorm + ReLU
    F.interpolate back to the padded length T
    BiLSTM (2 layers, 256 a direction) -> dropout -> Linear -> log_softmax

output_lengths(lengths) = lengths (the interpolation restores the frame rate).

pad_safe=True (model_overrides) is the padding-safe version of the same network: padded frames
are zeroed after every temporal op (-inf before max pooling), a per-frame LayerNorm over the
channels replaces GroupNorm (whose statistics span time, padded frames included), the upsampling
is a x2 nearest repeat cropped to T (a linear interpolation to the padded length changes with
the batch's padding), and the LSTM input is packed. group_norm=True keeps GroupNorm in it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RAW = 1629
BLOCKS = 4
MODALITY_COLUMNS = {"pose": (0, 99), "hands": (99, 225), "face": (225, 1629)}


def modality_index(name):
    lo, hi = MODALITY_COLUMNS[name]
    return torch.tensor([b * RAW + c for b in range(BLOCKS) for c in range(lo, hi)])


def valid_mask(lengths, t, device):
    return torch.arange(t, device=device)[None, :] < lengths.to(device)[:, None]  # [B, T]


class Norm(nn.Module):
    """GroupNorm over (channels, time), or a per-frame LayerNorm over channels when pad_safe
    (group_norm=True keeps GroupNorm in the pad-safe network)."""

    def __init__(self, channels, pad_safe, group_norm=None):
        super().__init__()
        self.per_frame = pad_safe if group_norm is None else not group_norm
        self.norm = nn.LayerNorm(channels) if self.per_frame else nn.GroupNorm(8, channels)

    def forward(self, x):  # [B, C, T]
        if self.per_frame:
            return self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.norm(x)


class Inception(nn.Module):
    def __init__(self, c_in, b1, b3r, b3, b5r, b5, bp, pad_safe, group_norm=None):
        super().__init__()
        self.pad_safe = pad_safe
        self.branch1 = nn.Conv1d(c_in, b1, 1)
        self.branch3 = nn.Sequential(nn.Conv1d(c_in, b3r, 1), nn.ReLU(), nn.Conv1d(b3r, b3, 3, padding=1))
        self.branch5 = nn.Sequential(nn.Conv1d(c_in, b5r, 1), nn.ReLU(), nn.Conv1d(b5r, b5, 5, padding=2))
        self.pool_proj = nn.Conv1d(c_in, bp, 1)
        self.out_channels = b1 + b3 + b5 + bp
        self.norm = Norm(self.out_channels, pad_safe, group_norm)

    def forward(self, x, mask):  # x [B, C, T], mask [B, 1, T]
        if self.pad_safe:
            pooled = F.max_pool1d(x.masked_fill(~mask, float("-inf")), 3, stride=1, padding=1).masked_fill(~mask, 0.0)
            b3 = self.branch3[2](F.relu(self.branch3[0](x)) * mask)
            b5 = self.branch5[2](F.relu(self.branch5[0](x)) * mask)
        else:
            pooled = F.max_pool1d(x, 3, stride=1, padding=1)
            b3, b5 = self.branch3(x), self.branch5(x)
        y = torch.cat([self.branch1(x), b3, b5, self.pool_proj(pooled)], dim=1)
        y = F.relu(self.norm(y))
        return y * mask if self.pad_safe else y


class I3DTeacher(nn.Module):
    def __init__(self, vocab_size, input_dim=6516, fusion_dim=512, stem_dim=384, lstm_hidden=256, lstm_layers=2, dropout=0.1, pad_safe=False, group_norm=None):
        super().__init__()
        if input_dim != BLOCKS * RAW:
            raise ValueError(f"expects {BLOCKS * RAW} features a frame, got {input_dim}")
        self.pad_safe = pad_safe
        self.modalities = nn.ModuleDict()
        widths = {"pose": 128, "hands": 256, "face": 256}
        for name, width in widths.items():
            self.register_buffer(f"idx_{name}", modality_index(name), persistent=False)
            self.modalities[name] = nn.Linear(len(getattr(self, f"idx_{name}")), width)
        self.fusion = nn.Linear(sum(widths.values()), fusion_dim)
        self.stem_conv = nn.Conv1d(fusion_dim, stem_dim, 7, padding=3)
        self.stem_norm = Norm(stem_dim, pad_safe, group_norm)
        self.blocks = nn.ModuleList()
        c = stem_dim
        for spec in [(128, 128, 192, 32, 96, 64), (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64)]:
            block = Inception(c, *spec, pad_safe=pad_safe, group_norm=group_norm)
            self.blocks.append(block)
            c = block.out_channels
        self.lstm = nn.LSTM(c, lstm_hidden, num_layers=lstm_layers, batch_first=True, bidirectional=True, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * lstm_hidden, vocab_size)

    def output_lengths(self, lengths):
        return torch.as_tensor(lengths, dtype=torch.long)

    def forward(self, features, lengths):
        x = features.clamp(-100, 100)
        b, t, _ = x.shape
        lengths = lengths.to(x.device)
        fused = torch.cat([F.relu(layer(x[:, :, getattr(self, f"idx_{name}")])) for name, layer in self.modalities.items()], dim=-1)
        h = F.relu(self.fusion(fused)).transpose(1, 2)  # [B, C, T]
        mask = valid_mask(lengths, t, x.device)[:, None, :]
        if self.pad_safe:
            h = h * mask
        h = F.relu(self.stem_norm(self.stem_conv(h)))
        half_lengths = (lengths + 1) // 2
        if self.pad_safe:
            h = h.masked_fill(~mask, float("-inf"))
            h = F.max_pool1d(h, 3, stride=2, padding=1)
            mask = valid_mask(half_lengths, h.shape[-1], x.device)[:, None, :]
            h = h.masked_fill(~mask, 0.0)
        else:
            h = F.max_pool1d(h, 3, stride=2, padding=1)
        for block in self.blocks:
            h = block(h, mask)
        if self.pad_safe:
            h = F.interpolate(h, scale_factor=2, mode="nearest")[:, :, :t]
        else:
            h = F.interpolate(h, size=t, mode="linear", align_corners=False)
        h = h.transpose(1, 2)  # [B, T, C]
        out_lengths = self.output_lengths(lengths).to(x.device)
        if self.pad_safe:
            packed = pack_padded_sequence(h, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
            h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=t)
        else:
            h, _ = self.lstm(h)
        logits = self.classifier(self.dropout(h))
        return F.log_softmax(logits, dim=-1), out_lengths


def make_model(vocab_size, input_dim, **overrides):
    return I3DTeacher(vocab_size, input_dim, **overrides)
