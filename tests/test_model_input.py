"""check_model_input on tiny synthetic probe batches: each diagnosis fails (or warns) on its fault
and passes on a healthy twin. No corpus on disk: samples are built from arrays, a dataset is an
object holding its train statistics, a batch_transform is a function of (features, lengths)."""
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from data.dataset import Sample
from harness.checks.input import _replace_all, _replace_features, check_model_input, find_divisors, zero_divisors
from harness.findings import FAIL, PASS, WARN
from harness.thresholds import resolve

F = 200  # channels a frame: one outlier channel among many, as in a real feature vector
CONST = 5  # the channel constant (0) over the train split, moving on dev/test
THRESHOLDS = resolve()

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _raw_split(seed: int, n: int, hand_seen: bool) -> list[np.ndarray]:
    """n raw [T, F] arrays of landmark-like values (0..1); channel CONST is 0 unless hand_seen,
    then it moves by up to ~2 (as a hand's temporal features on the incident corpus)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        x = rng.uniform(0.2, 0.8, size=(10 + 2 * k, F))
        x[:, CONST] = rng.uniform(0.3, 2.1, size=len(x)) if hand_seen else 0.0
        out.append(x)
    return out


TRAIN = _raw_split(0, 4, hand_seen=False)
DEV = _raw_split(1, 2, hand_seen=True)


class ZScoreDataset:
    """A user's dataset: (x - mean) / divisor with the train split's mean and std, where the
    divisor is `std + eps` (a token epsilon), or `max(std, floor)`, optionally with the channels
    constant over train set to 0."""

    def __init__(self, eps: float = 0.0, floor: float = 0.0, zero_constant: bool = False, torch_stats: bool = False):
        frames = np.concatenate(TRAIN)
        std = frames.std(axis=0)
        self.constant = std == 0
        self.zero_constant = zero_constant
        self.feature_mean = frames.mean(axis=0)
        self.feature_std = np.maximum(std, floor) if floor else std + eps
        if torch_stats:
            self.feature_std = torch.from_numpy(self.feature_std.astype(np.float32))

    def sample(self, sid: str, raw: np.ndarray) -> Sample:
        std = np.asarray(self.feature_std, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = (raw - self.feature_mean) / std
        if self.zero_constant:
            x[:, self.constant] = 0.0
        return make_sample(sid, x)


def make_sample(sid: str, x: np.ndarray) -> Sample:
    return Sample(id=sid, features=torch.from_numpy(np.asarray(x, dtype=np.float32)), targets=torch.tensor([1, 2]),
                  glosses=("A", "B"), normalization="none")


def probe(dataset: ZScoreDataset | None):
    """Train samples then dev samples, as the suite probes: (samples, n_train)."""
    def make(sid, raw):
        return dataset.sample(sid, raw) if dataset is not None else make_sample(sid, raw)

    samples = [make(f"train{k}", x) for k, x in enumerate(TRAIN)] + [make(f"dev{k}", x) for k, x in enumerate(DEV)]
    return samples, len(TRAIN)


def to_input(transform=None):
    """The step between loader and model: the batch with transform(features, lengths) applied."""
    if transform is None:
        return lambda batch: batch
    return lambda batch: dataclasses.replace(batch, features=transform(batch.features, batch.lengths))


def zscore_clamp(features, lengths):
    """The loop's per-sample z-score over the padded sample, then a clamp to +-10."""
    z = (features - features.mean(dim=(1, 2), keepdim=True)) / (features.std(dim=(1, 2), keepdim=True) + 1e-6)
    return z.clamp(-10, 10)


def zscore(features, lengths):
    """The loop's per-sample z-score over the padded sample."""
    return (features - features.mean(dim=(1, 2), keepdim=True)) / (features.std(dim=(1, 2), keepdim=True) + 1e-6)


def per_channel_zscore(floor: float):
    """Each sample's channels z-scored over its valid frames, std floored at `floor` (0: none)."""
    def transform(features, lengths):
        mask = (torch.arange(features.shape[1])[None] < lengths[:, None]).unsqueeze(-1).float()
        n = lengths[:, None, None].float()
        mean = (features * mask).sum(1, keepdim=True) / n
        std = (((features - mean) * mask) ** 2).sum(1, keepdim=True).div(n).sqrt()
        return (features - mean) / (std.clamp_min(floor) if floor else std) * mask
    return transform


def check(samples, transform=None, name=None, n_train=None, dataset=None, model=None):
    with np.errstate(all="ignore"):
        return check_model_input(samples, to_input(transform), THRESHOLDS, model=model, dataset_obj=dataset,
                                 transform_name=name if transform is not None else None, n_train=n_train)


# ----------------------------------------------------------------------------- dev/test beyond the train scale


@pytest.mark.parametrize("transform, name", [(None, None), (zscore_clamp, "loop:zscore_clamp")])
def test_token_epsilon_fails_on_the_dev_sample_and_names_the_divisor(transform, name):
    """std + 1e-8 on a channel constant over train: train is finite and small (0 / 1e-8), a dev
    sample in which the channel moves reaches ~2e8. A FAIL of model_input naming the sample, frame,
    feature and `dataset.feature_std[5] = 1e-08`, whether or not a z-score and clamp hide it."""
    ds = ZScoreDataset(eps=1e-8)
    samples, n_train = probe(ds)
    f = check(samples, transform, name, n_train, ds)
    assert f.status == FAIL, f.message()
    x = samples[n_train:]
    worst_b = int(np.argmax([float(s.features[:, CONST].abs().max()) for s in x]))
    worst_frame = int(x[worst_b].features[:, CONST].abs().argmax())
    assert f"at sample dev{worst_b} frame {worst_frame} feature[{CONST}]" in f.summary, f.summary
    assert f"dataset.feature_std[{CONST}] = 1e-08: the channel is constant over the train split; x / 1e-08" in f.summary, f.summary
    assert "unbounded" in f.summary and "times that channel's train scale" in f.summary
    assert f.values["born_in"] == "dataset"
    assert f.values["unbounded_ratio"] > 1e7
    assert f.values["divisor"]["attribute"] == "dataset.feature_std" and f.values["divisor"]["index"] == CONST
    assert f.values["divisor"]["value"] == pytest.approx(1e-8)
    assert {"sample": f"dev{worst_b}", "frame": worst_frame, "feature": f"feature[{CONST}]"} in f.values["locations"]
    assert set(f.samples) == {"dev0", "dev1"} and f.features == [f"feature[{CONST}]"]
    assert "a token epsilon (std + 1e-8) only moves the division by zero to dev/test" in f.hint, f.hint
    assert f.summary.startswith("the dataset's output on dev/test is unbounded"), f.summary


def test_the_message_says_what_the_transform_does_to_the_rest_of_the_sample():
    """The per-sample z-score and clamp leave the model input bounded (|x| <= 10): the message
    measures that it divides the whole sample by the outlier's scale, leaving no signal in the
    other channels, and that the clamp hides the outlier itself."""
    ds = ZScoreDataset(eps=1e-8)
    samples, n_train = probe(ds)
    f = check(samples, zscore_clamp, "loop:zscore_clamp", n_train, ds)
    assert f.status == FAIL and f.values["max_abs"] <= 10 + 1e-6, f.message()
    effect = f.values["transform_effect"]
    assert effect["factor"] > 1e6 and effect["other_channels"] == F - 1 and effect["std_after"] < 1e-6, effect
    assert "batch_transform 'loop:zscore_clamp' then divides the whole sample by ~" in f.summary, f.summary
    assert f"its other {F - 1} channels have median std" in f.summary and "(no signal left)" in f.summary, f.summary
    assert "the outlier itself is 10 in the model input (a clamp hides it" in f.summary, f.summary
    assert "unbounded before batch_transform" not in f.summary  # failed once, not warned again


def test_a_divisor_held_as_a_tensor_one_level_down_is_found():
    inner = ZScoreDataset(eps=1e-8, torch_stats=True)

    class Wrapper:
        def __init__(self):
            self.inner = inner

    found = dict(find_divisors(Wrapper(), F))
    assert set(found) == {"dataset.inner.feature_std"} and found["dataset.inner.feature_std"][CONST] == pytest.approx(1e-8)
    assert zero_divisors(Wrapper(), F) == []  # 1e-8 is not 0
    ds = ZScoreDataset(eps=1e-8, torch_stats=True)
    samples, n_train = probe(ds)
    f = check(samples, n_train=n_train, dataset=Wrapper())
    assert f.status == FAIL and f"dataset.inner.feature_std[{CONST}] = 1e-08" in f.summary, f.summary


def test_a_std_floor_alone_still_fails_on_dev():
    """max(std, 1e-3) without zeroing the channels constant over train: a dev value moving by ~2
    there becomes ~2e3, over 1e3 times the train scale (1): it fails too."""
    ds = ZScoreDataset(floor=1e-3)
    samples, n_train = probe(ds)
    f = check(samples, zscore_clamp, "loop:zscore_clamp", n_train, ds)
    assert f.status == FAIL and 1e3 <= f.values["unbounded_ratio"] < 2.2e3, f.message()
    assert f"dataset.feature_std[{CONST}] = 0.001: the channel barely moves over the train split; x / 0.001" in f.summary, f.summary


@pytest.mark.parametrize("dataset", ["floor_and_zero", "no_zscore"])
@pytest.mark.parametrize("transform", [None, "zscore_clamp"])
def test_healthy_dataset_does_not_fail(dataset, transform):
    """The fix (std floored at 1e-3 and the channels constant over train zeroed), or a dataset
    without a z-score: the dev samples stay on the train scale."""
    ds = ZScoreDataset(floor=1e-3, zero_constant=True) if dataset == "floor_and_zero" else None
    samples, n_train = probe(ds)
    f = check(samples, zscore_clamp if transform else None, "loop:zscore_clamp", n_train, ds)
    assert f.status != FAIL, f.message()
    assert "unbounded" not in f.summary and "unbounded_ratio" not in f.values
    assert f.values["dev_test_ratio"] < 10, f.values["dev_test_ratio"]


def test_train_samples_are_judged_by_the_bound_and_the_warning():
    """Without dev/test samples (n_train = all) the ratio rule does not apply: a huge train value
    the transform scales back is a warning, the same value reaching the model a failure."""
    x = np.random.default_rng(2).normal(size=(12, F))
    x[3, 7] = 500.0
    samples = [make_sample("train0", x), make_sample("train1", x[:8])]
    warned = check(samples, lambda f, n: f / 100, "loop:shrink")
    assert warned.status == WARN and "the dataset's output is unbounded before batch_transform: |x| = 500" in warned.summary, warned.message()
    failed = check(samples)
    assert failed.status == FAIL and "model input not bounded: |x| = 500 > 50 at sample train0 frame 3 feature[7]" in failed.summary, failed.message()
    assert check([make_sample("train0", x.clip(-4, 4))]).status == PASS


# ----------------------------------------------------------------------------- non-finite, where born


def test_division_by_zero_std_is_born_in_the_dataset_and_names_the_divisor():
    """No floor, no epsilon: 0/0 = NaN in every train frame of the constant channel, x/0 = Inf on dev."""
    ds = ZScoreDataset()
    samples, n_train = probe(ds)
    f = check(samples, zscore, "loop:zscore", n_train, ds)
    assert f.status == FAIL, f.message()
    for words in ("in every frame of every probe sample", "divides by ~0", "dataset.feature_std is 0 at 1 channel(s), 1 of them the non-finite ones",
                  "spreads them from"):
        assert words in f.summary, f.summary
    assert f.values["born_in"] == "dataset" and f.values["division_by_zero_std"] is True
    assert f.values["zero_divisors"] == {"dataset.feature_std": 1} and f.features == [f"feature[{CONST}]"]
    assert f.values["nonfinite_fraction"] == 1.0  # one statistic a sample: every value NaN


def test_nan_from_the_loader_is_born_in_the_dataset():
    x = np.random.default_rng(3).normal(size=(10, F))
    holes = x.copy()
    holes[2:4, 10:20] = np.nan
    f = check([make_sample("a", holes), make_sample("b", x)])
    assert f.status == FAIL and f.values["born_in"] == "dataset", f.message()
    assert "the dataset returns nan for 1 of 2 probe samples" in f.summary.lower() and "must be finite" in f.summary, f.summary
    assert "first at sample a frame 2 feature[10]" in f.summary and f.samples == ["a"]
    assert check([make_sample("a", np.nan_to_num(holes)), make_sample("b", x)]).status == PASS


def test_nan_born_in_the_transform_names_the_channels_constant_within_the_sample():
    x = np.random.default_rng(4).normal(size=(10, F))
    x[:, 30:33] = 0.0  # a hand never seen in this sample
    samples = [make_sample("a", x), make_sample("b", np.random.default_rng(5).normal(size=(8, F)))]
    f = check(samples, per_channel_zscore(0.0), "loop:per_channel")
    assert f.status == FAIL and f.values["born_in"] == "batch_transform", f.message()
    assert "batch_transform 'loop:per_channel' turns finite dataset output into NaN/Inf for 1 of 2 probe samples" in f.summary
    assert "divides by a ~0 std" in f.summary and "constant within those samples" in f.summary, f.summary
    assert f.features == ["feature[30]", "feature[31]", "feature[32]"] and f.samples == ["a"]
    healthy = check(samples, per_channel_zscore(1e-3), "loop:per_channel")
    assert healthy.status != FAIL and healthy.values["nonfinite_fraction"] == 0.0, healthy.message()


# ----------------------------------------------------------------------------- no signal


def test_an_input_without_signal_fails_and_says_where_it_is_made():
    x = np.random.default_rng(6).normal(size=(10, F))
    samples = [make_sample("a", x), make_sample("b", x[:6])]
    f = check(samples, lambda feats, n: feats * 0, "loop:mask")
    assert f.status == FAIL and "carries no signal" in f.summary and "batch_transform 'loop:mask' makes it so" in f.summary, f.message()
    assert f.values["no_signal"] is True and f.values["born_in"] == "batch_transform"
    from_dataset = check([make_sample("a", np.zeros((10, F)))])
    assert from_dataset.status == FAIL and "the dataset yields it" in from_dataset.summary and from_dataset.values["born_in"] == "dataset"
    assert check(samples, lambda feats, n: feats * 0.5, "loop:scale").status == PASS


# ----------------------------------------------------------------------------- double z-score


class FrameModel(nn.Module):
    """Per frame: optional LayerNorm over the features, a linear map to 4 classes, log-softmax."""

    def __init__(self, norm: bool):
        super().__init__()
        torch.manual_seed(0)
        self.norm = nn.LayerNorm(F) if norm else nn.Identity()
        self.lin = nn.Linear(F, 4)

    def output_lengths(self, lengths):
        return lengths

    def forward(self, x, lengths):
        return self.lin(self.norm(x)).log_softmax(-1), lengths


@pytest.mark.parametrize("norm, verdict", [(True, "by itself harmless for this model"), (False, "it changes this model's output")])
def test_double_zscore_warns_and_measures_whether_it_matters(norm, verdict):
    rng = np.random.default_rng(7)
    raw = [rng.normal(3.0, 2.0, size=(10 + k, F)) for k in range(4)]
    frames = np.concatenate(raw)
    samples = [make_sample(f"s{k}", (x - frames.mean(0)) / frames.std(0)) for k, x in enumerate(raw)]
    f = check(samples, zscore, "loop:zscore", model=FrameModel(norm))
    assert f.status == WARN and "normalized twice" in f.summary and verdict in f.summary, f.message()
    assert f.values["double_normalization"] is True and f.hint.startswith("normalize in one place")
    assert "depends on the batch's padding" not in f.summary  # judged by padding[batch_transform]
    once = check(samples, lambda feats, n: feats * 0.5, "loop:scale", model=FrameModel(norm))
    assert once.status == PASS and "double_normalization" not in once.values, once.message()


def test_replace_helpers_keep_the_batch_and_cut_one_sample():
    """_replace_all / _replace_features (used by the padding check): new features, same batch."""
    from data.dataset import collate

    batch = collate([make_sample("a", np.ones((5, 3))), make_sample("b", np.ones((3, 3)))])
    x = np.arange(30, dtype=np.float64).reshape(2, 5, 3)
    assert torch.equal(_replace_all(batch, x).features, torch.from_numpy(x.astype(np.float32)))
    alone = _replace_features(batch, 1, x)
    assert alone.ids == ["b"] and alone.features.shape == (1, 3, 3) and torch.equal(alone.features[0], torch.from_numpy(x[1, :3].astype(np.float32)))
    assert alone.targets.tolist() == [1, 2] and alone.lengths.tolist() == [3]
