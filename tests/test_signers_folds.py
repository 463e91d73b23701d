"""The signer folds of benchmarks/signers.py: the assignment, the sentence corpora built from it,
per-signer errors and the bootstrap over signers."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from data.corpus import Corpus
from tests.corpus_factory import make_corpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import signers  # noqa: E402


@pytest.mark.parametrize("n, k", [(21, 5), (10, 3), (7, 7)])
def test_each_signer_is_in_test_exactly_once_and_dev_never_in_test(n, k):
    names = [f"p{i}" for i in range(n)]
    folds = signers.fold_assignment(names, k, seed=3, n_dev=2)
    assert len(folds) == k
    tested = [s for fold in folds for s, split in fold.items() if split == "test"]
    assert sorted(tested) == sorted(names)
    for fold in folds:
        assert set(fold) == set(names)
        counts = {sp: sum(v == sp for v in fold.values()) for sp in ("train", "dev", "test")}
        assert counts["train"] > 0 and 1 <= counts["dev"] <= 2 and counts["test"] in (n // k, -(-n // k))
    assert folds == signers.fold_assignment(reversed(names), k, seed=3, n_dev=2)  # a function of the signer set and seed
    assert folds != signers.fold_assignment(names, k, seed=4, n_dev=2)
    with pytest.raises(ValueError):
        signers.fold_assignment(names[:1], 2)


def test_fold_corpora_come_from_the_sentence_builder_with_the_fold_split(tmp_path):
    clips = make_corpus(tmp_path / "kaggle", n_train=10, n_dev=0, n_test=0, lengths=(12, 16))
    records = Corpus(clips).records  # make_corpus gives 2 signers; give each clip its own of 5
    text = (clips / "manifest.csv").read_text().splitlines()
    header, rows = text[0], text[1:]
    col = header.split(",").index("signer")
    rows = [",".join(p if j != col else f"q{i % 5}" for j, p in enumerate(r.split(","))) for i, r in enumerate(rows)]
    (clips / "manifest.csv").write_text("\n".join([header, *rows]) + "\n")
    assert len(records) == 10
    dirs = signers.build_folds(tmp_path, k=5, seed=0, sizes=(20, 5, 5))
    tested = []
    for data_dir, fold in zip(dirs, signers.fold_assignment([f"q{i}" for i in range(5)], 5, 0)):
        info = json.loads((data_dir / "corpus.json").read_text())
        assert {split: set(v) for split, v in info["signers"].items() if v} == {sp: {s for s, x in fold.items() if x == sp} for sp in set(fold.values())}
        assert info["params"]["keep_splits"] and info["sentences"] == {"train": 20, "dev": 5, "test": 5}
        tested += info["signers"]["test"]
        samples = {r.id: [1, len(r.glosses)] for r in Corpus(data_dir).split("test")}
        by_signer = signers.per_signer(data_dir, samples)
        assert set(by_signer) == set(info["signers"]["test"]) and sum(v[0] for v in by_signer.values()) == 5
    assert sorted(tested) == [f"q{i}" for i in range(5)]
    assert signers.build_folds(tmp_path, k=5, seed=0, sizes=(20, 5, 5)) == dirs  # a second build changes nothing (resumable)


def test_signer_bootstrap_is_seeded_and_brackets_the_pooled_wer():
    per = {f"s{i}": [e, 20] for i, e in enumerate([1, 2, 3, 10, 0, 4])}
    pooled, lo, hi = signers.signer_bootstrap(per)
    assert pooled == pytest.approx(20 / 120)
    assert lo < pooled < hi and (pooled, lo, hi) == signers.signer_bootstrap(per)
    assert signers.signer_bootstrap({"a": [2, 10], "b": [2, 10]})[1:] == (0.2, 0.2)  # no spread between signers: none in the interval
    assert np.isclose(signers.signer_bootstrap(per, seed=1)[0], pooled)


def test_the_fold_report_reads_results_json():
    def run(test, signers_errors):
        return {"dev_wer": 0.1, "test_wer": test, "test_signers": signers_errors}

    res = {"folds/k5/shifts/fold0": {"a": [{"group": "presence", "text": "hands detected in 10% of frames"}], "b": []},
           "folds/k5/shifts/fold1": {"c": [], "d": []}}
    for seed, shift in (("s0", 0.0), ("s1", 0.1)):
        res[f"folds/k5/defaults/fold0/{seed}/e10"] = run(0.2 + shift, {"a": [3, 10], "b": [1, 10]})
        res[f"folds/k5/defaults/fold1/{seed}/e10"] = run(0.1, {"c": [1, 10], "d": [1, 10]})
        res[f"folds/k5/bigru/fold0/{seed}/e10"] = run(0.3, {"a": [4, 10], "b": [2, 10]})
        res[f"folds/k5/bigru/fold1/{seed}/e10"] = run(0.05, {"c": [1, 20], "d": [0, 20]})
    text = "\n".join(signers.fold_report(res))
    first = next(ln for ln in text.splitlines() if ln.startswith("| defaults |"))
    assert "10.0% / 20.0%" in first and "15.0% (2 folds)" in first and first.endswith("| no |")  # loses fold 1
    assert "| a | 0 | 30.0% | 40.0% | presence: hands detected" in text
    assert "| presence (hands detected) | 1 of 4 | 30.0% / 10.0% |" in text
    assert "over seeds 0, 1" in text and "| defaults | 25.0% (2) | 10.0% (2) | 17.5% | 25.0% |" in text and "| 1 of 4 |" in text  # seed 1 ties the BiGRU on fold 0: not a win


def test_a_run_decoded_greedily_is_a_row_of_its_own(tmp_path, monkeypatch):
    """greedy_run: the run's best.pt through model.evaluate --beam_width 1, kept under its own key
    (the report lists it as the row "<row>_greedy"); done once."""
    from data.corpus import Corpus
    from data.synthetic import generate_corpus

    data = generate_corpus(tmp_path / "c", seed=0, n_train=2, n_dev=1, n_test=2)
    ids = [r.id for r in Corpus(data).split("test")]
    calls = []

    def evaluated(work, key, checkpoint, beam_width=None):
        calls.append((key, checkpoint.name, beam_width))
        return {ids[0]: [1, 4], ids[1]: [0, 4]}

    monkeypatch.setattr(signers, "evaluated_samples", evaluated)
    res = {"dev_wer": 0.3, "test_wer": 0.4, "epochs": [{"dev_wer_greedy": 0.5}, {"dev_wer_greedy": 0.2}]}
    for _ in range(2):
        signers.greedy_run(tmp_path, "folds/k5/x/fold0/s0/e10", "folds/k5/x_greedy/fold0/s0/e10", res, data)
    assert calls == [("folds/k5/x_greedy/fold0/s0/e10", "best.pt", 1)]
    got = signers.load_results(tmp_path)["folds/k5/x_greedy/fold0/s0/e10"]
    assert got["test_wer"] == 1 / 8 and got["dev_wer"] == 0.2 and got["decoder"] == "greedy"
    assert sum(e for e, _ in got["test_signers"].values()) == 1
    assert "| x_greedy | 20.0% / 12.5% |" in "\n".join(signers.fold_report(signers.load_results(tmp_path)))


@pytest.mark.parametrize("row", sorted(signers.FOLD_RECIPES))
def test_every_fold_row_is_a_configuration_train_py_accepts(row, tmp_path):
    """A fold row is written as a train.py configuration file: a misspelt field or a value out
    of range fails here, not after hours of other folds."""
    from model.config import load_config
    from model.registry import build_config

    fields = dict(signers.FOLD_RECIPES[row])
    path = signers.write_config(tmp_path, f"fold-{row}", fields.pop("augment", {}), fields)
    cfg = load_config(path)
    assert cfg.augment == signers.FOLD_RECIPES[row]["augment"]
    if "model_overrides" in fields:
        built = build_config(cfg.model, **cfg.model_overrides)
        assert all(getattr(built, k) == v for k, v in fields["model_overrides"].items()), built
