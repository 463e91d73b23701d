"""Train-split augmentation of raw landmarks (data/augment.py), its dataset hook and the mirror pairs (data/layout.py)."""
import json

import numpy as np
import pytest
import torch

from data.augment import (
    ORDER,
    PARAMETERS,
    RECIPES,
    Augmenter,
    affine,
    affine_matrix,
    body_centre,
    min_frames_for,
    mirror,
    parse_augment,
    resample,
    sample_rng,
)
from data.dataset import MediaPipeFeatureDataset, model_features
from data.layout import COORDS, FACE_MIDLINE, LAYOUT, LEFT_SHOULDER, MIRROR_COLUMNS, MIRROR_LANDMARKS, N_FACE, N_HAND, N_POSE, POSE_MIRROR_PAIRS, RAW_DIM, RIGHT_SHOULDER
from data.normalize import Normalizer
from data.temporal import temporal_features
from model.config import TrainConfig, load_config
from tests.corpus_factory import make_corpus, random_raw

FACE0 = N_POSE + 2 * N_HAND  # first face landmark


def xyz(raw, landmark):
    return raw[..., landmark * COORDS : landmark * COORDS + COORDS]


def sample(t=30, seed=0, missing_left=0.3):
    return random_raw(np.random.default_rng(seed), t, missing_left=missing_left)


# ----------------------------------------------------------------------------- mirror pairs (data/layout.py)


def test_mirror_twice_is_the_identity():
    assert np.array_equal(MIRROR_LANDMARKS[MIRROR_LANDMARKS], np.arange(RAW_DIM // COORDS))
    assert np.array_equal(MIRROR_COLUMNS[MIRROR_COLUMNS], np.arange(RAW_DIM))
    raw = sample()
    twice = mirror(mirror(raw))
    np.testing.assert_array_equal(np.isnan(twice), np.isnan(raw))
    np.testing.assert_allclose(twice, raw, atol=1e-6, equal_nan=True)


def test_mirrored_left_hand_lands_in_the_right_hand_block():
    raw = np.full((4, RAW_DIM), np.nan, np.float32)
    raw[:, LAYOUT.left_hand] = np.random.default_rng(0).uniform(0.1, 0.4, size=(4, 3 * N_HAND))
    out = mirror(raw)
    assert np.isnan(out[:, LAYOUT.left_hand]).all()
    left = raw[:, LAYOUT.left_hand].reshape(4, N_HAND, COORDS)
    right = out[:, LAYOUT.right_hand].reshape(4, N_HAND, COORDS)
    np.testing.assert_allclose(right[..., 0], 1 - left[..., 0], atol=1e-7)  # x -> 1 - x
    np.testing.assert_array_equal(right[..., 1:], left[..., 1:])  # y, z unchanged, same landmark order


def test_pose_and_face_pairs_swap_and_the_midline_stays():
    assert MIRROR_LANDMARKS[0] == 0  # nose
    assert MIRROR_LANDMARKS[LEFT_SHOULDER] == RIGHT_SHOULDER and MIRROR_LANDMARKS[RIGHT_SHOULDER] == LEFT_SHOULDER
    for a, b in POSE_MIRROR_PAIRS:
        assert MIRROR_LANDMARKS[a] == b and MIRROR_LANDMARKS[b] == a
    assert len(POSE_MIRROR_PAIRS) == 16 and len({i for p in POSE_MIRROR_PAIRS for i in p}) == 32
    face = MIRROR_LANDMARKS[FACE0:] - FACE0
    assert sorted(face) == list(range(N_FACE))
    for a, b in ((33, 263), (133, 362), (61, 291), (234, 454), (70, 300)):  # eye corners, mouth corners, cheeks, brows
        assert face[a] == b and face[b] == a
    assert set(np.flatnonzero(face == np.arange(N_FACE))) == set(FACE_MIDLINE)


def test_face_pairs_agree_with_mediapipe_face_mesh_connections():
    conn = pytest.importorskip("mediapipe.python.solutions.face_mesh_connections", reason="mediapipe not installed")
    face = MIRROR_LANDMARKS[FACE0:] - FACE0

    def mirrored(edges):
        return {frozenset((int(face[a]), int(face[b]))) for a, b in edges}

    def edges(e):
        return {frozenset(x) for x in e}

    # MediaPipe's "left eye" is the subject's left: it lands exactly on the right one
    assert mirrored(conn.FACEMESH_LEFT_EYE) == edges(conn.FACEMESH_RIGHT_EYE)
    assert mirrored(conn.FACEMESH_LEFT_EYEBROW) == edges(conn.FACEMESH_RIGHT_EYEBROW)
    assert mirrored(conn.FACEMESH_LIPS) == edges(conn.FACEMESH_LIPS)
    assert mirrored(conn.FACEMESH_FACE_OVAL) == edges(conn.FACEMESH_FACE_OVAL)
    # the triangulation too, but for the diagonal of 6 quads that MediaPipe splits differently on each side
    tess = edges(conn.FACEMESH_TESSELATION)
    assert len(mirrored(conn.FACEMESH_TESSELATION) & tess) >= len(tess) - 6


def test_a_symmetric_body_is_its_own_mirror():
    rng = np.random.default_rng(3)
    lm = rng.uniform(0.2, 0.8, size=(RAW_DIM // COORDS, COORDS)).astype(np.float32)
    perm = MIRROR_LANDMARKS
    for j in range(len(perm)):
        if perm[j] > j:  # twins: mirrored x, same y and z
            lm[perm[j]] = (1 - lm[j, 0], lm[j, 1], lm[j, 2])
        elif perm[j] == j:
            lm[j, 0] = 0.5
    raw = lm.reshape(1, RAW_DIM)
    np.testing.assert_allclose(mirror(raw), raw, atol=1e-6)


# ----------------------------------------------------------------------------- each augmentation


def test_rotation_turns_about_the_shoulder_midpoint():
    raw = sample(10, missing_left=0.0)
    c = body_centre(raw)
    mid = (xyz(raw, LEFT_SHOULDER)[:, :2] + xyz(raw, RIGHT_SHOULDER)[:, :2]) / 2
    np.testing.assert_allclose(c, np.median(mid, axis=0), atol=1e-6)
    out = affine(raw, affine_matrix(rotate_deg=30))
    p0 = raw.reshape(10, -1, 3)[..., :2] - c
    p1 = out.reshape(10, -1, 3)[..., :2] - c
    np.testing.assert_allclose(np.linalg.norm(p1, axis=-1), np.linalg.norm(p0, axis=-1), atol=1e-5)  # distances to the centre kept
    angle = np.degrees(np.arctan2(p1[..., 1], p1[..., 0]) - np.arctan2(p0[..., 1], p0[..., 0])) % 360
    np.testing.assert_allclose(angle, 30, atol=1e-2)
    np.testing.assert_array_equal(out.reshape(10, -1, 3)[..., 2], raw.reshape(10, -1, 3)[..., 2])  # z unchanged at z_scale 1
    # a point at the centre stays there
    probe = raw.copy()
    probe[:, 0:2] = c
    np.testing.assert_allclose(affine(probe, affine_matrix(rotate_deg=45, shear=0.3, scale_x=1.2, scale_y=0.9))[:, 0:2], np.broadcast_to(c, (10, 2)), atol=1e-6)


def test_shear_and_scale_matrix():
    m = affine_matrix(shear=0.5, scale_x=2.0, scale_y=3.0)
    np.testing.assert_allclose(m, [[2.0, 1.5], [0.0, 3.0]])
    raw = np.full((2, RAW_DIM), np.nan, np.float32)
    raw[:, LEFT_SHOULDER * 3 : LEFT_SHOULDER * 3 + 3] = (0.6, 0.5, 0.0)
    raw[:, RIGHT_SHOULDER * 3 : RIGHT_SHOULDER * 3 + 3] = (0.4, 0.5, 0.0)
    raw[:, 0:3] = (0.5, 0.4, 0.1)  # nose 0.1 above the centre (0.5, 0.5)
    out = affine(raw, m, z_scale=2.0)
    np.testing.assert_allclose(out[0, 0:3], (0.5 + 1.5 * -0.1, 0.5 + 3 * -0.1, 0.2), atol=1e-6)
    assert np.isnan(out[:, 3:33]).all()  # missing landmarks stay missing


def test_resample_keeps_ends_interpolates_only_between_present_frames():
    t = 11
    raw = np.full((t, RAW_DIM), np.nan, np.float32)
    raw[:, 0] = np.arange(t, dtype=np.float32)  # a ramp, always present
    raw[:6, 1] = 1.0  # present in frames 0-5 only
    fast = resample(raw, 6)  # speed ~1.8
    assert fast.shape == (6, RAW_DIM)
    np.testing.assert_allclose(fast[:, 0], np.linspace(0, 10, 6), atol=1e-5)  # a ramp stays a ramp, same first/last
    slow = resample(raw, 21)
    np.testing.assert_allclose(slow[:, 0], np.linspace(0, 10, 21), atol=1e-5)
    # column 1: 1.0 where the nearer (or both) source frames have it, NaN past it, never a blend with NaN
    assert set(np.unique(slow[:, 1][~np.isnan(slow[:, 1])])) == {1.0}
    assert np.isnan(slow[12:, 1]).all() and not np.isnan(slow[:11, 1]).any()
    assert np.isnan(slow[:, 2]).all()


def test_speed_and_frame_drop_lengths_and_floor():
    raw = sample(40)
    a = Augmenter({"speed": {"p": 1.0, "min": 1.25, "max": 1.25}})
    assert a(raw, sample_rng(0, 0, 0)).shape[0] == 32
    a = Augmenter({"speed": {"p": 1.0, "min": 0.8, "max": 0.8}})
    assert a(raw, sample_rng(0, 0, 0)).shape[0] == 50
    drop = Augmenter({"frame_drop": {"p": 1.0, "rate": 0.5}})
    out = drop(raw, sample_rng(0, 1, 0))
    assert 5 < out.shape[0] < 35
    # the kept frames are original frames, in order
    rows = [int(np.flatnonzero(np.isclose(raw[:, 0], v))[0]) for v in out[:, 0]]
    assert rows == sorted(rows) and len(set(rows)) == len(rows)
    # never below the CTC floor; a sample already below it is not shortened at all
    heavy = Augmenter({"frame_drop": {"p": 1.0, "rate": 0.95}, "speed": {"p": 1.0, "min": 1.2, "max": 1.2}})
    for draw in range(10):
        assert heavy(raw, sample_rng(0, draw, 0), min_frames=30).shape[0] >= 30
        assert heavy(raw, sample_rng(0, draw, 0), min_frames=60).shape[0] == 40
    assert min_frames_for(3, 1) == 16


def test_hand_dropout_is_one_hand_for_one_stretch():
    raw = sample(50, missing_left=0.0)
    a = Augmenter({"hand_dropout": {"p": 1.0, "max_fraction": 0.2}})
    for draw in range(20):
        out = a(raw, sample_rng(0, draw, 0))
        gone = [h for h in ("left_hand", "right_hand") if np.isnan(out[:, LAYOUT[h]]).any()]
        assert len(gone) == 1
        frames = np.flatnonzero(np.isnan(out[:, LAYOUT[gone[0]]]).all(axis=1))
        assert 1 <= len(frames) <= 10 and np.array_equal(frames, np.arange(frames[0], frames[-1] + 1))
        assert np.isnan(out).sum() == len(frames) * 3 * N_HAND  # nothing else touched
        other = [h for h in ("left_hand", "right_hand") if h != gone[0]][0]
        np.testing.assert_array_equal(out[:, LAYOUT[other]], raw[:, LAYOUT[other]])


def test_jitter_keeps_nan_and_has_the_configured_std():
    raw = sample(200)
    out = Augmenter({"jitter": {"p": 1.0, "sigma": 0.01}})(raw, sample_rng(0, 0, 0))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(raw))
    d = (out - raw)[~np.isnan(raw)]
    assert abs(d.std() - 0.01) < 5e-4 and abs(d.mean()) < 5e-4


def test_augmenter_is_deterministic_and_leaves_its_input_alone():
    raw = sample(40)
    before = raw.copy()
    a = Augmenter({"recipe": "all"})
    x1, x2 = a(raw, sample_rng(7, 3, 5)), a(raw, sample_rng(7, 3, 5))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(raw, before)
    others = [a(raw, sample_rng(7, d, 5)) for d in range(4, 8)] + [a(raw, sample_rng(8, 3, 5)), a(raw, sample_rng(7, 3, 6))]
    assert all(o.shape != x1.shape or not np.array_equal(o, x1, equal_nan=True) for o in others)


def test_one_augmentation_on_or_off_does_not_reshuffle_another():
    raw = sample(40, missing_left=0.0)
    only = Augmenter({"hand_dropout": 1.0})(raw, sample_rng(0, 0, 0))
    both = Augmenter({"hand_dropout": 1.0, "mirror": {"p": 1e-9}})(raw, sample_rng(0, 0, 0))  # mirror configured, never fires
    np.testing.assert_array_equal(only, both)


def test_parse_augment_validates():
    assert parse_augment({}) == {} and parse_augment(None) == {}
    spec = parse_augment({"mirror": 0.5, "affine": {"p": 0.8, "rotate_deg": 5}})
    assert list(spec) == ["mirror", "affine"] and spec["affine"]["rotate_deg"] == 5 and spec["affine"]["shear"] == PARAMETERS["affine"]["shear"]
    assert parse_augment(spec) == spec  # idempotent
    assert list(parse_augment({"recipe": "all"})) == list(ORDER)
    assert "mirror" not in parse_augment({"recipe": "default", "mirror": 0})
    assert set(RECIPES) >= {"none", "default", "all"}
    for bad, match in (({"flip": 0.5}, "unknown augmentation"), ({"mirror": {"q": 1}}, "unknown parameter"), ({"jitter": 2.0}, "probability"),
                       ({"recipe": "best"}, "recipe"), ({"speed": {"p": 1, "min": 1.3, "max": 1.1}}, "min"), ({"mirror": True}, "probability"),
                       ("mirror", "table")):
        with pytest.raises(ValueError, match=match):
            parse_augment(bad)


# ----------------------------------------------------------------------------- the dataset hook


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("aug"), n_train=4, n_dev=2, n_test=1, lengths=(30, 40))


def test_train_samples_differ_by_draw_and_reproduce_across_runs(corpus):
    spec = {"recipe": "all"}
    a = MediaPipeFeatureDataset(corpus, "train", normalization="body", augment=spec, augment_seed=1, cache_bytes=1 << 30)
    b = MediaPipeFeatureDataset(corpus, "train", normalization="body", augment=spec, augment_seed=1, cache_bytes=1 << 30)
    epoch1 = [a[i].features for i in range(len(a))]
    epoch2 = [a[i].features for i in range(len(a))]
    assert any(x.shape != y.shape or not torch.equal(x, y) for x, y in zip(epoch1, epoch2))  # a new draw each epoch
    for i in range(len(b)):  # another dataset object, same seed: the same sequence of draws
        assert torch.equal(b[i].features, epoch1[i])
    for i in range(len(b)):
        assert torch.equal(b[i].features, epoch2[i])
    c = MediaPipeFeatureDataset(corpus, "train", normalization="body", augment=spec, augment_seed=2)
    assert any(c[i].features.shape != epoch1[i].shape or not torch.equal(c[i].features, epoch1[i]) for i in range(len(c)))


def test_the_cache_holds_raw_landmarks_not_augmented_features(corpus):
    ds = MediaPipeFeatureDataset(corpus, "train", normalization="body", augment={"jitter": 1.0}, cache_bytes=1 << 30)
    first = ds[0].features
    assert not torch.equal(ds[0].features, first)
    cached = ds._cache[0]
    assert isinstance(cached, np.ndarray) and cached.shape[1] == RAW_DIM
    np.testing.assert_array_equal(cached, np.asarray(ds.corpus.load(ds.records[0])), strict=False)
    plain = MediaPipeFeatureDataset(corpus, "train", normalization="body", cache_bytes=1 << 30)
    assert torch.equal(plain[0].features, plain[0].features)  # without augmentation: cached features, as before


def test_augmentation_happens_before_temporal_features_and_imputation(corpus):
    spec = {"mirror": 1.0, "affine": 1.0, "hand_dropout": 1.0}
    ds = MediaPipeFeatureDataset(corpus, "train", normalization="none", augment=spec, augment_seed=3)
    raw = np.asarray(ds.corpus.load(ds.records[1]))
    rec = ds.records[1]
    targets = ds.vocab.encode(rec.glosses, rec.id)
    expected_raw = Augmenter(spec)(raw, sample_rng(3, 0, 1), min_frames=min_frames_for(len(targets), sum(a == b for a, b in zip(targets, targets[1:]))))
    feats = ds.features(1, draw=0)
    full, _ = model_features(expected_raw)
    np.testing.assert_array_equal(feats, Normalizer("none")(full))
    # the temporal block is that of the augmented raw landmarks (0 where the dropped hand is missing)
    np.testing.assert_array_equal(feats[:, RAW_DIM:], temporal_features(expected_raw))
    assert np.isfinite(feats).all()


def test_augmented_samples_stay_ctc_feasible(corpus):
    ds = MediaPipeFeatureDataset(corpus, "train", normalization="body",
                                 augment={"speed": {"p": 1.0, "min": 1.2, "max": 1.2}, "frame_drop": {"p": 1.0, "rate": 0.9}})
    for _ in range(3):
        for i in range(len(ds)):
            s = ds[i]
            repeats = int((s.targets[1:] == s.targets[:-1]).sum())
            assert s.length >= min(4 * (len(s.targets) + repeats), ds.corpus.load(ds.records[i]).shape[0])


def test_set_epoch_pins_the_draw(corpus):
    ds = MediaPipeFeatureDataset(corpus, "train", normalization="body", augment={"jitter": 1.0})
    ds.set_epoch(5)
    assert torch.equal(ds[0].features, ds[0].features)
    assert torch.equal(ds[0].features, torch.from_numpy(ds.features(0, draw=5)))


def test_dev_and_test_are_never_augmented(corpus):
    with pytest.raises(ValueError, match="train split only"):
        MediaPipeFeatureDataset(corpus, "dev", normalization="body", augment={"mirror": 0.5})
    assert MediaPipeFeatureDataset(corpus, "dev", normalization="body", augment={"mirror": 0}).augmenter is None


def test_config_drives_augmentation_through_build_data(corpus, tmp_path):
    from model.training import build_data

    path = tmp_path / "aug.toml"
    path.write_text(f'data_dir = "{corpus}"\naugment = {{ recipe = "default", jitter = {{ p = 1.0, sigma = 0.01 }} }}\n')
    cfg = load_config(path)
    assert cfg.augment["jitter"] == {"p": 1.0, "sigma": 0.01}
    data = build_data(cfg)
    assert data.splits["train"].augmenter is not None and data.splits["train"].augment_seed == cfg.seed
    assert data.splits["dev"].augmenter is None and data.splits["test"].augmenter is None
    assert json.loads(json.dumps(cfg.to_dict()))["augment"] == cfg.augment  # saved with the run's config.json
    assert parse_augment(TrainConfig().augment) == {"mirror": {"p": 0.5}}  # default: the measured recipe
    assert not build_data(cfg.replace(augment={})).splits["train"].augmenter  # {} turns it off
    with pytest.raises(ValueError, match="unknown augmentation"):
        TrainConfig(augment={"flip": 1.0})
