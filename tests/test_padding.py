"""The padding, forward, batch-size, gradient and modality checks on models written the way users
write them (a stock nn.TransformerEncoder, a strided TCN, a GroupNorm stem, a loop z-score): each
fault is caught and located, and its healthy twin passes."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from data.dataset import Sample, collate
from data.layout import input_dim as layout_input_dim
from data.layout import modality_widths
from harness.checks.model import check_batch_size, check_forward, check_gradients, check_modalities
from harness.checks.padding import check_padding
from harness.findings import FAIL, PASS, SKIP, WARN
from harness.probes import first_nonfinite_module, trace_nonfinite
from harness.thresholds import resolve

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = 7
WIDTH = 6
LENGTHS = (31, 17, 9)  # odd: a kernel-3 stride-2 conv's last output frame reads one frame past the end
THRESHOLDS = resolve()


def make_samples(lengths=LENGTHS, width=WIDTH, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        Sample(id=f"s{length}", features=torch.randn(length, width, generator=g), targets=torch.tensor([1 + i % (VOCAB - 1), 2]),
               glosses=("A", "B"), normalization="none")
        for i, length in enumerate(lengths)
    ]


def on_device(batch):
    return batch


def with_transform(fn):
    """What a user's loop does between the loader and the model: fn(features, lengths) -> features."""
    import dataclasses

    return lambda batch: dataclasses.replace(batch, features=fn(batch.features, batch.lengths))


def padded_mask(x, lengths):
    """True at padded frames."""
    return torch.arange(x.shape[1], device=x.device)[None, :] >= lengths[:, None]


# ----------------------------------------------------------------------------- users' models


class TransformerCTC(nn.Module):
    """A stock nn.TransformerEncoder; `mask` is how its key padding mask is built."""

    def __init__(self, vocab_size, input_dim, hidden=16, mask="right"):
        super().__init__()
        self.mask = mask
        self.inp = nn.Linear(input_dim, hidden)
        layer = nn.TransformerEncoderLayer(hidden, nhead=2, dim_feedforward=32, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2)
        self.head = nn.Linear(hidden, vocab_size)

    def output_lengths(self, lengths):
        return lengths

    def forward(self, x, lengths):
        padded = padded_mask(x, lengths)
        key_mask = {"right": padded, "inverted": ~padded, "none": None}[self.mask]
        h = self.encoder(self.inp(x), src_key_padding_mask=key_mask)
        return F.log_softmax(self.head(h), dim=-1), lengths


class StridedTCN(nn.Module):
    """Conv1d stride 2 then a masked Conv1d; the first conv's input is not masked. With
    `project` a Linear (with bias) comes first, so padded frames are non-zero at that conv."""

    def __init__(self, vocab_size, input_dim, hidden=16, project=False):
        super().__init__()
        self.proj = nn.Linear(input_dim, hidden) if project else None
        self.tcn = nn.Sequential(nn.Conv1d(hidden if project else input_dim, hidden, 3, stride=2, padding=1), nn.ReLU())
        self.conv2 = nn.Conv1d(hidden, hidden, 3, padding=1)
        self.head = nn.Linear(hidden, vocab_size)

    def output_lengths(self, lengths):
        return (lengths + 1) // 2

    def forward(self, x, lengths):
        if self.proj is not None:
            x = self.proj(x)
        h = self.tcn(x.transpose(1, 2))
        out_lengths = self.output_lengths(lengths)
        keep = (~padded_mask(h.transpose(1, 2), out_lengths))[:, None, :]
        h = h * keep
        h = torch.relu(self.conv2(h)) * keep
        return F.log_softmax(self.head(h.transpose(1, 2)), dim=-1), out_lengths


class Encoder(nn.Module):
    def __init__(self, input_dim, hidden, norm):
        super().__init__()
        self.norm = norm
        if norm == "group":
            self.stem = nn.Sequential(nn.Conv1d(input_dim, hidden, 3, padding=1), nn.GroupNorm(4, hidden), nn.ReLU())
        else:
            self.stem = nn.Sequential(nn.Conv1d(input_dim, hidden, 3, padding=1))
            self.frame_norm = nn.LayerNorm(hidden)

    def forward(self, x, keep):  # x [B, F, T], keep [B, 1, T]
        h = self.stem(x * keep)
        if self.norm != "group":
            h = torch.relu(self.frame_norm(h.transpose(1, 2))).transpose(1, 2)
        return h * keep


class NormCTC(nn.Module):
    """Masked conv stem with a GroupNorm over (channels, time) or a per-frame LayerNorm."""

    def __init__(self, vocab_size, input_dim, hidden=16, norm="group"):
        super().__init__()
        self.inner = Encoder(input_dim, hidden, norm)
        self.head = nn.Linear(hidden, vocab_size)

    def output_lengths(self, lengths):
        return lengths

    def forward(self, x, lengths):
        keep = (~padded_mask(x, lengths))[:, None, :]
        h = self.inner(x.transpose(1, 2), keep)
        return F.log_softmax(self.head(h.transpose(1, 2)), dim=-1), lengths


class FrameMLP(nn.Module):
    """Per frame: optional LayerNorm over the features, Linear, GELU, Linear; padded frames masked."""

    def __init__(self, vocab_size, input_dim, hidden=16, input_norm=False):
        super().__init__()
        self.norm = nn.LayerNorm(input_dim) if input_norm else nn.Identity()
        self.body = nn.Sequential(nn.Linear(input_dim, hidden), nn.GELU())
        self.head = nn.Linear(hidden, vocab_size)

    def output_lengths(self, lengths):
        return lengths

    def forward(self, x, lengths):
        h = self.body(self.norm(x)) * (~padded_mask(x, lengths))[..., None]
        return F.log_softmax(self.head(h), dim=-1), lengths


def zscore_padded(features, lengths):
    """Each sample z-scored over its whole padded row (time and features)."""
    mean = features.mean(dim=(1, 2), keepdim=True)
    std = features.std(dim=(1, 2), keepdim=True)
    return (features - mean) / (std + 1e-5)


def zscore_valid(features, lengths):
    """Each sample z-scored over its valid frames only; padded frames stay 0."""
    keep = (~padded_mask(features, lengths))[..., None].float()
    count = lengths[:, None, None].float() * features.shape[2]
    mean = (features * keep).sum(dim=(1, 2), keepdim=True) / count
    var = (((features - mean) * keep) ** 2).sum(dim=(1, 2), keepdim=True) / count
    return (features - mean) / (var.sqrt() + 1e-5) * keep


def build(cls, seed=0, **options):
    torch.manual_seed(seed)
    return cls(VOCAB, WIDTH, **options)


def batch_of(samples, to_input=on_device):
    return to_input(collate(samples))


def _fl(batch):
    return batch.features, batch.lengths


# ----------------------------------------------------------------------------- (a), (b), (c) attention


def test_stock_transformer_with_a_right_key_padding_mask_passes():
    model = build(TransformerCTC, mask="right")
    samples = make_samples()
    assert first_nonfinite_module(model.eval(), *_fl(batch_of(samples))) is None  # nested tensors in eval mode: no crash
    assert not any("forward" in m.__dict__ for m in model.modules())  # the probe leaves every module as it was
    forward = check_forward(model, batch_of(samples), THRESHOLDS)
    assert forward.status == PASS, forward.message()
    sizes = check_batch_size(model, samples, THRESHOLDS)
    assert sizes.status == PASS, sizes.message()
    padding = check_padding(model, samples, on_device, THRESHOLDS, "model")
    assert padding.status == PASS, padding.message()
    assert padding.check == "padding[model]" and padding.values["effective_diff"] < 1e-4


def test_inverted_key_padding_mask_is_a_nonfinite_forward_named_at_attention_and_the_longest_sample():
    model = build(TransformerCTC, mask="inverted")
    samples = make_samples()
    trace = trace_nonfinite(model.eval(), *_fl(batch_of(samples)))
    assert (trace.module, trace.rows, trace.fused) == ("encoder.layers.0", [0], True), trace
    forward = check_forward(model, batch_of(samples), THRESHOLDS)
    assert forward.status == FAIL, forward.message()
    assert "forward pass not finite" in forward.summary and "raw logits" not in forward.summary, forward.summary
    # in eval mode the stock layer runs fused: the layer is named, with the attention it holds
    assert "'encoder.layers.0' (TransformerEncoderLayer" in forward.summary, forward.summary
    assert "'encoder.layers.0.self_attn' (MultiheadAttention)" in forward.summary, forward.summary
    assert forward.samples == ["s31"] and "the longest" in forward.summary, forward.message()
    assert "inverted" in forward.hint and "True must mean padded" in forward.hint, forward.hint
    assert forward.values["first_nonfinite_module"] == "encoder.layers.0"
    for n in (1, 2, 3):  # NaN is never "equal": alone or in a batch, no batch size passes
        sizes = check_batch_size(model, samples[:n], THRESHOLDS)
        assert sizes.status == FAIL, sizes.message()
        # alone, every key of a sample is masked: torch's fused path raises instead of giving NaN
        assert ("not finite for s31" in sizes.summary) if n > 1 else ("raises" in sizes.summary), sizes.summary
    padding = check_padding(model, samples, on_device, THRESHOLDS, "model")
    assert padding.status == FAIL and "inverted key padding mask" in padding.hint, padding.message()


def test_attention_without_a_key_padding_mask_is_located():
    model = build(TransformerCTC, mask="none")
    samples = make_samples()
    padding = check_padding(model, samples, on_device, THRESHOLDS, "model")
    assert padding.status == FAIL, padding.message()
    assert padding.values["module"] == "encoder.layers.0" and padding.values["module_type"] == "TransformerEncoderLayer", padding.values
    assert "'encoder.layers.0.self_attn' (MultiheadAttention)" in padding.summary, padding.summary
    assert "key padding mask" in padding.hint and padding.values["born_in"] == "model"
    sizes = check_batch_size(model, samples, THRESHOLDS)
    assert sizes.status == FAIL and sizes.values["born_in"] == "padding[model]", sizes.message()
    assert "padding[model]" in sizes.summary, sizes.summary


# ----------------------------------------------------------------------------- (d) a strided TCN


def test_tcn_reading_zero_padding_is_latent_and_located_at_its_first_conv():
    model = build(StridedTCN)
    samples = make_samples()
    padding = check_padding(model, samples, on_device, THRESHOLDS, "model")
    assert padding.status == WARN, padding.message()
    assert "no effect under the configured zero padding" in padding.summary, padding.summary
    assert padding.values["module"] == "tcn.0" and padding.values["module_type"] == "Conv1d", padding.values
    assert padding.values["effective_diff"] <= 1e-4 < padding.values["latent_diff"]
    grads = check_gradients(model, batch_of(samples), THRESHOLDS)
    assert grads.status == WARN, grads.message()  # its conv reads padded frames: a fact, judged by padding[model]
    assert "padded frames receive gradient" in grads.summary and "padding[model]" in grads.summary, grads.summary
    sizes = check_batch_size(model, samples, THRESHOLDS)
    assert sizes.status == PASS, sizes.message()


def test_tcn_after_a_linear_with_bias_fails_at_its_first_conv():
    model = build(StridedTCN, project=True)
    samples = make_samples()
    padding = check_padding(model, samples, on_device, THRESHOLDS, "model")
    assert padding.status == FAIL, padding.message()
    assert padding.values["module"] == "tcn.0" and "'tcn.0' (Conv1d)" in padding.summary, padding.summary
    assert padding.values["effective_diff"] > 1e-4 and "conv reads padded frames" in padding.hint, padding.hint
    assert padding.samples and "s31" not in padding.samples  # the longest has no padding
    sizes = check_batch_size(model, samples, THRESHOLDS)
    assert sizes.status == FAIL and sizes.values["born_in"] == "padding[model]", sizes.message()


# ----------------------------------------------------------------------------- (e) norms over time


def test_group_norm_over_padded_time_is_located():
    model = build(NormCTC, norm="group")
    padding = check_padding(model, make_samples(), on_device, THRESHOLDS, "model")
    assert padding.status == FAIL, padding.message()
    assert "'inner.stem.1' (GroupNorm)" in padding.summary and padding.values["module_type"] == "GroupNorm", padding.summary
    assert "valid frames only" in padding.hint, padding.hint


def test_per_frame_layer_norm_with_masked_input_passes():
    model = build(NormCTC, norm="layer")
    padding = check_padding(model, make_samples(), on_device, THRESHOLDS, "model")
    assert padding.status == PASS, padding.message()
    assert padding.values["latent_diff"] <= 1e-4


# ----------------------------------------------------------------------------- (f) the batch_transform


def test_a_zscore_over_the_padded_row_fails_padding_batch_transform():
    model = build(FrameMLP)
    samples = make_samples()
    to_input = with_transform(zscore_padded)
    finding = check_padding(model, samples, to_input, THRESHOLDS, "batch_transform", "loop:zscore_padded")
    assert finding.status == FAIL, finding.message()
    assert finding.check == "padding[batch_transform]" and finding.values["born_in"] == "batch_transform"
    assert "batch_transform 'loop:zscore_padded' depends on the batch's padding" in finding.summary, finding.summary
    assert "the model's output of sample" in finding.summary and "s9" in finding.samples, finding.message()
    # the model itself is sound: batch_size names the transform as where its difference is born
    assert check_padding(model, samples, to_input, THRESHOLDS, "model").status == PASS
    sizes = check_batch_size(model, samples, THRESHOLDS, to_input=to_input)
    assert sizes.status == FAIL and sizes.values["born_in"] == "padding[batch_transform]", sizes.message()


def test_a_zscore_over_valid_frames_passes_padding_batch_transform():
    model = build(FrameMLP)
    samples = make_samples()
    to_input = with_transform(zscore_valid)
    finding = check_padding(model, samples, to_input, THRESHOLDS, "batch_transform", "loop:zscore_valid")
    assert finding.status == PASS, finding.message()
    assert check_batch_size(model, samples, THRESHOLDS, to_input=to_input).status == PASS


def test_a_padded_zscore_before_a_per_frame_norm_is_latent():
    model = build(FrameMLP, input_norm=True)
    finding = check_padding(model, make_samples(), with_transform(zscore_padded), THRESHOLDS, "batch_transform", "loop:zscore_padded")
    assert finding.status == WARN, finding.message()
    assert "no effect on this model's output" in finding.summary and "Latent" in finding.summary, finding.summary


def test_padding_batch_transform_without_a_transform_skips():
    finding = check_padding(build(FrameMLP), make_samples(), on_device, THRESHOLDS, "batch_transform", None)
    assert finding.status == SKIP and "no batch_transform" in finding.summary


# ----------------------------------------------------------------------------- (g) a dead branch


class WithAuxHead(FrameMLP):
    def __init__(self, vocab_size, input_dim, hidden=16):
        super().__init__(vocab_size, input_dim, hidden)
        self.aux_head = nn.Linear(hidden, vocab_size)  # built, never called in forward


def test_a_dead_branch_warns_and_fails_under_ddp():
    samples = make_samples()
    single = check_gradients(build(WithAuxHead), batch_of(samples), THRESHOLDS)
    assert single.status == WARN, single.message()
    assert "aux_head (Linear)" in single.summary and single.values["dead"] == 2, single.summary
    assert set(single.features) == {"aux_head.weight", "aux_head.bias"}
    ddp = check_gradients(build(WithAuxHead), batch_of(samples), THRESHOLDS, distributed=True)
    assert ddp.status == FAIL and "find_unused_parameters" in ddp.summary + ddp.hint, ddp.message()
    healthy = check_gradients(build(FrameMLP), batch_of(samples), THRESHOLDS, distributed=True)
    assert healthy.status == PASS, healthy.message()


# ----------------------------------------------------------------------------- (h) modalities

MODALITIES = ("pose", "hands")
FULL = layout_input_dim(MODALITIES)


class FullWidthOnly(nn.Module):
    """A factory that ignores input_dim: always built for the full frame. `drop` zeroes a
    modality's columns (a fusion that ignores it)."""

    def __init__(self, vocab_size, input_dim, drop=None):
        super().__init__()
        self.drop = drop
        self.lin = nn.Linear(FULL, vocab_size)

    def output_lengths(self, lengths):
        return lengths

    def forward(self, x, lengths):
        if self.drop:
            x = x.clone()
            x[..., FULL - modality_widths(MODALITIES)[self.drop]:] = 0  # hands are the last columns
        return F.log_softmax(self.lin(x), dim=-1), lengths


class PerWidth(FullWidthOnly):
    """A factory that builds from input_dim."""

    def __init__(self, vocab_size, input_dim):
        super().__init__(vocab_size, input_dim)
        self.lin = nn.Linear(input_dim, vocab_size)


def test_a_factory_ignoring_input_dim_is_not_a_modality_failure():
    batch = batch_of(make_samples(lengths=(12, 7), width=FULL))
    torch.manual_seed(0)
    finding = check_modalities(FullWidthOnly(VOCAB, FULL), batch, lambda m: FullWidthOnly(VOCAB, modality_widths((m,))[m]), MODALITIES)
    assert finding.status == PASS, finding.message()
    assert "the factory ignores input_dim (built with input_dim=99 it expects 225)" in finding.summary, finding.summary
    assert finding.values["single_measured"] == 0 and set(finding.values["input_grad"]) == set(MODALITIES)
    # the full model's gradients are still judged: a model that ignores the hands fails
    broken = check_modalities(FullWidthOnly(VOCAB, FULL, drop="hands"), batch, lambda m: FullWidthOnly(VOCAB, 1), MODALITIES)
    assert broken.status == FAIL and "ignores 'hands'" in broken.summary, broken.message()
    # a factory that follows input_dim: every row measured
    twin = check_modalities(PerWidth(VOCAB, FULL), batch, lambda m: PerWidth(VOCAB, modality_widths((m,))[m]), MODALITIES)
    assert twin.status == PASS and twin.values["single_measured"] == 2 and "not measured" not in twin.summary, twin.message()


def test_modalities_with_nothing_measurable_skips():
    samples = make_samples(lengths=(12, 7), width=FULL)

    def factory(m):
        raise ValueError("this factory builds only the full model")

    class Broken(FullWidthOnly):
        def forward(self, x, lengths):
            raise RuntimeError("no forward today")

    finding = check_modalities(Broken(VOCAB, FULL), batch_of(samples), factory, MODALITIES)
    assert finding.status == SKIP and "\n" not in finding.summary, finding.message()


# ----------------------------------------------------------------------------- twins, functional ops, packed RNNs


class MaskedTCN(StridedTCN):
    """The TCN with its first conv's input masked: any padding is inert."""

    def forward(self, x, lengths):
        return super().forward(x * (~padded_mask(x, lengths))[..., None], lengths)


def test_tcn_with_its_input_masked_passes():
    model = build(MaskedTCN)
    samples = make_samples()
    padding = check_padding(model, samples, on_device, THRESHOLDS, "model")
    assert padding.status == PASS, padding.message()
    grads = check_gradients(model, batch_of(samples), THRESHOLDS)
    assert grads.status == PASS and "no padded frame gets gradient" in grads.summary, grads.message()


class CenteredOverTime(nn.Module):
    """Per-frame projection, centred by its mean over time, then the head. `masked`: the mean
    over each sample's valid frames; else over all T frames of the padded batch."""

    def __init__(self, vocab_size, input_dim, hidden=16, masked=False):
        super().__init__()
        self.masked = masked
        self.proj = nn.Linear(input_dim, hidden)
        self.head = nn.Linear(hidden, vocab_size)

    def output_lengths(self, lengths):
        return lengths

    def forward(self, x, lengths):
        keep = (~padded_mask(x, lengths))[..., None].float()
        h = torch.relu(self.proj(x)) * keep
        mean = h.sum(1, keepdim=True) / lengths[:, None, None] if self.masked else h.mean(1, keepdim=True)
        return F.log_softmax(self.head(h - mean), dim=-1), lengths


def test_a_mean_over_padded_time_is_located_at_the_functional_op_before_the_head():
    padding = check_padding(build(CenteredOverTime), make_samples(), on_device, THRESHOLDS, "model")
    assert padding.status == FAIL, padding.message()
    assert "'head' (Linear) or the functional op just before it" in padding.summary, padding.summary
    assert padding.values["born_before_module"] and "valid frames" in padding.hint
    twin = check_padding(build(CenteredOverTime, masked=True), make_samples(), on_device, THRESHOLDS, "model")
    assert twin.status == PASS, twin.message()


class ZeroTemperature(FrameMLP):
    """Logits divided by a temperature of 0 before the log-softmax: NaN born after the last module."""

    def forward(self, x, lengths):
        h = self.body(self.norm(x)) * (~padded_mask(x, lengths))[..., None]
        return F.log_softmax(self.head(h) / 0.0, dim=-1), lengths


def test_nan_born_in_a_functional_op_after_the_last_module_is_named_so():
    forward = check_forward(build(ZeroTemperature), batch_of(make_samples()), THRESHOLDS)
    assert forward.status == FAIL and "forward pass not finite" in forward.summary, forward.message()
    assert "functional op of forward after the last module ('head', Linear)" in forward.summary, forward.summary
    assert "raw logits" not in forward.summary and forward.values["nonfinite_in_functional_op"]
    assert check_forward(build(FrameMLP), batch_of(make_samples()), THRESHOLDS).status == PASS


class GRUCTC(nn.Module):
    def __init__(self, vocab_size, input_dim, hidden=8, packed=True):
        super().__init__()
        self.packed = packed
        self.gru = nn.GRU(input_dim, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, vocab_size)

    def output_lengths(self, lengths):
        return lengths

    def forward(self, x, lengths):
        if self.packed:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            h, _ = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=x.shape[1])
        else:
            h, _ = self.gru(x)
        return F.log_softmax(self.head(h), dim=-1), lengths


def test_a_packed_rnn_passes_and_an_unpacked_one_is_located():
    samples = make_samples()
    packed = build(GRUCTC)
    assert check_forward(packed, batch_of(samples), THRESHOLDS).status == PASS
    assert check_padding(packed, samples, on_device, THRESHOLDS, "model").status == PASS
    unpacked = check_padding(build(GRUCTC, packed=False), samples, on_device, THRESHOLDS, "model")
    assert unpacked.status == FAIL and unpacked.values["module"] == "gru" and "(GRU)" in unpacked.summary, unpacked.message()
    assert "pack" in unpacked.hint


class CenteredLogits(CenteredOverTime):
    """The logits centred by their mean over all T frames, after the last module."""

    def forward(self, x, lengths):
        keep = (~padded_mask(x, lengths))[..., None].float()
        logits = self.head(torch.relu(self.proj(x)) * keep)
        return F.log_softmax(logits - logits.mean(1, keepdim=True), dim=-1), lengths


def test_a_mean_over_padded_time_after_the_last_module_is_named_so():
    padding = check_padding(build(CenteredLogits), make_samples(), on_device, THRESHOLDS, "model")
    assert padding.status == FAIL, padding.message()
    assert "a functional op of forward after the last module ('head', Linear)" in padding.summary, padding.summary
    assert padding.values["module"] is None


class CentringBlock(nn.Module):
    """A block of the user's own: two convs with a mean over all T frames subtracted between them."""

    def __init__(self, width, hidden):
        super().__init__()
        self.a = nn.Conv1d(width, hidden, 1)
        self.b = nn.Conv1d(hidden, hidden, 1)

    def forward(self, x):  # [B, C, T]
        h = self.a(x)
        return self.b(h - h.mean(-1, keepdim=True))


class BlockCTC(FrameMLP):
    def __init__(self, vocab_size, input_dim, hidden=16):
        super().__init__(vocab_size, input_dim, hidden)
        self.block = CentringBlock(input_dim, hidden)

    def forward(self, x, lengths):
        h = self.block(x.transpose(1, 2)).transpose(1, 2) * (~padded_mask(x, lengths))[..., None]
        return F.log_softmax(self.head(h), dim=-1), lengths


def test_a_mean_between_the_convs_of_a_block_is_located_before_the_second_conv():
    padding = check_padding(build(BlockCTC), make_samples(), on_device, THRESHOLDS, "model")
    assert padding.status == FAIL, padding.message()
    # the first module whose valid frames move is block.b; its input already differs: born before it, in the block's forward
    assert "'block.b' (Conv1d) or the functional op just before it" in padding.summary, padding.summary
