import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from data.corpus import Corpus, CorpusError, SampleRecord, atomic_save_npy, read_manifest, update_manifest, write_manifest
from data.dataset import MediaPipeFeatureDataset, Vocabulary, collate, compute_train_stats, model_features
from data.layout import FEATURE_DIM, LAYOUT, RAW_DIM
from data.normalize import METHODS, STD_FLOOR, DoubleNormalizationError, Normalizer, RunningStats, impute
from data.temporal import DISPLACEMENT_WINDOW, temporal_features
from tests.corpus_factory import make_corpus, random_raw

# ----------------------------------------------------------------------------- temporal features


def test_temporal_definition_on_a_ramp():
    t = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, RAW_DIM), np.float32)
    t = t * t  # x = t^2: velocity 2t-1, acceleration 2, displacement over K
    out = temporal_features(t)
    vel, acc, disp = out[:, :RAW_DIM], out[:, RAW_DIM : 2 * RAW_DIM], out[:, 2 * RAW_DIM :]
    assert vel[0, 0] == 0 and vel[5, 0] == 25 - 16
    assert acc[1, 0] == 0 and acc[5, 0] == 2
    k = DISPLACEMENT_WINDOW
    assert disp[k - 1, 0] == 0 and disp[k + 2, 0] == (k + 2) ** 2 - 4


def test_reappearing_hand_gives_no_velocity_spike():
    raw = np.full((6, RAW_DIM), 0.5, np.float32)
    raw[:3, LAYOUT.left_hand] = np.nan  # hand undetected, then appears at 0.9
    raw[3:, LAYOUT.left_hand] = 0.9
    out = temporal_features(raw)
    assert np.isfinite(out).all()
    assert np.abs(out[:, LAYOUT.left_hand]).max() == 0.0  # vel at t=3 depends on t=2 (missing) -> 0


finite_frames = arrays(np.float32, st.tuples(st.integers(1, 12), st.just(RAW_DIM)), elements=st.floats(-2, 2, width=32) | st.just(np.nan))


@settings(max_examples=30, deadline=None)
@given(finite_frames)
def test_temporal_finite_and_zero_where_missing(raw):
    out = temporal_features(raw)
    assert out.shape == (raw.shape[0], 3 * RAW_DIM) and np.isfinite(out).all()
    vel = out[:, :RAW_DIM]
    missing = np.isnan(raw)
    assert (vel[missing] == 0).all()
    assert (vel[1:][missing[:-1]] == 0).all()


# ----------------------------------------------------------------------------- imputation and normalization


def test_ffill_carries_last_seen_and_backfills_leading_gap():
    raw = np.full((5, RAW_DIM), np.nan, np.float32)
    raw[1, 0], raw[3, 0] = 0.2, 0.7
    x = impute(raw, "ffill")
    assert list(x[:, 0]) == pytest.approx([0.2, 0.2, 0.2, 0.7, 0.7])
    assert (x[:, 1] == 0).all()  # never seen -> 0
    assert (impute(raw, "zero")[:, 0] == np.nan_to_num(raw[:, 0])).all()


def test_running_stats_match_numpy():
    rng = np.random.default_rng(1)
    chunks = [rng.normal(3, 2, size=(int(n), 5)) for n in (1, 7, 30)]
    rs = RunningStats(5)
    for c in chunks:
        rs.update(c)
    allx = np.concatenate(chunks)
    s = rs.stats()
    assert np.allclose(s.mean, allx.mean(0)) and np.allclose(s.std, allx.std(0)) and s.n_frames == 38


def _stats_for(x):
    rs = RunningStats()
    rs.update(x)
    return rs.stats()


adversarial = st.sampled_from(["constant", "all_nan_hand", "one_frame", "random", "tiny_var"])


@settings(max_examples=40, deadline=None)
@given(kind=adversarial, method=st.sampled_from(METHODS), t=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_every_method_finite_and_bounded_on_adversarial_input(kind, method, t, seed):
    rng = np.random.default_rng(seed)
    if kind == "one_frame":
        t = 1
    raw = random_raw(rng, t, missing_left=0.0)
    if kind == "constant":
        raw[:] = 0.5
    elif kind == "all_nan_hand":
        raw[:, LAYOUT.hands] = np.nan
    elif kind == "tiny_var":
        raw = 0.5 + rng.normal(0, 1e-7, size=raw.shape).astype(np.float32)
    feats, raw_nan = model_features(raw)
    # train stats from an unrelated, constant-channel-heavy sample: the std floor must hold
    stats = _stats_for(model_features(np.full((3, RAW_DIM), 0.5, np.float32))[0])
    out = Normalizer(method, stats=stats)(feats, raw=raw_nan)
    assert np.isfinite(out).all()
    assert np.abs(out).max() <= 50


def test_normalizer_rejects_bad_configuration():
    with pytest.raises(ValueError, match="train split"):
        Normalizer("global")
    with pytest.raises(ValueError, match="unknown normalization"):
        Normalizer("zscore_twice")
    with pytest.raises(ValueError, match="std_floor"):
        Normalizer("per_sample", std_floor=0)


def test_global_std_floor_in_effect_for_constant_channel():
    x = np.zeros((10, FEATURE_DIM), np.float32)
    x[:, 0] = np.linspace(0, 1, 10)
    norm = Normalizer("global", stats=_stats_for(x))
    assert 0 not in norm.floored_columns() and 1 in norm.floored_columns()
    y = x.copy()
    y[:, 1] = 0.01  # a dev sample where the train-constant channel moves a little
    out = norm(y)
    assert out[0, 1] == pytest.approx(0.01 / STD_FLOOR)


def test_body_normalization_centres_on_shoulders():
    raw = np.full((4, RAW_DIM), 0.5, np.float32)
    raw[:, 11 * 3 : 11 * 3 + 2] = [0.6, 0.4]
    raw[:, 12 * 3 : 12 * 3 + 2] = [0.4, 0.4]
    feats, r = model_features(raw)
    out = Normalizer("body")(feats, raw=r)
    assert out[0, 11 * 3] == pytest.approx(0.1 / 0.2) and out[0, 11 * 3 + 1] == pytest.approx(0.0)


# ----------------------------------------------------------------------------- corpus and dataset


def test_manifest_errors_name_row_and_fix(tmp_path):
    make_corpus(tmp_path)
    recs = read_manifest(tmp_path)
    bad = recs + [SampleRecord(recs[0].id, "valid", (), "../../etc/passwd")]
    write_manifest(tmp_path, bad)
    with pytest.raises(CorpusError) as e:
        read_manifest(tmp_path)
    msg = str(e.value)
    assert "duplicate id" in msg and "unknown split 'valid'" in msg and "empty gloss" in msg and "leaves the corpus" in msg
    (tmp_path / "manifest.csv").write_text("id,split,path\nx,train,a.npy\n")
    with pytest.raises(CorpusError, match=r"missing required column\(s\) \['glosses'\]"):
        read_manifest(tmp_path)


def test_bad_feature_files_are_named(tmp_path):
    make_corpus(tmp_path, n_train=3, n_dev=1, n_test=1)
    c = Corpus(tmp_path)
    f0, f1, f2 = (c.file(r) for r in c.records[:3])
    atomic_save_npy(f0, np.zeros((5, 100), np.float32))
    f1.write_bytes(f1.read_bytes()[:200])
    atomic_save_npy(f2, np.array([["a", "b"]]))
    for f, pat in ((f0, r"shape \(5, 100\)"), (f1, "not a readable"), (f2, "dtype")):
        with pytest.raises(CorpusError, match=pat) as e:
            c.load(next(r for r in c.records if c.file(r) == f))
        assert f.name in str(e.value)
    f0.unlink()
    with pytest.raises(CorpusError, match="feature file missing"):
        c.load(c.records[0])


def test_update_manifest_keeps_rows(tmp_path):
    make_corpus(tmp_path, n_train=2, n_dev=1, n_test=1)
    before = read_manifest(tmp_path)
    new = SampleRecord("extra", "train", ("A",), "features/train000.npy")
    replaced = SampleRecord(before[0].id, "train", ("B", "C"), before[0].path)
    after = update_manifest(tmp_path, [new, replaced])
    assert [r.id for r in after] == [r.id for r in before] + ["extra"]
    assert after[0].glosses == ("B", "C")


def test_dataset_pipeline_and_collate(tmp_path):
    make_corpus(tmp_path)
    ds = MediaPipeFeatureDataset(tmp_path, "train", normalization="global", modalities=("pose", "hands"))
    s = ds[0]
    assert s.features.shape[1] == 99 + 126 and s.features.dtype == torch.float32
    assert torch.isfinite(s.features).all() and (s.targets > 0).all()
    b = collate([ds[i] for i in range(3)])
    assert b.features.shape == (3, int(b.lengths.max()), 225)
    assert b.target_lengths.sum() == b.targets.numel() and b.ids == [r.id for r in ds.records[:3]]
    assert b.normalization == "global"
    for i, n in enumerate(b.lengths):
        assert (b.features[i, n:] == 0).all()


def test_in_memory_cache_serves_identical_samples_within_its_budget(tmp_path):
    make_corpus(tmp_path)
    plain = MediaPipeFeatureDataset(tmp_path, "train", normalization="per_sample")
    one = plain[0].features
    budget = one.numel() * one.element_size()  # room for the first sample only
    cached = MediaPipeFeatureDataset(tmp_path, "train", normalization="per_sample", cache_bytes=budget)
    first = [cached[i].features for i in range(len(cached))]
    second = [cached[i].features for i in range(len(cached))]
    assert all(torch.equal(a, plain[i].features) and torch.equal(b, a) for i, (a, b) in enumerate(zip(first, second)))
    assert second[0] is first[0]  # served from memory
    assert all(second[i] is not first[i] for i in range(1, len(cached)))  # over budget: loaded again
    assert cached._cached_bytes <= budget


def test_global_stats_come_from_train_only(tmp_path):
    make_corpus(tmp_path)
    c = Corpus(tmp_path)
    stats = compute_train_stats(c)
    train_frames = sum(c.load(r).shape[0] for r in c.split("train"))
    assert stats.n_frames == train_frames


def test_vocabulary_blank_zero_and_unknown(tmp_path):
    make_corpus(tmp_path)
    v = Vocabulary.from_records(Corpus(tmp_path).records)
    assert v.itos[0] == "<blank>" and v.encode(["A", "C"]) == [1, 3]
    with pytest.raises(Exception, match="sample 'x'.*'Z'"):
        v.encode(["Z"], "x")
    assert v.encode(["Z", "A"], "x", unknown="skip") == [1]
    v.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").itos == v.itos


KAGGLE = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kaggle_asl_signs"


@pytest.mark.real_data
@pytest.mark.parametrize("impute_method", ["ffill", "zero"])
def test_every_method_finite_and_bounded_on_real_kaggle_sequences(tmp_path_factory, impute_method):
    if not KAGGLE.is_dir():
        pytest.skip(f"{KAGGLE} absent: the real Kaggle landmarks live in ../shared/data")
    pytest.importorskip("pyarrow")
    from data.convert import kaggle_to_corpus

    corpus = kaggle_to_corpus(KAGGLE, tmp_path_factory.mktemp("kaggle") / "corpus")
    c = Corpus(corpus)
    raws = [c.load(r) for r in c.records]
    assert any(np.isnan(r[:, LAYOUT.left_hand]).all() for r in raws)  # real undetected hands
    stats = compute_train_stats(c, impute_method)
    for method in METHODS:
        norm = Normalizer(method, stats=stats)
        worst = 0.0
        for raw in raws:
            feats, raw_nan = model_features(raw, impute_method)
            out = norm(feats, raw=raw_nan)
            assert np.isfinite(out).all(), (method, impute_method)
            worst = max(worst, float(np.abs(out).max()))
        assert worst <= 50, (method, impute_method, worst)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 30), st.integers(1, 5)), min_size=1, max_size=6))
def test_collate_pads_and_keeps_every_sample(shapes):
    from data.dataset import Sample

    samples = [
        Sample(f"s{i}", torch.randn(t, 7), torch.randint(1, 9, (n,)), tuple("A" * n), "global") for i, (t, n) in enumerate(shapes)
    ]
    b = collate(samples)
    assert b.features.shape == (len(shapes), max(t for t, _ in shapes), 7)
    assert b.lengths.tolist() == [t for t, _ in shapes] and b.target_lengths.tolist() == [n for _, n in shapes]
    assert torch.equal(b.targets, torch.cat([s.targets for s in samples]))
    for i, s in enumerate(samples):
        assert torch.equal(b.features[i, : s.length], s.features) and (b.features[i, s.length :] == 0).all()
    mixed = samples + [Sample("x", torch.zeros(2, 7), torch.ones(1, dtype=torch.long), ("A",), "per_sample")]
    with pytest.raises(DoubleNormalizationError):
        collate(mixed)
