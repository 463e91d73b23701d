"""I3D-style teacher for continuous sign language recognition on per-frame landmark features.

Inflated 3-D inception (I3D) ideas carried over to 1-D over time:

    x [B, T, F] -> modality fusion (per modality LayerNorm + Linear, concat, Linear)  [B, T, 512]
      -> stem Conv1d k5 s2                                                            [B, 512, T/2]
      -> inception stage 1 (stride 1 blocks)                                          [B, 512, T/2]
      -> inception stage 2 (first block stride 2)                                     [B, 512, T/4]
      -> BiLSTM (256 per direction, packed)                                           [B, T/4, 512]
      -> Linear classifier, log_softmax                                               [B, T/4, V]

Padding never leaks into valid frames: padded frames are zeroed at the input and after every
layer (the mask is recomputed from lengths after each stride), max pooling sees -inf there,
conv normalisation counts valid frames only (batch norm: over the batch's valid frames in
training, running statistics in eval; or per sample over time), and the LSTM runs on packed
sequences. Convolutions use "same" padding with odd kernels, so every strided
layer maps a length L to floor((L + 2p - k) / s) + 1 = ceil(L / s).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from data.layout import MODALITIES, input_dim, modality_widths, parse_modalities
from model.masking import pad_mask

# Total temporal downsampling: stem conv (stride 2) x first block of inception stage 2 (stride 2).
# output_lengths(L) == ceil(ceil(L / 2) / 2) == ceil(L / 4).
TEMPORAL_STRIDE = 4


@dataclass
class I3DConfig:
    """Constructor arguments of I3DTeacher; dataclasses.asdict() of it is a checkpoint's model_args."""

    vocab_size: int = 1296  # 1295 PHOENIX-2014 glosses + CTC blank (id 0)
    modalities: tuple = MODALITIES
    modality_dim: int = 128  # per-modality projection width, the same for every modality
    fusion_dim: int = 512
    conv_dim: int = 512  # channels of the stem and of every inception block
    stage_blocks: tuple = (3, 4)  # inception blocks at T/2 and at T/4 (I3D has 2 + 5 + 2 "Mixed" blocks)
    lstm_hidden: int = 256  # per direction
    dropout: float = 0.1
    norm: str = "batch"  # conv normalisation: "batch" (masked batch norm) or "instance" (per-sample over time)

    def __post_init__(self):
        # JSON round trips turn tuples into lists; normalise so asdict() is stable.
        self.modalities = parse_modalities(self.modalities)
        self.stage_blocks = tuple(int(n) for n in self.stage_blocks)
        problems = []
        if self.vocab_size < 2:
            problems.append(f"vocab_size={self.vocab_size} (needs the blank plus at least one gloss)")
        for name in ("modality_dim", "fusion_dim", "lstm_hidden"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be >= 1)")
        if self.conv_dim < 16 or self.conv_dim % 16:
            problems.append(f"conv_dim={self.conv_dim} (must be a positive multiple of 16: inception branches split it)")
        if len(self.stage_blocks) != 2 or self.stage_blocks[0] < 0 or self.stage_blocks[1] < 1:
            problems.append(f"stage_blocks={self.stage_blocks} (two counts, the second >= 1: it holds the stride-2 block)")
        if self.norm not in NORM_LAYERS:
            problems.append(f"norm={self.norm!r} (one of {sorted(NORM_LAYERS)})")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout} (must be in [0, 1))")
        if problems:
            raise ValueError("invalid I3DConfig: " + "; ".join(problems))


def differentiating(module: nn.Module) -> bool:
    """Whether `module` runs a training forward whose gradients will be taken (train mode, autograd
    on, not traced for export). There the model computes the same function in a form cheaper to
    run and differentiate on CPU: the fusion on the valid frames alone with each LayerNorm's affine
    folded into its Linear (ModalityFusion._folded), an inception block's 1x1 convs of one input as
    one conv (shared_input_convs), the LSTM direction by direction (lstm_by_direction). Evaluation,
    export and the harness's probes (eval mode or no_grad, watching module by module) run every
    module as written. tests/test_trainer_speed.py holds the two forms equal (float64: to 1e-12)."""
    return module.training and torch.is_grad_enabled() and not torch.jit.is_tracing()


def conv_output_lengths(lengths: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """floor((L + 2p - k) / s) + 1, elementwise on a LongTensor of lengths."""
    return torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1


def check_inputs(model: nn.Module, x, lengths) -> None:
    """The model contract's input check, shared by the models here: x [B, T, F] floating point with
    F = model.input_dim, lengths an integer tensor [B] in 1..T; a ValueError names what is wrong."""
    name = type(model).__name__
    if not torch.is_tensor(x) or x.ndim != 3 or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} expects features [B, T, F] floating point, got {got}")
    if x.shape[-1] != model.input_dim:
        raise ValueError(
            f"{name} built for modalities {model.config.modalities} expects F={model.input_dim} features per frame, "
            f"got {x.shape[-1]}; select the same modalities in the dataset and the model"
        )
    if not torch.is_tensor(lengths) or lengths.shape != (x.shape[0],) or lengths.is_floating_point():
        got = f"{tuple(lengths.shape)} {lengths.dtype}" if torch.is_tensor(lengths) else type(lengths).__name__
        raise ValueError(f"lengths must be an integer tensor [B] with B={x.shape[0]}, got {got}")
    if x.shape[0] and (int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]):
        raise ValueError(f"lengths must lie in 1..T={x.shape[1]}, got min {int(lengths.min())} max {int(lengths.max())}")


def masked_moments(x, mask, dims):
    """Statistics of x [B, C, T] over `dims`, counting only frames where mask [B, 1, T] is True.

    Returns (mean, centred x, biased variance, valid-frame count), reduced dims kept as size 1.
    """
    m = mask.to(x.dtype)
    n = m.sum(dim=dims, keepdim=True).clamp(min=1.0)
    mean = (x * m).sum(dim=dims, keepdim=True) / n
    centred = x - mean
    var = (centred**2 * m).sum(dim=dims, keepdim=True) / n
    return mean, centred, var, n


class MaskedTimeNorm1d(nn.Module):
    """Per-sample, per-channel normalisation over the valid frames (instance norm over time).

    forward(x [B, C, T] float, mask [B, 1, T] bool, True on valid frames) -> [B, C, T].
    Statistics come from the sample's own valid frames only, so padding cannot leak and no
    sample depends on another (no batch statistics, no running buffers; train == eval).
    Centring each channel over time lets CTC leave the all-blank plateau (a per-frame LayerNorm
    over channels leaves a large constant per-channel offset that swamps the frame-to-frame
    signal), but it also removes each sentence's mean: on the demo corpus it generalised worse
    than batch norm (dev WER 7-28% over two seeds vs 3-5% over four), so "batch" is the default.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x, mask):
        _, centred, var, _ = masked_moments(x, mask, dims=2)  # per sample and channel: (B, C, 1)
        y = centred * torch.rsqrt(var + self.eps)
        return y * self.weight[None, :, None] + self.bias[None, :, None]


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch norm over the valid frames of a batch: forward(x [B, C, T], mask [B, 1, T] bool) -> [B, C, T].

    Training: per-channel statistics over every valid frame of every sample (padded frames never
    count), which also update the running statistics. Eval: the running statistics alone, so a
    sample's output does not depend on the batch it is in.
    """

    def forward(self, x, mask):
        if self.running_mean is not None and not self.training:
            return super().forward(x)
        return masked_batch_norm([self], x, mask)


def masked_batch_norm(norms: list, x, mask):
    """MaskedBatchNorm1d's batch-statistics forward for one norm, or for several whose channels are
    stacked on x [B, sum of their channels, T] (the same as each on its own channels: statistics are
    per channel; they share eps and affine); each norm in training updates its running statistics."""
    # statistics in float32 whatever the autocast dtype, as torch's batch norm does
    mean, centred, var, n = masked_moments(x.float(), mask, dims=(0, 2))  # per channel: (1, C, 1)
    start = 0
    for norm in norms:
        channels = slice(start, start + norm.num_features)
        start = channels.stop
        if norm.training and norm.running_mean is not None:
            with torch.no_grad():
                norm.num_batches_tracked += 1
                momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
                unbiased = var.flatten()[channels] * (n.flatten() / (n.flatten() - 1).clamp(min=1.0))
                norm.running_mean.lerp_(mean.flatten()[channels].detach(), momentum)
                norm.running_var.lerp_(unbiased.detach(), momentum)
    first = norms[0]
    if not first.affine:
        return centred * torch.rsqrt(var + first.eps)
    weight = first.weight if len(norms) == 1 else torch.cat([norm.weight for norm in norms])
    bias = first.bias if len(norms) == 1 else torch.cat([norm.bias for norm in norms])
    # bias + centred * (weight / std): one pass over [B, C, T] (and two back), the per-channel
    # factors computed on [1, C, 1]
    return torch.addcmul(bias[None, :, None], centred, weight[None, :, None] * torch.rsqrt(var + first.eps))


NORM_LAYERS = {"batch": MaskedBatchNorm1d, "instance": MaskedTimeNorm1d}


class ConvNormAct1d(nn.Module):
    """Conv1d ("same" padding) -> norm over valid frames (NORM_LAYERS[norm]) -> GELU -> zero padded frames.

    forward(x [B, C_in, T], lengths [B]) -> (y [B, C_out, T'], out_lengths [B]).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, act_layer=nn.GELU, norm: str = "batch"):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size={kernel_size}: only odd kernels keep 'same' length arithmetic")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, kernel_size // 2
        # no conv bias: the norm's shift right after it makes one redundant
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, self.padding, bias=False)
        self.norm = NORM_LAYERS[norm](out_channels)
        self.act = act_layer()

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_lengths(lengths, self.kernel_size, self.stride, self.padding)

    def forward(self, x, lengths):
        y = self.conv(x)  # (B, C_out, T')
        out_lengths = self.output_lengths(lengths)
        mask = pad_mask(out_lengths, y.shape[-1])[:, None, :]  # (B, 1, T')
        y = self.act(self.norm(y, mask))
        return y.masked_fill(~mask, 0.0), out_lengths


def shared_input_convs(blocks, x, lengths):
    """ConvNormAct1d blocks of one input x and the same kernel and stride, run as one:
    (outputs, out_lengths), outputs[i] = blocks[i](x, lengths)[0]. One convolution with their
    weights stacked on the output channels (one larger matmul instead of several narrow ones, and
    one gradient of x instead of their sum), then their norms and activation over all those
    channels at once (masked batch norm: statistics per channel, each norm's running statistics
    updated from its own channels), else each block's own on its channels. Training only
    (InceptionBlock1d.forward); without gradients each block runs as a module, which the harness
    watches."""
    first = blocks[0]
    weight = torch.cat([b.conv.weight for b in blocks])
    y = F.conv1d(x, weight, None, first.stride, first.padding)
    out_lengths = first.output_lengths(lengths)
    mask = pad_mask(out_lengths, y.shape[-1])[:, None, :]  # (B, 1, T')
    sizes = [b.conv.out_channels for b in blocks]
    norms = [b.norm for b in blocks]
    if all(type(norm) is MaskedBatchNorm1d and norm.training for norm in norms) and len({(n.eps, n.affine) for n in norms}) == 1 \
            and all(type(b.act) is nn.GELU and b.act.approximate == first.act.approximate for b in blocks):
        # their norms too (per channel) and the activation: one pass over all their channels
        return list(first.act(masked_batch_norm(norms, y, mask)).masked_fill(~mask, 0.0).split(sizes, dim=1)), out_lengths
    return [b.act(b.norm(part, mask)).masked_fill(~mask, 0.0) for b, part in zip(blocks, y.split(sizes, dim=1))], out_lengths


def _stackable(blocks) -> bool:
    """Whether shared_input_convs computes these blocks: plain ConvNormAct1d of one kernel size and stride."""
    first = blocks[0]
    return all(
        type(b) is ConvNormAct1d and type(b.conv) is nn.Conv1d and b.conv.bias is None and b.conv.groups == 1 and b.conv.dilation == (1,)
        and b.conv.padding_mode == "zeros" and (b.kernel_size, b.stride, b.padding, b.conv.in_channels) == (first.kernel_size, first.stride, first.padding, first.conv.in_channels)
        for b in blocks
    )


def masked_max_pool1d(x, lengths, kernel_size: int = 3, stride: int = 1):
    """Max pool over time that never sees padded frames: [B, C, T] -> ([B, C, T'], out_lengths)."""
    padding = kernel_size // 2
    x = x.masked_fill(~pad_mask(lengths, x.shape[-1])[:, None, :], float("-inf"))
    y = F.max_pool1d(x, kernel_size, stride, padding)
    out_lengths = conv_output_lengths(lengths, kernel_size, stride, padding)
    # every valid output window is centred on a valid frame, so only padded outputs are -inf
    return y.masked_fill(~pad_mask(out_lengths, y.shape[-1])[:, None, :], 0.0), out_lengths


class InceptionBlock1d(nn.Module):
    """Four parallel branches over time, concatenated on channels (I3D "Mixed" block in 1-D).

    1x1 | 1x1 -> k3 | 1x1 -> k5 | max-pool k3 -> 1x1, widths c/4, c/2, c/8, c/8 of out_channels.
    With stride > 1 the k1/k3/k5 convs and the pool carry the stride; all give ceil(T / stride).
    A block with stride 1 and equal widths adds its input back (residual); padded frames stay 0.
    forward(x [B, C_in, T], lengths [B]) -> (y [B, out_channels, T'], out_lengths [B]).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, conv_block=ConvNormAct1d):
        super().__init__()
        c = out_channels
        self.stride = stride
        self.residual = stride == 1 and in_channels == out_channels
        self.branch1 = conv_block(in_channels, c // 4, 1, stride)
        self.branch3_reduce = conv_block(in_channels, 3 * c // 8, 1)
        self.branch3 = conv_block(3 * c // 8, c // 2, 3, stride)
        self.branch5_reduce = conv_block(in_channels, c // 16, 1)
        self.branch5 = conv_block(c // 16, c // 8, 5, stride)
        self.pool_proj = conv_block(in_channels, c - c // 4 - c // 2 - c // 8, 1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.branch1.output_lengths(lengths)

    def forward(self, x, lengths):
        # training: the 1x1 convs that read x with the same stride run as one (shared_input_convs)
        shared = [self.branch3_reduce, self.branch5_reduce] + ([self.branch1] if self.stride == 1 else [])
        if differentiating(self) and _stackable(shared):
            (r3, r5, *y1), reduced = shared_input_convs(shared, x, lengths)
            y1, out_lengths = (y1[0], reduced) if y1 else self.branch1(x, lengths)
            y3, _ = self.branch3(r3, reduced)
            y5, _ = self.branch5(r5, reduced)
        else:
            y1, out_lengths = self.branch1(x, lengths)
            y3, _ = self.branch3(*self.branch3_reduce(x, lengths))
            y5, _ = self.branch5(*self.branch5_reduce(x, lengths))
        pooled, pool_lengths = masked_max_pool1d(x, lengths, 3, self.stride)
        yp, _ = self.pool_proj(pooled, pool_lengths)
        y = torch.cat([y1, y3, y5, yp], dim=1)  # (B, out_channels, T')
        if self.residual:  # identity shortcut: a deep stack of plain blocks trains far slower
            y = y + x
        return y, out_lengths


class ModalityFusion(nn.Module):
    """Per-modality LayerNorm + Linear to the same width, concatenated and mixed to fusion_dim.

    Equal per-modality widths keep the face block (86% of the raw landmark values) from swamping
    the hands. forward(x [B, T, F]) -> [B, T, fusion_dim]; every op is per frame.
    """

    def __init__(self, modalities, modality_dim: int, fusion_dim: int, dropout: float):
        super().__init__()
        widths = modality_widths(modalities)
        self.slices, start = {}, 0
        for name, width in widths.items():  # layout order: the dataset slices columns the same way
            self.slices[name] = slice(start, start + width)
            start += width
        self.proj = nn.ModuleDict({
            name: nn.Sequential(nn.LayerNorm(width), nn.Linear(width, modality_dim)) for name, width in widths.items()
        })
        self.mix = nn.Sequential(
            nn.GELU(), nn.Linear(len(widths) * modality_dim, fusion_dim), nn.LayerNorm(fusion_dim), nn.GELU(), nn.Dropout(dropout)
        )

    def forward(self, x):
        if differentiating(self):  # training: the same function, cheaper to differentiate (_folded)
            parts = [self._folded(self.proj[name], x[..., sl]) for name, sl in self.slices.items()]
        else:  # the modules themselves, which the harness watches one by one (its probes run without gradients)
            parts = [self.proj[name](x[..., sl]) for name, sl in self.slices.items()]  # each (B, T, modality_dim)
        return self.mix(torch.cat(parts, dim=-1))  # (B, T, fusion_dim)

    @staticmethod
    def _folded(proj: nn.Sequential, x):
        """proj = LayerNorm then Linear, computed as Linear(gamma * xhat + beta) = xhat @ (W gamma)^T + (W beta + b):
        the same function of the same parameters, with the LayerNorm's affine folded into the
        Linear's weight. Training pays for it once, in the weight gradient (xhat^T g, from which
        the gradients of W, gamma and beta follow as [modality_dim, width] products), where the
        unfolded form also multiplies the output gradient back through W to reach gamma and beta
        (an [frames, width] product and the LayerNorm's backward); up to 4887 columns a frame, the
        largest matmuls of the model."""
        norm, linear = proj[0], proj[1]
        xhat = F.layer_norm(x, norm.normalized_shape, eps=norm.eps)
        if norm.weight is None:
            return linear(xhat)
        weight = linear.weight * norm.weight
        bias = linear.weight @ norm.bias if norm.bias is not None else None
        if linear.bias is not None:
            bias = linear.bias if bias is None else bias + linear.bias
        return F.linear(xhat, weight, bias)


def lstm_by_direction(lstm: nn.LSTM, x, lengths):
    """A one-layer bidirectional batch-first nn.LSTM over padded x [B, T, C] with these lengths,
    as pack_padded_sequence -> lstm -> pad_packed_sequence computes it ([B, T, 2 * hidden], 0 on
    padded frames), run direction by direction on the padded batch: forward over x as it is (each
    sample's padding comes after its valid frames, so never reaches them), backward over each
    sample reversed within its own length (its padding again last), reversed back. Two fused RNN
    calls (oneDNN on CPU), where the packed sequence runs a loop of small ops a time step (some 2,700
    a training step forward and backward). Training only (I3DTeacher.forward_features): without
    gradients the module runs as it is, packed, which is what the harness watches."""
    batch, steps, _ = x.shape
    t = torch.arange(steps, device=x.device)[None, :]
    length = lengths.to(x.device)[:, None]
    valid = t < length  # (B, T)
    order = torch.where(valid, length - 1 - t, t)[:, :, None]  # reverses each sample's valid frames, padding kept in place
    h0 = x.new_zeros(1, batch, lstm.hidden_size)
    out = []
    for suffix, seq in (("", x), ("_reverse", None)):
        # nn.LSTM's flat order: w_ih, w_hh (, b_ih, b_hh)
        weights = [getattr(lstm, f"{kind}_{part}_l0{suffix}") for kind in ("weight", "bias")[: 1 + bool(lstm.bias)] for part in ("ih", "hh")]
        if seq is None:
            seq = x.gather(1, order.expand_as(x))
        y, _, _ = torch.lstm(seq, (h0, h0), weights, lstm.bias, 1, 0.0, lstm.training, False, True)
        out.append(y if suffix == "" else y.gather(1, order.expand_as(y)))
    return torch.cat(out, dim=-1).masked_fill(~valid[:, :, None], 0.0)


class I3DTeacher(nn.Module):
    """forward(x [B, T, F] float, lengths [B] long) -> (log_probs [B, T', V] float, out_lengths [B] long).

    F = data.layout.input_dim(config.modalities); T' = output_lengths(T) = ceil(T / TEMPORAL_STRIDE).
    log_probs are a log_softmax over V = config.vocab_size (blank = 0). Frames of a sample at or
    beyond its out_length are padding: their values are meaningless and must be ignored.
    """

    config_class = I3DConfig

    def __init__(self, config: I3DConfig | None = None):
        super().__init__()
        self.config = config = config or I3DConfig()
        self.input_dim = input_dim(config.modalities)
        self.fusion = ModalityFusion(config.modalities, config.modality_dim, config.fusion_dim, config.dropout)
        conv_block = partial(ConvNormAct1d, act_layer=nn.GELU, norm=config.norm)
        self.stem = conv_block(config.fusion_dim, config.conv_dim, 5, 2)
        blocks = [InceptionBlock1d(config.conv_dim, config.conv_dim, 1, conv_block) for _ in range(config.stage_blocks[0])]
        blocks += [
            InceptionBlock1d(config.conv_dim, config.conv_dim, 2 if i == 0 else 1, conv_block) for i in range(config.stage_blocks[1])
        ]
        self.blocks = nn.ModuleList(blocks)
        self.lstm = nn.LSTM(config.conv_dim, config.lstm_hidden, batch_first=True, bidirectional=True)
        self.head_dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(2 * config.lstm_hidden, config.vocab_size)
        # near-uniform predictions at init: the initial CTC loss is then close to the uniform
        # baseline (model.ctc.uniform_ctc_loss), which the harness checks
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Exact frame count after the strided layers: [B] long -> [B] long (ceil(L / TEMPORAL_STRIDE))."""
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        for layer in [self.stem, *self.blocks]:
            lengths = layer.output_lengths(lengths)
        return lengths

    def forward_features(self, x, lengths):
        """(x [B, T, F], lengths [B]) -> (feats [B, T', 2 * lstm_hidden], out_lengths [B]); padded frames are 0."""
        check_inputs(self, x, lengths)
        lengths = lengths.long()
        valid = pad_mask(lengths, x.shape[1])  # (B, T)
        if differentiating(self):
            # training: the fusion (per frame) runs on the valid frames alone, gathered in one copy;
            # padded frames are exactly 0 after it and receive zero gradient
            rows = valid.reshape(-1).nonzero().squeeze(1)  # the valid frames of the [B * T] flattened batch
            h = self.fusion(x.reshape(-1, x.shape[-1]).index_select(0, rows))  # (N valid frames, fusion_dim)
            h = h.new_zeros(valid.numel(), h.shape[-1]).index_copy(0, rows, h).view(*valid.shape, h.shape[-1])  # (B, T, fusion_dim)
        else:
            # masking at entry: padded frames contribute nothing and receive exactly zero gradient
            x = x.masked_fill(~valid[:, :, None], 0.0)
            h = self.fusion(x)  # (B, T, fusion_dim)
            h = h.masked_fill(~valid[:, :, None], 0.0)
        h = h.transpose(1, 2)  # (B, fusion_dim, T)
        h, lengths = self.stem(h, lengths)  # (B, conv_dim, T/2)
        for block in self.blocks:
            h, lengths = block(h, lengths)  # (B, conv_dim, T/4) after the strided block
        h = h.transpose(1, 2)  # (B, T', conv_dim)
        lstm = self.lstm
        if differentiating(self) and (lstm.num_layers, lstm.bidirectional, lstm.batch_first, lstm.proj_size) == (1, True, True, 0) \
                and not torch.is_autocast_enabled(h.device.type):  # (under autocast the fused RNN would run in bf16: as written)
            return lstm_by_direction(lstm, h, lengths), lengths  # (B, T', 2 * hidden)
        packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        feats, _ = pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])  # (B, T', 2 * hidden)
        return feats, lengths

    def forward_head(self, feats):
        """feats [B, T', 2 * lstm_hidden] -> logits [B, T', vocab_size] (before log_softmax)."""
        return self.classifier(self.head_dropout(feats))

    def forward(self, x, lengths):
        feats, out_lengths = self.forward_features(x, lengths)
        return F.log_softmax(self.forward_head(feats), dim=-1), out_lengths


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_size_mb(model: nn.Module) -> float:
    """Size of parameters and buffers in MiB (what a float32 state_dict takes on disk, roughly)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def expected_output_length(length: int) -> int:
    """The closed form of I3DTeacher.output_lengths for the default stride layout."""
    return math.ceil(length / TEMPORAL_STRIDE)
