import dataclasses
import json
import math

import pytest
import torch

from data.layout import MODALITIES, input_dim
from model import I3DConfig, I3DTeacher, create_model, model_from_checkpoint_args
from model.ctc import ctc_loss_per_sample, uniform_ctc_loss
from model.i3d import TEMPORAL_STRIDE, MaskedBatchNorm1d, count_parameters, expected_output_length, model_size_mb
from model.masking import pad_mask
from model.registry import list_models, register_model

# The registered "i3d_tiny" widths keep these tests fast on CPU; the default size is only built where
# it is the point. A second block at T/4 (stage_blocks (1, 2)) puts a residual block after the strided
# one, so the padding tests cover masking at the output frame rate too.
VOCAB = 11
TINY_BLOCKS = (1, 2)
REFERENCE_PARAMETERS = 7_287_581


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return create_model("i3d_tiny", **{"vocab_size": VOCAB, "stage_blocks": TINY_BLOCKS, **overrides})


def random_batch(lengths, width, seed=0):
    """Zero-padded features [B, max(lengths), width] and lengths [B]."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths, dtype=torch.long)
    x = torch.randn(len(lengths), int(lengths.max()), width, generator=g)
    x[~pad_mask(lengths, x.shape[1])] = 0.0
    return x, lengths


def random_targets(lengths, vocab_size, seed=0):
    g = torch.Generator().manual_seed(seed)
    target_lengths = torch.tensor(lengths, dtype=torch.long)
    return torch.randint(1, vocab_size, (int(target_lengths.sum()),), generator=g), target_lengths


def test_default_parameter_count_near_reference():
    model = I3DTeacher(I3DConfig())
    n, mb = count_parameters(model), model_size_mb(model)
    print(f"\ni3d_teacher default: {n:,} parameters, {mb:.1f} MiB (reference {REFERENCE_PARAMETERS:,}, {n / REFERENCE_PARAMETERS - 1:+.1%})")
    assert model.input_dim == 6516 and model.config.vocab_size == 1296
    assert abs(n / REFERENCE_PARAMETERS - 1) <= 0.10
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())  # batch norm running statistics
    assert mb == pytest.approx((4 * n + buffers) / 2**20)


def test_output_lengths_match_real_shapes():
    model = tiny_model(modalities=("hands",)).eval()
    lengths = list(range(1, 201))
    predicted = model.output_lengths(torch.tensor(lengths)).tolist()
    with torch.no_grad():
        for length, expected in zip(lengths, predicted):
            x, lens = random_batch([length], 126, seed=length)
            log_probs, out_lengths = model(x, lens)
            assert log_probs.shape[1] == expected == int(out_lengths[0]), length
            assert expected == expected_output_length(length) == math.ceil(length / TEMPORAL_STRIDE)
        # in a padded batch each sample gets its own exact length; the tensor is as long as the longest
        x, lens = random_batch([200, 1, 2, 3, 4, 5, 63, 64, 65, 199], 126)
        log_probs, out_lengths = model(x, lens)
    assert out_lengths.tolist() == model.output_lengths(lens).tolist()
    assert log_probs.shape[1] == expected_output_length(200)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_padding_never_leaks(norm):
    model = tiny_model(modalities=MODALITIES, norm=norm)
    if norm == "batch":  # non-trivial running statistics, as after training
        with torch.no_grad():
            model.train()(*random_batch([50, 20], input_dim(), seed=9))
    model.eval()
    lengths = [57, 1, 2, 3, 9, 24, 40, 56]
    x, lens = random_batch(lengths, input_dim(), seed=1)
    garbage = x.clone()
    garbage[~pad_mask(lens, x.shape[1])] = 1e3  # what padding holds must not matter
    with torch.no_grad():
        batched, out_lengths = model(x, lens)
        batched_garbage, _ = model(garbage, lens)
        for b, length in enumerate(lengths):
            alone, alone_lengths = model(x[b : b + 1, :length], lens[b : b + 1])
            n = int(out_lengths[b])
            assert n == int(alone_lengths[0]) == alone.shape[1]
            assert (batched[b, :n] - alone[0]).abs().max().item() <= 1e-5, f"sample of length {length} changes when padded"
            assert (batched_garbage[b, :n] - alone[0]).abs().max().item() <= 1e-5, f"padding values leak into sample {b}"


def test_masked_batch_norm_ignores_padding_and_tracks_valid_frames():
    norm = MaskedBatchNorm1d(4, momentum=1.0)  # momentum 1: running statistics = the last batch's
    x = torch.randn(3, 4, 10) * 3 + 2
    lengths = torch.tensor([10, 6, 2])
    mask = pad_mask(lengths, 10)[:, None, :]
    garbage = x.masked_fill(~mask, 1e4)
    y = norm.train()(garbage, mask)
    valid = x.transpose(1, 2)[mask[:, 0]]  # (valid frames, C)
    expected = (valid - valid.mean(0)) / torch.sqrt(valid.var(0, unbiased=False) + norm.eps)
    assert torch.allclose(y.transpose(1, 2)[mask[:, 0]], expected, atol=1e-5)
    assert torch.allclose(norm.running_mean, valid.mean(0), atol=1e-5)
    assert torch.allclose(norm.running_var, valid.var(0, unbiased=True), atol=1e-4)
    norm.eval()  # eval: running statistics, so a sample alone gives what it gives in any batch
    alone = norm(x[1:2, :, :6], mask[1:2, :, :6])
    assert torch.allclose(norm(x, mask)[1, :, :6], alone[0], atol=1e-6)
    cumulative = MaskedBatchNorm1d(4, momentum=None).train()  # momentum None: running averages are plain means
    cumulative(x, mask)
    cumulative(x * 2, mask)
    assert torch.allclose(cumulative.running_mean, 1.5 * valid.mean(0), atol=1e-5)


def test_padded_frames_get_zero_gradient():
    model = tiny_model().train()
    x, lens = random_batch([30, 12, 5], input_dim(), seed=2)
    x[~pad_mask(lens, x.shape[1])] = float("nan")  # even non-finite padding is inert
    x.requires_grad_(True)
    targets, target_lengths = random_targets([3, 2, 1], VOCAB)
    log_probs, out_lengths = model(x, lens)
    ctc_loss_per_sample(log_probs, out_lengths, targets, target_lengths).mean().backward()
    for b, length in enumerate(lens.tolist()):
        assert torch.count_nonzero(x.grad[b, length:]) == 0
        assert torch.count_nonzero(x.grad[b, :length]) > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_every_parameter_gets_a_finite_nonzero_gradient():
    model = tiny_model().train()
    x, lens = random_batch([40, 25, 8], input_dim(), seed=3)
    targets, target_lengths = random_targets([4, 3, 1], VOCAB)
    log_probs, out_lengths = model(x, lens)
    ctc_loss_per_sample(log_probs, out_lengths, targets, target_lengths).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("modality", MODALITIES)
def test_each_single_modality_builds_and_trains(modality):
    model = tiny_model(modalities=(modality,)).train()
    assert model.input_dim == input_dim(modality)
    x, lens = random_batch([20, 13], input_dim(modality), seed=4)
    targets, target_lengths = random_targets([2, 1], VOCAB)
    log_probs, out_lengths = model(x, lens)
    assert log_probs.shape == (2, expected_output_length(20), VOCAB)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(()), atol=1e-5)
    loss = ctc_loss_per_sample(log_probs, out_lengths, targets, target_lengths).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_hands_only_takes_126_features_and_rejects_the_full_frame():
    model = tiny_model(modalities=("hands",))
    with pytest.raises(ValueError, match=r"expects F=126.*got 6516"):
        model(*random_batch([5], 6516))


def test_bad_inputs_raise_clear_errors():
    model = tiny_model()
    x, lens = random_batch([6, 4], input_dim())
    with pytest.raises(ValueError, match=r"\[B, T, F\]"):
        model(x[0], lens)
    with pytest.raises(ValueError, match="lengths must lie in 1..T=6"):
        model(x, torch.tensor([7, 4]))
    with pytest.raises(ValueError, match="integer tensor"):
        model(x, lens.float())


def test_forward_features_and_head_compose_to_forward():
    model = tiny_model().eval()
    x, lens = random_batch([16, 9], input_dim(), seed=5)
    with torch.no_grad():
        feats, out_lengths = model.forward_features(x, lens)
        log_probs, _ = model(x, lens)
    assert feats.shape == (2, expected_output_length(16), 2 * model.config.lstm_hidden)
    assert torch.count_nonzero(feats[1, int(out_lengths[1]) :]) == 0  # packed LSTM leaves padding at zero
    assert torch.allclose(torch.log_softmax(model.forward_head(feats), -1), log_probs)


def test_initial_loss_close_to_uniform_baseline():
    model = tiny_model(vocab_size=101).eval()
    x, lens = random_batch([48, 33, 20], input_dim(), seed=6)
    targets, target_lengths = random_targets([5, 4, 2], 101)
    with torch.no_grad():
        log_probs, out_lengths = model(x, lens)
    loss = ctc_loss_per_sample(log_probs, out_lengths, targets, target_lengths)
    baseline = uniform_ctc_loss(out_lengths, targets, target_lengths, 101)
    assert torch.allclose(loss, baseline, rtol=0.02)


def test_create_model_overrides_and_unknown_field():
    model = create_model("i3d_teacher", vocab_size=7, modalities=["face", "pose"], conv_dim=32, stage_blocks=[0, 1])
    assert isinstance(model, I3DTeacher) and "i3d_teacher" in list_models()
    assert model.config.modalities == ("pose", "face") and model.config.stage_blocks == (0, 1)
    assert model.classifier.out_features == 7 and model.input_dim == 99 + 1404
    with pytest.raises(TypeError, match=r"unknown configuration field\(s\) \['hidden_size'\].*fusion_dim"):
        create_model("i3d_teacher", hidden_size=3)
    with pytest.raises(ValueError, match="registered models"):
        create_model("resnet_1000")
    with pytest.raises(ValueError, match="dropout"):
        create_model(dropout=1.5)


def test_register_model_requires_config_class():
    with pytest.raises(TypeError, match="config_class"):
        register_model("no_config")(torch.nn.Identity)


def test_rebuilt_from_checkpoint_args_gives_same_output():
    model = tiny_model(seed=7, modalities=("pose", "hands")).eval()
    model_args = json.loads(json.dumps(dataclasses.asdict(model.config)))  # as a checkpoint stores it
    rebuilt = model_from_checkpoint_args("i3d_teacher", model_args).eval()
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())
    x, lens = random_batch([15, 7], input_dim(("pose", "hands")), seed=8)
    with torch.no_grad():
        assert torch.equal(model(x, lens)[0], rebuilt(x, lens)[0])


VARIANT_SIZES = {  # the sizes model/registry.py documents for each named variant of the teacher
    "i3d_small": dict(modality_dim=32, fusion_dim=64, conv_dim=64, lstm_hidden=32, stage_blocks=(1, 1)),
    "i3d_tiny": dict(modality_dim=16, fusion_dim=32, conv_dim=32, lstm_hidden=16, stage_blocks=(1, 1)),
}


@pytest.mark.parametrize("name", sorted(VARIANT_SIZES))
def test_variant_builds_its_sizes_and_rebuilds_from_checkpoint_args(name):
    sizes = VARIANT_SIZES[name]
    assert name in list_models()
    torch.manual_seed(0)
    model = create_model(name, vocab_size=VOCAB, modalities=("pose", "hands")).eval()
    assert isinstance(model, I3DTeacher) and {k: getattr(model.config, k) for k in sizes} == sizes
    assert model.config.dropout == I3DConfig.dropout and model.config.norm == I3DConfig.norm  # the rest: the teacher's defaults
    assert len(model.blocks) == sum(sizes["stage_blocks"]) and model.lstm.hidden_size == sizes["lstm_hidden"]
    assert model.stem.conv.out_channels == sizes["conv_dim"] and model.fusion.mix[1].out_features == sizes["fusion_dim"]
    assert create_model(name, vocab_size=VOCAB, conv_dim=48).config.conv_dim == 48  # overrides win over the variant's sizes
    model_args = json.loads(json.dumps(dataclasses.asdict(model.config)))  # as a checkpoint stores it
    rebuilt = model_from_checkpoint_args(name, model_args).eval()
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())
    x, lens = random_batch([15, 7], input_dim(("pose", "hands")), seed=8)
    with torch.no_grad():
        assert torch.equal(model(x, lens)[0], rebuilt(x, lens)[0])


def test_bfloat16_autocast_forward_backward():
    model = tiny_model().train()
    x, lens = random_batch([30, 12], input_dim(), seed=9)
    targets, target_lengths = random_targets([3, 2], VOCAB)
    torch.manual_seed(0)
    reference = ctc_loss_per_sample(*model(x, lens), targets, target_lengths)
    torch.manual_seed(0)  # same dropout masks
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_probs, out_lengths = model(x, lens)
    loss = ctc_loss_per_sample(log_probs, out_lengths, targets, target_lengths)
    loss.mean().backward()
    assert loss.dtype == torch.float32 and torch.allclose(loss, reference, rtol=0.05)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
