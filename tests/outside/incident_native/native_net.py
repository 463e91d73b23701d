"""Keypoints -> gloss log-probabilities, [T, B, V] as nn.CTCLoss takes them (user code, torch only).

    Linear(150, hidden) + ReLU -> BiGRU (packed: padded frames never enter; 32 a direction) -> Linear(V) -> log_softmax

The output keeps the input's frame rate, so the input lengths are the output lengths.
"""
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class KeypointGRU(nn.Module):
    def __init__(self, num_classes, input_dim, hidden=64):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden // 2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x, lengths):
        h = self.embed(x)
        packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=x.shape[1])
        return self.head(h).log_softmax(-1).transpose(0, 1)  # [T, B, V]


def make_net(num_classes, input_dim, **options):
    return KeypointGRU(num_classes, input_dim, **options)
