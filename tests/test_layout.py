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
