import numpy as np
import pytest

from data.layout import FEATURE_DIM, LAYOUT, RAW_DIM, describe_column, input_dim, modality_columns, parse_modalities


def test_layout_sizes():
    assert RAW_DIM == 1629 and FEATURE_DIM == 6516
    assert (LAYOUT.pose.start, LAYOUT.pose.stop) == (0, 99)
    assert (LAYOUT.hands.start, LAYOUT.hands.stop) == (99, 225)
    assert LAYOUT.left_hand.stop == LAYOUT.right_hand.start == 162
    assert (LAYOUT.face.start, LAYOUT.face.stop) == (225, 1629)
    assert (LAYOUT.temporal.start, LAYOUT.temporal.stop) == (1629, 6516)


def test_modality_columns_cover_frame_once():
    cols = modality_columns()
    assert np.array_equal(cols, np.arange(FEATURE_DIM))
    assert input_dim("hands") == 126 and input_dim(["face", "pose"]) == 1503
    assert parse_modalities("hands,pose") == ("pose", "hands")
    assert parse_modalities("all") == parse_modalities(["all"]) == parse_modalities(None) == ("pose", "hands", "face", "temporal")


def test_the_default_inputs_are_the_landmarks_without_the_temporal_block():
    from model.config import TrainConfig

    assert TrainConfig().modalities == ("pose", "hands", "face") and input_dim(TrainConfig().modalities) == 1629
    assert TrainConfig(modalities="all").modalities == ("pose", "hands", "face", "temporal")
    with pytest.raises(ValueError, match="subset"):
        parse_modalities(["feet"])


def test_describe_column():
    assert describe_column(0) == "pose[0].x"
    assert describe_column(99 + 4 * 3 + 1) == "left_hand[4].y"
    assert describe_column(162) == "right_hand[0].x"
    assert describe_column(RAW_DIM + RAW_DIM + 2) == "temporal/acceleration/pose[0].z"


def test_motion_is_the_temporal_block_of_pose_and_hands():
    """'motion': velocity, acceleration and displacement of the 75 pose and hand landmarks (675
    features), in place of the whole temporal block; not part of 'all'."""
    from data.layout import KNOWN_MODALITIES, modality_widths

    cols = modality_columns("motion")
    assert input_dim("motion") == len(cols) == 675 and modality_widths("pose hands face motion")["motion"] == 675
    names = [describe_column(int(c)) for c in cols]
    assert names[0] == "temporal/velocity/pose[0].x" and names[-1] == "temporal/displacement/right_hand[20].z"
    assert all(n.split("/")[2].split("[")[0] in ("pose", "left_hand", "right_hand") for n in names)
    assert len(set(cols)) == 675 and set(cols) < set(modality_columns("temporal"))
    assert parse_modalities("motion face") == ("face", "motion") and "motion" in KNOWN_MODALITIES
    assert "motion" not in parse_modalities("all")
    with pytest.raises(ValueError, match="choose one"):
        parse_modalities(["temporal", "motion"])


def test_a_mirrored_sample_keeps_motion_within_its_columns(tmp_path):
    """The mirror swaps the hands' motion, left for right, and keeps the pose's: served from the
    feature-space cache, it equals mirroring the landmarks and computing the features."""
    import torch

    from data.dataset import MediaPipeFeatureDataset
    from data.synthetic import generate_corpus

    root = generate_corpus(tmp_path / "c", seed=1, n_train=2, n_dev=1, n_test=1)
    ds = MediaPipeFeatureDataset(root, "train", modalities="pose hands face motion", augment={"mirror": 1.0}, normalization="body", cache_bytes=2**24)
    plain = MediaPipeFeatureDataset(root, "train", modalities="pose hands face motion", normalization="body")
    ds[0]  # the first read fills the cache, the second is mirrored in feature space
    item, same = ds[0].features, plain[0].features
    assert item.shape == same.shape == (same.shape[0], 2304)
    motion = slice(1629, 2304)
    assert not torch.allclose(item[:, motion], same[:, motion])  # mirrored
    full = MediaPipeFeatureDataset(root, "train", modalities="all", augment={"mirror": 1.0}, normalization="body")
    assert torch.allclose(item[:, motion], full[0].features[:, modality_columns("motion")], atol=1e-5)
