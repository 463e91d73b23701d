"""The shift check names how dev/test signers differ from train's, before training."""
import numpy as np
import pytest

from data.corpus import Corpus, atomic_save_npy, read_manifest
from data.layout import LAYOUT
from harness.findings import PASS, WARN
from harness.scan import scan_corpus
from harness.checks.shift import check_shift
from harness.thresholds import resolve
from tests.corpus_factory import make_corpus


def _rewrite(root, split, fn):
    for rec in read_manifest(root):
        if rec.split == split:
            atomic_save_npy(root / rec.path, fn(np.load(root / rec.path)))


def test_similar_splits_pass(tmp_path):
    root = make_corpus(tmp_path / "c", n_train=8, n_dev=4, n_test=4)
    f = check_shift(scan_corpus(Corpus(root)), resolve())
    assert f.status == PASS, f.message()


def test_a_hand_the_test_signers_never_show_warns_with_the_numbers(tmp_path):
    root = make_corpus(tmp_path / "c", n_train=8, n_dev=4, n_test=4)

    def no_left(x):
        x[:, LAYOUT.left_hand] = np.nan
        return x

    _rewrite(root, "test", no_left)
    f = check_shift(scan_corpus(Corpus(root)), resolve())
    assert f.status == WARN and "test sees the left hand in 0% of frames, train in 70%" in f.summary, f.message()
    assert "hand dropout" in f.hint and "measured on real signer folds" in f.hint  # what such a shift has cost
    assert f.values["profiles"]["test"]["presence"]["left_hand"] == 0.0


def test_other_dominant_hand_warns(tmp_path):
    """Train signs with the left hand, dev with the right."""
    root = make_corpus(tmp_path / "c", n_train=8, n_dev=4, n_test=4)
    rng = np.random.default_rng(0)

    def signs_with(hand):
        def fn(x):
            x[:, LAYOUT[hand]] += np.cumsum(rng.normal(0, 0.01, size=(len(x), 63)), axis=0).astype(np.float32)
            return x
        return fn

    _rewrite(root, "train", signs_with("left_hand"))
    _rewrite(root, "dev", signs_with("right_hand"))
    f = check_shift(scan_corpus(Corpus(root)), resolve())
    assert f.status == WARN and "the right hand moves more in 100% of dev samples, in 0% of train" in f.summary, f.message()
    assert "mirror augmentation" in f.hint and "dev: hands move" not in f.summary
    assert "signers of the other dominant hand had 19% test WER" in f.hint


def test_faster_signing_warns(tmp_path):
    root = make_corpus(tmp_path / "c", n_train=8, n_dev=4, n_test=4)
    _rewrite(root, "test", lambda x: x[::3])  # the same motion in a third of the frames: 3x the speed, 1/3 the length
    f = check_shift(scan_corpus(Corpus(root)), resolve())
    assert f.status == WARN and "test: hands move" in f.summary and "x as fast as in train" in f.summary, f.message()
    assert "test: samples last 0.3" in f.summary and "time resampling" in f.hint


@pytest.mark.real_data
def test_real_kaggle_signers_differ(tmp_path):
    """The real Kaggle split by participant: dev and test signers never show the left hand."""
    from harness.faults import kaggle_corpus

    root = kaggle_corpus(tmp_path / "kaggle")
    if root is None:
        pytest.skip("no real data at ../shared/data/kaggle_asl_signs")
    f = check_shift(scan_corpus(Corpus(root)), resolve())
    assert f.status == WARN and "dev sees the left hand in 0% of frames" in f.summary, f.message()
