"""My model: a small Transformer encoder for CTC.

Linear in -> Conv1d subsampling (stride 2, halves the frames) -> sinusoidal positions ->
nn.TransformerEncoder (2 layers, batch_first) with a key padding mask -> Linear -> log_softmax.

key_padding_mask (model_overrides):
    "pad"      True marks padding, the PyTorch convention (the default)
    "inverted" True marks the real frames (the Hugging Face attention_mask convention, mixed up)
    "none"     no mask: attention also looks at the padded frames
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SignTransformer(nn.Module):
    def __init__(self, vocab_size, input_dim, d_model=128, nhead=4, num_layers=2, ff=256, dropout=0.1, key_padding_mask="pad"):
        super().__init__()
        assert key_padding_mask in ("pad", "inverted", "none")
        self.key_padding_mask = key_padding_mask
        self.d_model = d_model
        self.input_proj = nn.Linear(input_dim, d_model)
        self.subsample = nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1)
        layer = nn.TransformerEncoderLayer(d_model=d_model, nhead=nhead, dim_feedforward=ff, dropout=dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers)
        self.head = nn.Linear(d_model, vocab_size)

    def output_lengths(self, lengths):
        return (lengths - 1) // 2 + 1

    def positions(self, n, device):
        pos = torch.arange(n, device=device).float()[:, None]
        div = torch.exp(torch.arange(0, self.d_model, 2, device=device).float() * (-math.log(10000.0) / self.d_model))
        pe = torch.zeros(n, self.d_model, device=device)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        return pe

    def forward(self, x, lengths):
        lengths = lengths.to(x.device)
        padding = torch.arange(x.shape[1], device=x.device)[None, :] >= lengths[:, None]
        h = self.input_proj(x).masked_fill(padding[:, :, None], 0.0)  # don't let the conv see padding
        h = F.relu(self.subsample(h.transpose(1, 2))).transpose(1, 2)
        out_lengths = self.output_lengths(lengths)
        h = h + self.positions(h.shape[1], x.device)
        padding = torch.arange(h.shape[1], device=x.device)[None, :] >= out_lengths[:, None]
        if self.key_padding_mask == "pad":
            h = self.encoder(h, src_key_padding_mask=padding)
        elif self.key_padding_mask == "inverted":
            h = self.encoder(h, src_key_padding_mask=~padding)
        else:
            h = self.encoder(h)
        return F.log_softmax(self.head(h), dim=-1), out_lengths


def build_model(vocab_size, input_dim, **kwargs):
    return SignTransformer(vocab_size, input_dim, **kwargs)
