"""The user's own small "I3D-style teacher" for CTC (no project code).

Per frame: LayerNorm over the features, Linear fusion, GELU; padded frames masked to 0; a
temporal Conv1d stem with stride 2 (kernel 5, padding 2); a packed BiLSTM; a Linear classifier
and log_softmax over vocab_size classes (blank 0). Output frames: ceil(T / 2).

The per-frame LayerNorm over the features makes the model invariant to any per-sample affine
map x -> a * x + b with a > 0 (up to LayerNorm's eps), which is what a per-sample z-score is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class TinyI3DTeacher(nn.Module):
    def __init__(self, vocab_size: int, input_dim: int, fusion_dim: int = 48, hidden: int = 64, kernel: int = 5, stride: int = 2, dropout: float = 0.1, input_norm: bool = True):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, kernel // 2
        # input_norm=False (model_overrides) drops it: the model then sees the per-sample z-score
        self.norm = nn.LayerNorm(input_dim) if input_norm else nn.Identity()
        self.fusion = nn.Linear(input_dim, fusion_dim)
        self.stem = nn.Conv1d(fusion_dim, hidden, kernel_size=kernel, stride=stride, padding=self.padding)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden, vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        return (lengths + 2 * self.padding - self.kernel) // self.stride + 1

    def forward(self, features: torch.Tensor, lengths: torch.Tensor):
        t = features.shape[1]
        mask = (torch.arange(t, device=features.device)[None] < lengths.to(features.device)[:, None]).unsqueeze(-1)
        h = F.gelu(self.fusion(self.norm(features)))
        h = h.masked_fill(~mask, 0.0)  # padded frames must not reach the conv
        h = F.gelu(self.stem(h.transpose(1, 2))).transpose(1, 2)
        out_lengths = self.output_lengths(lengths).to(features.device)
        packed = pack_padded_sequence(h, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=h.shape[1])
        logits = self.classifier(self.dropout(h))
        return F.log_softmax(logits, dim=-1), out_lengths


def make_model(vocab_size: int, input_dim: int, **overrides) -> nn.Module:
    return TinyI3DTeacher(vocab_size, input_dim, **overrides)
