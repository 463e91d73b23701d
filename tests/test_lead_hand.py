"""Leading-hand canonicalisation (data/augment.py: lead_canonical, TrainConfig.lead_hand): in the
dataset's every split, and in model.evaluate / model.recognize through the checkpoint."""
import numpy as np
import pytest
import torch

from data.augment import lead_canonical, mirror
from data.corpus import Corpus, SampleRecord, atomic_save_npy, write_manifest
from data.dataset import MediaPipeFeatureDataset, Vocabulary
from data.layout import LAYOUT, RAW_DIM
from data.profile import sample_leading_hand
from model.config import TrainConfig
from tests.corpus_factory import random_raw


def one_handed(seed: int, hand: str, t: int = 30) -> np.ndarray:
    """[t, 1629] with only `hand` detected (the other NaN throughout): that hand leads it."""
    raw = random_raw(np.random.default_rng(seed), t, missing_left=0.0)
    other = "right_hand" if hand == "left_hand" else "left_hand"
    raw[:, getattr(LAYOUT, other)] = np.nan
    return raw


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Train: two left-led, two right-led samples; dev and test: one of each."""
    root = tmp_path_factory.mktemp("lead")
    records = []
    for split, hands in (("train", ["left_hand", "right_hand"] * 2), ("dev", ["left_hand", "right_hand"]), ("test", ["left_hand", "right_hand"])):
        for i, hand in enumerate(hands):
            sid = f"{split}{i}-{hand}"
            atomic_save_npy(root / "features" / f"{sid}.npy", one_handed(len(records), hand))
            records.append(SampleRecord(sid, split, ("A", "B"), f"features/{sid}.npy", signer=f"s{i}", fps=25.0))
    write_manifest(root, records)
    return root


def test_a_left_led_sample_comes_out_as_its_mirror_a_right_led_one_unchanged():
    left, right = one_handed(0, "left_hand"), one_handed(1, "right_hand")
    assert (sample_leading_hand(left), sample_leading_hand(right)) == ("left_hand", "right_hand")
    np.testing.assert_array_equal(lead_canonical(left, "right_hand"), mirror(left))
    assert lead_canonical(right, "right_hand") is right
    assert lead_canonical(left, "left_hand") is left
    np.testing.assert_array_equal(lead_canonical(right, "left_hand"), mirror(right))
    both = random_raw(np.random.default_rng(2), 30, missing_left=0.0)  # both hands move alike: neither leads
    assert sample_leading_hand(both) is None and lead_canonical(both, "right_hand") is both
    full = np.concatenate([left, np.zeros((30, 3 * RAW_DIM), np.float32)], axis=1)  # a [T, 6516] file: its raw block, mirrored
    np.testing.assert_array_equal(lead_canonical(full, "right_hand"), mirror(left))
    with pytest.raises(ValueError, match="lead_hand"):
        lead_canonical(left, "right")


@pytest.mark.parametrize("augment", [None, {"recipe": "default"}, {"jitter": 1.0}])
def test_the_dataset_serves_left_led_samples_mirrored_in_every_split(corpus, augment):
    c = Corpus(corpus)
    for split in ("train", "dev", "test"):
        aug = augment if split == "train" else None
        ds = MediaPipeFeatureDataset(corpus, split, normalization="body", lead_hand="right_hand", augment=aug, cache_bytes=1 << 30)
        plain = MediaPipeFeatureDataset(corpus, split, normalization="body", augment=aug)
        for i, rec in enumerate(ds.records):
            raw = np.asarray(c.load(rec))
            got = ds.features(i, draw=3)
            if rec.id.endswith("left_hand"):  # the mirror of the sample: what a dataset of the mirrored file yields
                mirrored = mirror_corpus_features(corpus, rec, raw, split, aug)
                np.testing.assert_allclose(got, mirrored, atol=1e-5)
            else:
                np.testing.assert_array_equal(got, plain.features(i, draw=3))


def mirror_corpus_features(root, rec, raw, split, augment) -> np.ndarray:
    """Features of draw 3 of `rec` from a copy of the corpus whose file holds mirror(raw) instead."""
    copy = root.parent / f"{root.name}-mirrored-{rec.id}"
    if not copy.exists():
        records = Corpus(root).records
        for r in records:
            atomic_save_npy(copy / r.path, mirror(raw) if r.id == rec.id else np.asarray(Corpus(root).load(r)))
        write_manifest(copy, records)
    ds = MediaPipeFeatureDataset(copy, split, normalization="body", augment=augment)
    return ds.features([r.id for r in ds.records].index(rec.id), draw=3)


def test_lead_hand_is_validated_and_travels_with_the_checkpoint(corpus, tmp_path):
    from data.layout import input_dim
    from model import training
    from model.checkpoint import build_eval_data, load_trained
    from model.recognize import model_input

    with pytest.raises(ValueError, match="lead_hand"):
        TrainConfig(lead_hand="right")
    cfg = TrainConfig(model="i3d_tiny", data_dir=str(corpus), batch_size=2, lead_hand="right_hand", augment={})
    data = training.build_data(cfg)
    assert {s: ds.lead_hand for s, ds in data.splits.items()} == {"train": "right_hand", "dev": "right_hand", "test": "right_hand"}
    vocab = Vocabulary.from_records(Corpus(corpus).records)
    model = training.build_model(cfg, len(vocab))
    path = tmp_path / "best.pt"
    torch.save({"model_name": cfg.model, "model_args": training.model_args(cfg, model, len(vocab), input_dim(cfg.modalities)),
                "model": model.state_dict(), "vocab": vocab.to_list(), "config": cfg.to_dict(), "norm_stats": None}, path)
    trained = load_trained(path)
    assert trained.cfg.lead_hand == "right_hand"
    _, evaluated = build_eval_data(trained)  # model.evaluate's data
    test = evaluated.splits["test"]
    assert test.lead_hand == "right_hand"
    for i, rec in enumerate(test.records):
        raw = np.asarray(test.corpus.load(rec))
        np.testing.assert_array_equal(model_input(trained, raw), test.features(i))  # model.recognize's input
        if rec.id.endswith("left_hand"):
            np.testing.assert_array_equal(model_input(trained, raw), model_input(trained, mirror(raw)))
    off = load_trained_with(path, tmp_path, lead_hand=None)
    left = next(i for i, r in enumerate(test.records) if r.id.endswith("left_hand"))
    raw = np.asarray(test.corpus.load(test.records[left]))
    assert not np.array_equal(model_input(off, raw), test.features(left))


def load_trained_with(path, tmp_path, **changes):
    """The checkpoint at `path` with configuration fields changed, loaded."""
    from model.checkpoint import load_trained

    ckpt = torch.load(path, weights_only=True)
    ckpt["config"] = {**ckpt["config"], **changes}
    other = tmp_path / "changed.pt"
    torch.save(ckpt, other)
    return load_trained(other)


def test_global_statistics_are_those_of_the_canonical_samples(corpus):
    from data.dataset import compute_train_stats, model_features
    from model import training

    c = Corpus(corpus)
    feats = np.concatenate([model_features(lead_canonical(np.asarray(c.load(r)), "right_hand"))[0] for r in c.split("train")])
    stats = compute_train_stats(c, "ffill", "right_hand")
    np.testing.assert_allclose(stats.mean, feats.mean(axis=0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(stats.mean, compute_train_stats(c).mean)
    data = training.build_data(TrainConfig(data_dir=str(corpus), normalize="global", lead_hand="right_hand", augment={}))
    np.testing.assert_array_equal(data.stats.mean, stats.mean)


def test_the_harness_checks_the_canonical_samples_training_serves(corpus):
    """The checks' datasets are the configured ones: under lead_hand, the canonical samples (with
    global statistics of those, not the scan's of the files as stored)."""
    from harness.context import HarnessContext
    from model import training

    cfg = TrainConfig(data_dir=str(corpus), normalize="global", lead_hand="right_hand", augment={})
    ctx = HarnessContext(cfg)
    data = training.build_data(cfg)
    for split in ("train", "test"):
        checked, trained = ctx.dataset(split=split), data.splits[split]
        assert checked.lead_hand == "right_hand"
        np.testing.assert_array_equal(checked.stats.mean, data.stats.mean)
        for i in range(len(trained)):
            np.testing.assert_array_equal(checked.features(i), trained.features(i))


@pytest.mark.parametrize("normalize", ["body", "global"])
def test_the_normalization_check_passes_a_canonicalising_dataset_and_still_catches_a_second_z_score(corpus, normalize):
    """The reference the check holds the model input to is one normalization of the sample the
    dataset starts from (canonical under lead_hand), not of the file as stored: mirrored samples
    are no second transform. A z-score added in a batch_transform still fails it."""
    from harness.context import HarnessContext
    from harness.findings import FAIL, PASS
    from harness.suite import expand, run_check

    cfg = TrainConfig(model="i3d_tiny", data_dir=str(corpus), normalize=normalize, lead_hand="right_hand", augment={}, batch_size=4)
    ctx = HarnessContext(cfg)
    found = {c.label(p): run_check(c, ctx, p) for c, p in expand(cfg, ["normalization"], configured_only=True)}
    assert [f.status for f in found.values()] == [PASS], {k: f.message() for k, f in found.items()}
    twice = cfg.replace(batch_transform="tests.test_lead_hand:zscore_again")
    ctx = HarnessContext(twice)
    found = {c.label(p): run_check(c, ctx, p) for c, p in expand(twice, ["normalization"], configured_only=True)}
    assert [f.status for f in found.values()] == [FAIL], {k: f.message() for k, f in found.items()}


def zscore_again(features, lengths):
    """A batch_transform normalizing the dataset's normalized features a second time."""
    mean, std = features.mean(dim=(0, 1), keepdim=True), features.std(dim=(0, 1), keepdim=True).clamp_min(1e-6)
    return (features - mean) / std


def test_train_py_takes_lead_hand_as_a_flag_and_rejects_another_name(tmp_path, capsys):
    import train

    cfg, _ = train.parse_args(["--lead_hand", "left_hand", "--output_dir", str(tmp_path)])
    assert cfg.lead_hand == "left_hand"
    assert train.parse_args(["--output_dir", str(tmp_path)])[0].lead_hand is None
    with pytest.raises(SystemExit):
        train.parse_args(["--lead_hand", "right"])
    assert "--lead_hand: invalid choice: 'right'" in capsys.readouterr().err
