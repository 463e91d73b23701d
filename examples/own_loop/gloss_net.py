"""Landmarks -> gloss log-probabilities (torch only).

    per-frame MLP (2 x Linear + ReLU), padded frames set to 0
    -> Conv1d(kernel 3, stride 2): half the frame rate
    -> BiGRU over the packed sequence (padded frames never enter)
    -> Linear(V) -> log_softmax

forward returns [T', B, V], the layout nn.CTCLoss takes, and no lengths: T' = ceil(T / 2), and
output_lengths(lengths) gives each clip's.
"""
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class GlossNet(nn.Module):
    def __init__(self, num_classes: int, input_dim: int, hidden: int = 96):
        super().__init__()
        self.frame = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.down = nn.Conv1d(hidden, hidden, kernel_size=3, stride=2, padding=1)
        self.gru = nn.GRU(hidden, hidden // 2, bidirectional=True)
        self.head = nn.Linear(hidden, num_classes)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return (lengths + 1) // 2  # the stride-2 convolution's output frames

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]
        h = self.frame(x) * valid[..., None]  # [B, T, H]; padded frames 0, as past a clip's own end
        h = self.down(h.transpose(1, 2)).transpose(1, 2)  # [B, T', H]
        packed = pack_padded_sequence(h, self.output_lengths(lengths).cpu(), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.gru(packed)[0], total_length=h.shape[1])  # [T', B, H]
        return self.head(h).log_softmax(-1)  # [T', B, V]


def make_model(num_classes: int, input_dim: int, **options) -> GlossNet:
    return GlossNet(num_classes, input_dim, **options)
