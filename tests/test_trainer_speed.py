"""The trainer's speed-ups keep its results: the mirror of cached features equals the raw-landmark
path, length-bucketed batches see every sample once an epoch and are reproducible."""
import math

import numpy as np
import pytest
import torch

from data.augment import FEATURE_MIRROR_COLUMNS, FEATURE_MIRROR_SIGN, Augmenter, mirror
from data.corpus import SampleRecord, atomic_save_npy, write_manifest
from data.dataset import MediaPipeFeatureDataset, model_features
from data.layout import FEATURE_DIM, LAYOUT, MIRROR_COLUMNS, RAW_DIM
from data.normalize import _body_frame
from model import training
from tests.corpus_factory import random_raw


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Train samples with a hand missing in a run of frames, a hand never seen, both hands never
    seen, no shoulders at all, and a [T, 6516] file."""
    root = tmp_path_factory.mktemp("speed")
    rng = np.random.default_rng(5)
    records = []
    for i in range(8):
        t = int(rng.integers(24, 60))
        raw = random_raw(rng, t, missing_left=0.3)
        if i == 1:
            raw[:, LAYOUT.right_hand] = np.nan  # never seen: imputed to 0, then body-centred
        if i == 2:
            raw[:, LAYOUT.hands] = np.nan
        if i == 3:
            raw[:, 11 * 3 : 13 * 3] = np.nan  # no shoulders: the body frame falls back to image units
        if i == 4:
            raw[5:9, LAYOUT.face] = np.nan
        arr = raw
        if i == 5:  # the incident report's format: raw block and its own temporal block
            feats, _ = model_features(raw)
            arr = np.concatenate([raw, feats[:, RAW_DIM:]], axis=1)
        sid = f"train{i:03d}"
        atomic_save_npy(root / "features" / f"{sid}.npy", arr.astype(np.float32))
        records.append(SampleRecord(sid, "train", ("A", "B") if i % 2 else ("C",), f"features/{sid}.npy", signer=f"s{i % 3}", fps=25.0))
    write_manifest(root, records)
    return root


def atol(ds: MediaPipeFeatureDataset, i: int) -> float:
    """x -> 1 - x rounds to float32's step at 1.0 (2**-24) before the temporal differences take it
    (the acceleration adds 4 such steps); the body normalization divides by the shoulder width."""
    _, width = _body_frame(np.asarray(ds.corpus.load(ds.records[i]), dtype=np.float32)[:, :RAW_DIM])
    return 8 * 2.0**-24 / max(width, ds.normalizer.std_floor)


def raw_path(ds: MediaPipeFeatureDataset, i: int, draw: int) -> np.ndarray:
    """Draw `draw` of sample i the way every other recipe makes it: augment the raw landmarks,
    then temporal block, imputation, normalization, modalities."""
    raw = np.asarray(ds.corpus.load(ds.records[i]), dtype=np.float32)[:, :RAW_DIM]
    rng, min_frames = ds._augment_rng(i, draw)
    feats, nan_raw = model_features(ds.augmenter(raw, rng, min_frames=min_frames), ds.impute_method)
    return ds.normalizer(feats, raw=nan_raw)[:, ds.columns]


@pytest.mark.parametrize("modalities", [None, ("hands", "temporal"), ("pose", "face")])
def test_mirror_of_cached_features_equals_the_raw_landmark_path(corpus, modalities):
    ds = MediaPipeFeatureDataset(corpus, "train", normalization="body", modalities=modalities, augment={"recipe": "default"},
                                 augment_seed=4, cache_bytes=1 << 30)
    assert ds._feature_mirror is not None
    mirrored = plain = 0
    for i in range(len(ds)):
        for draw in range(6):
            fast, expected = ds.features(i, draw), raw_path(ds, i, draw)
            assert fast.shape == expected.shape and fast.dtype == np.float32
            if ds.augmenter.plan(ds._augment_rng(i, draw)[0]):
                mirrored += 1
                # equal up to the rounding of x -> 1 - x in float32 (the raw path's, before its differences)
                np.testing.assert_allclose(fast, expected, rtol=1e-5, atol=atol(ds, i))
            else:
                plain += 1
                np.testing.assert_array_equal(fast, expected)  # the unaugmented draw is the very same array
    assert mirrored > 5 and plain > 5


def test_never_seen_landmarks_keep_the_imputed_zero_when_mirrored(corpus):
    ds = MediaPipeFeatureDataset(corpus, "train", normalization="body", augment={"mirror": 1.0}, cache_bytes=1 << 30)
    for i in (1, 2):
        fast, expected = ds.features(i, 0), raw_path(ds, i, 0)
        # the left hand of the mirror image is the right hand never seen: imputation's 0, centred
        left_x = np.arange(LAYOUT.left_hand.start, LAYOUT.left_hand.stop, 3)
        np.testing.assert_array_equal(fast[:, left_x], expected[:, left_x])
        assert np.unique(fast[:, left_x]).size == 1
        np.testing.assert_allclose(fast, expected, rtol=1e-5, atol=atol(ds, i))


def test_feature_mirror_is_the_raw_mirror_on_every_block():
    assert np.array_equal(FEATURE_MIRROR_COLUMNS[FEATURE_MIRROR_COLUMNS], np.arange(FEATURE_DIM))  # an involution
    for block in range(4):
        np.testing.assert_array_equal(FEATURE_MIRROR_COLUMNS[block * RAW_DIM : (block + 1) * RAW_DIM], MIRROR_COLUMNS + block * RAW_DIM)
    assert (FEATURE_MIRROR_SIGN[0::3] == -1).all() and (FEATURE_MIRROR_SIGN[1::3] == 1).all() and (FEATURE_MIRROR_SIGN[2::3] == 1).all()
    raw = random_raw(np.random.default_rng(0), 12, missing_left=0.0)
    twice = mirror(mirror(raw))
    np.testing.assert_allclose(twice, raw, atol=1e-6)


def test_the_mirror_recipe_caches_unaugmented_features_and_reproduces(corpus):
    a = MediaPipeFeatureDataset(corpus, "train", normalization="body", augment={"recipe": "default"}, augment_seed=1, cache_bytes=1 << 30)
    b = MediaPipeFeatureDataset(corpus, "train", normalization="body", augment={"recipe": "default"}, augment_seed=1, cache_bytes=1 << 30)
    epochs_a = [[a[i].features for i in range(len(a))] for _ in range(3)]
    epochs_b = [[b[i].features for i in range(len(b))] for _ in range(3)]
    for ea, eb in zip(epochs_a, epochs_b):
        assert all(torch.equal(x, y) for x, y in zip(ea, eb))  # the same seed: the same draws
    assert any(not torch.equal(x, y) for x, y in zip(epochs_a[0], epochs_a[1]))  # a new draw each epoch
    cached = a._cache[0]
    assert isinstance(cached, torch.Tensor) and cached.shape[1] == FEATURE_DIM
    assert torch.equal(cached, torch.from_numpy(raw_path(a, 0, draw_without_mirror(a, 0))))
    # no budget: the same values, computed every time
    c = MediaPipeFeatureDataset(corpus, "train", normalization="body", augment={"recipe": "default"}, augment_seed=1, cache_bytes=0)
    assert all(torch.equal(c[i].features, epochs_a[0][i]) for i in range(len(c))) and not c._cache


def draw_without_mirror(ds, i: int) -> int:
    return next(d for d in range(100) if not ds.augmenter.plan(ds._augment_rng(i, d)[0]))


@pytest.mark.parametrize("kwargs", [
    {"normalization": "global"}, {"normalization": "per_sample"}, {"normalization": "body", "impute_method": "zero"},
    {"normalization": "body", "augment": {"mirror": 0.5, "jitter": 0.5}}, {"normalization": "body", "augment": {"jitter": 1.0}},
])
def test_other_recipes_and_pipelines_augment_the_raw_landmarks(corpus, kwargs):
    kwargs = {"augment": {"recipe": "default"}, **kwargs}
    ds = MediaPipeFeatureDataset(corpus, "train", **kwargs)
    assert ds._feature_mirror is None
    for draw in range(3):
        np.testing.assert_array_equal(ds.features(0, draw), raw_path(ds, 0, draw))


def test_plan_is_what_the_augmenter_applies():
    raw = random_raw(np.random.default_rng(1), 30)
    a = Augmenter({"recipe": "all"})
    for draw in range(8):
        rng = np.random.default_rng(draw)
        names = [n for n, _ in a.plan(np.random.default_rng(draw))]
        assert names == [n for n in ("speed", "frame_drop", "mirror", "affine", "jitter", "hand_dropout") if n in names]
        out = a(raw, rng)
        if not names:
            assert np.array_equal(out, raw, equal_nan=True)
    assert Augmenter({"recipe": "default"}).mirror_only and not Augmenter({"mirror": 0.5, "jitter": 0.1}).mirror_only


# ----------------------------------------------------------------------------- length-bucketed batches


def test_bucketed_batches_cover_each_rank_shard_once_and_reproduce():
    lengths = list(np.random.default_rng(0).integers(20, 200, size=103))
    for world in (1, 2, 3):
        for epoch in (1, 2):
            seen = []
            for rank in range(world):
                s = training.LengthBucketSampler(lengths, 8, rank, world, seed=3)
                s.set_epoch(epoch)
                batches = list(s)
                shard = training.ShardedSampler(len(lengths), rank, world, seed=3)
                shard.set_epoch(epoch)
                assert sorted(i for b in batches for i in b) == sorted(shard)  # the same samples as before, once
                assert len(batches) == len(s) == math.ceil(len(shard) / 8)
                assert all(1 <= len(b) <= 8 for b in batches)
                again = training.LengthBucketSampler(lengths, 8, rank, world, seed=3)
                again.set_epoch(epoch)
                assert list(again) == batches  # reproducible
                seen += [i for b in batches for i in b]
            assert sorted(seen) == list(range(len(lengths)))


def test_bucketed_batches_pad_less_and_change_every_epoch():
    lengths = np.random.default_rng(1).integers(40, 110, size=240)
    s = training.LengthBucketSampler(lengths, 8, seed=0)
    plain = training.ShardedSampler(len(lengths), 0, 1, seed=0)

    def padded(batches) -> float:
        return sum(max(lengths[b]) * len(b) for b in batches) / lengths.sum()

    ratios, firsts = [], []
    for epoch in range(1, 4):
        s.set_epoch(epoch)
        plain.set_epoch(epoch)
        order = list(plain)
        ratios.append((padded(list(s)), padded([order[k : k + 8] for k in range(0, len(order), 8)])))
        firsts.append(list(s)[0])
    assert all(bucketed < 1.12 < random for bucketed, random in ratios), ratios
    assert firsts[0] != firsts[1] != firsts[2]
    assert training.LengthBucketSampler(lengths, 8, seed=1).__iter__().__next__() != training.LengthBucketSampler(lengths, 8, seed=0).__iter__().__next__()


def test_dataset_lengths_from_headers_or_none(corpus):
    ds = MediaPipeFeatureDataset(corpus, "train", normalization="body")
    assert training.dataset_lengths(ds) == [ds[i].length for i in range(len(ds))]
    assert training.dataset_lengths([1, 2, 3]) is None


# ----------------------------------------------------------------------------- the model's training forward


def _model(norm: str = "batch", dtype=torch.float32):
    from model.registry import create_model

    torch.manual_seed(0)
    model = create_model("i3d_small", vocab_size=9, dropout=0.0, norm=norm).to(dtype).train()
    with torch.no_grad():  # a LayerNorm affine that is not the identity: the fold must carry it
        for name, p in model.named_parameters():
            if name.startswith("fusion.proj."):
                p.add_(0.1 * torch.randn_like(p))
    return model


def _padded_batch(dtype=torch.float32):
    torch.manual_seed(1)
    x = torch.randn(4, 37, FEATURE_DIM, dtype=dtype)
    lengths = torch.tensor([37, 30, 21, 9])
    x[1, 30:] = float("nan")  # what padded frames hold never matters
    x[3, 9:] = 1e6
    return x, lengths


def _forward_backward(model, x, lengths, grad_out=None):
    model.zero_grad(set_to_none=True)
    log_probs, out_lengths = model(x, lengths)
    grad_out = torch.randn_like(log_probs) if grad_out is None else grad_out
    log_probs.backward(grad_out)
    return log_probs.detach(), out_lengths, {n: p.grad.clone() for n, p in model.named_parameters()}, grad_out


def test_training_forward_is_the_module_forward_in_float64(monkeypatch):
    """The folded fusion on the valid frames, the stacked 1x1 convs and the LSTM by direction compute
    the same function and gradients as the modules one by one (instance norm: float64 throughout)."""
    import model.i3d as i3d

    model = _model("instance", torch.float64)
    x, lengths = _padded_batch(torch.float64)
    fast = _forward_backward(model, x, lengths)
    monkeypatch.setattr(i3d, "differentiating", lambda module: False)
    plain = _forward_backward(model, x, lengths, fast[3])
    assert torch.equal(fast[1], plain[1])
    valid = torch.arange(fast[0].shape[1])[None, :] < fast[1][:, None]
    assert torch.allclose(fast[0][valid], plain[0][valid], rtol=0, atol=1e-12)
    for name, grad in plain[2].items():
        assert torch.isfinite(fast[2][name]).all(), name
        assert torch.allclose(fast[2][name], grad, rtol=1e-9, atol=1e-12), name


def test_training_forward_with_batch_norm_updates_the_same_running_statistics(monkeypatch):
    import model.i3d as i3d

    model = _model("batch")
    start = {k: v.clone() for k, v in model.state_dict().items()}
    x, lengths = _padded_batch()
    fast = _forward_backward(model, x, lengths)
    after_fast = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(start)
    monkeypatch.setattr(i3d, "differentiating", lambda module: False)
    plain = _forward_backward(model, x, lengths, fast[3])
    valid = torch.arange(fast[0].shape[1])[None, :] < fast[1][:, None]
    assert torch.allclose(fast[0][valid], plain[0][valid], atol=1e-5)
    for key, value in model.state_dict().items():
        assert torch.allclose(after_fast[key].double(), value.double(), atol=1e-5), key
    assert all(torch.isfinite(g).all() for g in fast[2].values())


def test_lstm_by_direction_is_the_packed_lstm():
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from model.i3d import lstm_by_direction

    torch.manual_seed(2)
    lstm = torch.nn.LSTM(16, 8, batch_first=True, bidirectional=True).double()
    x = torch.randn(3, 11, 16, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([11, 4, 7])
    out, _ = lstm(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    packed, _ = pad_packed_sequence(out, batch_first=True, total_length=11)
    mine = lstm_by_direction(lstm, x, lengths)
    assert torch.allclose(mine, packed, atol=1e-12) and (mine[1, 4:] == 0).all()
    g = torch.randn_like(packed)
    a = torch.autograd.grad(packed, [x, *lstm.parameters()], g)
    b = torch.autograd.grad(mine, [x, *lstm.parameters()], g)
    assert all(torch.allclose(u, v, atol=1e-12) for u, v in zip(a, b))


def test_without_gradients_the_modules_run_one_by_one():
    """What the harness watches (its probes run under no_grad, export in eval mode): every module."""
    model = _model()
    x, lengths = _padded_batch()
    for mode, grad in (("train", False), ("eval", True), ("eval", False)):
        called = set()
        handles = [m.register_forward_hook(lambda mod, i, o, name=n: called.add(name)) for n, m in model.named_modules() if n]
        getattr(model, mode)()
        with torch.set_grad_enabled(grad):
            model(x, lengths)
        for h in handles:
            h.remove()
        assert {"fusion.proj.face.0", "fusion.proj.temporal.1", "lstm", "blocks.0.branch1", "blocks.0.branch5_reduce.norm"} <= called, (mode, grad)
