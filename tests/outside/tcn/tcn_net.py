"""A stride-2 temporal convolutional network for CTC (user code, torch only).

    input [B, T, F] (zero-padded by the collate function)
    (input_linear=True: Linear(F, F) with bias first, a learned input mixing)
    conv0: Conv1d(F, C, 5, stride 2, padding 2) + ReLU          T -> ceil(T / 2)
    4 residual blocks: dilated Conv1d(C, C, 3) + per-frame LayerNorm + ReLU + dropout
    Linear -> log_softmax

Padding: conv0 is not masked. It does not need to be: the padded input frames are 0, which is
exactly what the conv's own zero padding would add, so a sample alone and in a padded batch
give the same output. Every later layer is masked (padded output frames set to 0 before the
next conv, since conv0's bias makes them non-zero). With input_linear=True the Linear's bias
makes the padded input frames non-zero before conv0 as well, and the last valid output frames
of a short sample see them.
"""
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, channels, dilation, dropout):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.norm = nn.LayerNorm(channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, h, mask):  # h [B, C, T], mask [B, 1, T]
        y = self.norm(self.conv(h).transpose(1, 2)).transpose(1, 2)
        return (h + self.drop(F.relu(y))) * mask


class TCN(nn.Module):
    def __init__(self, vocab_size, input_dim, channels=192, dilations=(1, 2, 4, 8), dropout=0.1, input_linear=False):
        super().__init__()
        self.pre = nn.Linear(input_dim, input_dim) if input_linear else None
        self.conv0 = nn.Conv1d(input_dim, channels, 5, stride=2, padding=2)
        self.blocks = nn.ModuleList(Block(channels, d, dropout) for d in dilations)
        self.out = nn.Linear(channels, vocab_size)

    def output_lengths(self, lengths):
        return (torch.as_tensor(lengths, dtype=torch.long) - 1) // 2 + 1

    def forward(self, x, lengths):
        if self.pre is not None:
            x = self.pre(x)
        h = F.relu(self.conv0(x.transpose(1, 2)))  # not masked: see the module docstring
        out_lengths = self.output_lengths(lengths).to(x.device)
        mask = (torch.arange(h.shape[-1], device=x.device)[None, :] < out_lengths[:, None]).unsqueeze(1).to(h.dtype)
        h = h * mask
        for block in self.blocks:
            h = block(h, mask)
        return F.log_softmax(self.out(h.transpose(1, 2)), dim=-1), out_lengths


def make_tcn(vocab_size, input_dim, **overrides):
    return TCN(vocab_size, input_dim, **overrides)
