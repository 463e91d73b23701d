"""A user's own CTC model, written without this project's code: a strided conv and a BiGRU.

The keyword arguments switch in the faults a user's model can have (tests/test_user_code.py)."""
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class ConvGRU(nn.Module):
    def __init__(self, vocab_size, input_dim, hidden=32, raw_logits=False, strided_lengths=True, packed=True, blank_last=False):
        super().__init__()
        self.raw_logits, self.strided_lengths, self.packed = raw_logits, strided_lengths, packed
        self.inp = nn.Linear(input_dim, hidden)
        self.conv = nn.Conv1d(hidden, hidden, kernel_size=3, stride=2, padding=1)
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        # blank_last: a model ported from a codebase whose blank is the last class, added on top of vocab_size
        self.head = nn.Linear(2 * hidden, vocab_size + (1 if blank_last else 0))

    def output_lengths(self, lengths):
        return (torch.as_tensor(lengths, dtype=torch.long) + 1) // 2

    def forward(self, x, lengths):
        mask = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]).unsqueeze(-1)
        h = torch.relu(self.inp(x)) * mask
        h = torch.relu(self.conv(h.transpose(1, 2))).transpose(1, 2)
        out_lengths = self.output_lengths(lengths).to(x.device)
        if self.packed:
            packed = pack_padded_sequence(h, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
            h, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=h.shape[1])
        else:
            h, _ = self.gru(h)
        logits = self.head(h)
        return (logits if self.raw_logits else F.log_softmax(logits, dim=-1)), (out_lengths if self.strided_lengths else lengths)


def make_model(vocab_size, input_dim, **options):
    return ConvGRU(vocab_size, input_dim, **options)
