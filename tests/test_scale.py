"""Scale: the streaming compat data pass and the dataset keep memory independent of corpus size.

Corpora are generated into a temporary directory (never stored in the repo) and measured in
child processes (benchmarks/children.py: run_child), whose peak resident memory is their own. Sizes
compared are 10x apart; memory must not follow. The 1M-frame run is
`python benchmarks/bench.py --scale 1000000` (not a test: ~3 GB of files).
"""
import shutil

import numpy as np
import pytest

from data.corpus import Corpus
from data.dataset import MediaPipeFeatureDataset
from data.layout import FEATURE_DIM, RAW_DIM
from benchmarks.children import run_child
from benchmarks.corpora import write_synthetic_corpus

FRAMES = 200  # a sample; 500 samples = 100k frames (~330 MB of float16 files)
# peak resident memory of the 10x larger corpus over the smaller one: streaming means ~1; the
# slack covers per-file bookkeeping (a FileScan a sample) and allocator noise, not a corpus copy
MAX_PEAK_RATIO = 1.15


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    made = {n: write_synthetic_corpus(root / f"c{n}", n, FRAMES, dtype="float16", seed=n) for n in (50, 500)}
    yield made
    shutil.rmtree(root, ignore_errors=True)  # ~370 MB: do not leave it to pytest's kept temp dirs


def _float32_bytes(n_samples: int, width: int) -> int:
    return n_samples * FRAMES * width * 4


def test_streaming_compat_pass_on_100k_frames(corpora):
    big = run_child("scale_pass", corpus=str(corpora[500]), workers=2)
    small = run_child("scale_pass", corpus=str(corpora[50]), workers=2)
    assert big["frames"] == 500 * FRAMES and big["files"] == 500 and big["errors"] == 0
    assert big["findings"]["ctc_feasibility"] == "pass" and big["findings"]["labels"] == "pass", big["findings"]
    assert big["findings"]["clean_features"] != "fail", big["findings"]
    for key in ("peak_rss_mb", "children_peak_rss_mb"):  # the main process and the scan workers
        assert big[key] <= MAX_PEAK_RATIO * small[key], (key, big[key], small[key])
    # the whole corpus as the scan's float32 would be 650 MB; the pass itself holds a file at a time
    assert big["peak_growth_mb"] * 2**20 < _float32_bytes(500, RAW_DIM) / 4, big


def test_iterating_the_dataset_keeps_memory_bounded(corpora):
    """DataLoader over every train sample (temporal features on the fly): peak memory is a few
    batches, not the corpus; the 10x corpus peaks where the small one does."""
    small = run_child("iterate", corpus=str(corpora[50]))
    big = run_child("iterate", corpus=str(corpora[500]))
    assert big["samples"] == 10 * small["samples"] and big["frames"] == 10 * small["frames"]
    assert big["peak_rss_mb"] <= MAX_PEAK_RATIO * small["peak_rss_mb"], (big, small)
    model_ready = _float32_bytes(big["samples"], FEATURE_DIM)  # what loading the split whole would take (~2 GB)
    assert big["peak_growth_mb"] * 2**20 < model_ready / 8, (big["peak_growth_mb"], model_ready / 2**20)


def test_dataset_reads_feature_files_memory_mapped(tmp_path):
    """The dataset's corpus hands out np.memmap views: a sample is read when it is used."""
    root = write_synthetic_corpus(tmp_path / "c", 10, 20)
    ds = MediaPipeFeatureDataset(root, "train", normalization="none")
    arr = ds.corpus.load(ds.records[0])
    assert isinstance(arr, np.memmap) and arr.shape == (20, RAW_DIM)
    assert ds[0].features.shape == (20, FEATURE_DIM)
    assert isinstance(Corpus(root).load(ds.records[1]), np.memmap)
