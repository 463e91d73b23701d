import csv
from pathlib import Path

import pytest

from model.metrics import WERResult, phoenix_cleanup, word_error_rate

PHOENIX = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "phoenix2014"


def test_perfect_match_and_counts_by_hand():
    assert word_error_rate(["A B C"], [["A", "B", "C"]]) == WERResult(0.0, 0, 0, 0, 3, 3, 1)
    # ref A B C D / hyp A X C D E: 1 substitution, 1 insertion; ref E F / hyp F: 1 deletion
    result = word_error_rate(["A B C D", "E F"], ["A X C D E", "F"])
    assert (result.substitutions, result.deletions, result.insertions, result.hits) == (1, 1, 1, 4)
    assert result.n_ref_words == 6 and result.n_sentences == 2
    assert result.wer == pytest.approx(3 / 6)  # corpus level, not the mean of 2/4 and 1/2 per sentence


def test_corpus_level_not_sentence_average():
    result = word_error_rate(["A", "B C D E F G H I J K"], ["X", "B C D E F G H I J K"])
    assert result.wer == pytest.approx(1 / 11)  # a sentence average would give (1 + 0) / 2


def test_empty_hypothesis_counts_deletions():
    result = word_error_rate([["A", "B"], ["C"]], [[], ""])
    assert (result.deletions, result.hits, result.wer) == (3, 0, 1.0)


def test_bad_input_errors():
    with pytest.raises(ValueError, match=r"references\[1\] is empty"):
        word_error_rate(["A", "  "], ["A", "B"])
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_error_rate(["A", "B"], ["A"])
    with pytest.raises(ValueError, match="no sentences"):
        word_error_rate([], [])
    with pytest.raises(TypeError, match=r"hypotheses\[0\]"):
        word_error_rate(["A"], [[1, 2]])
    with pytest.raises(ValueError, match=r"references\[0\] is empty after the PHOENIX clean-up"):
        word_error_rate(["__ON__ __OFF__"], ["A"], phoenix_cleanup=True)


@pytest.mark.parametrize(
    "glosses, expected",
    [
        (["__ON__", "MORGEN", "loc-REGION", "REGION", "__OFF__"], ["MORGEN", "REGION"]),
        (["__EMOTION__", "__PU__", "__LEFTHAND__", "__NEWMARKER__", "WIND"], ["WIND"]),
        (["cl-KOMMEN", "qu-STEIGEN", "poss-MEIN", "lh-SONNE", "LOC-NORD"], ["KOMMEN", "STEIGEN", "MEIN", "SONNE", "NORD"]),
        (["IX", "S", "H", "WEST", "A", "B+C"], ["IX", "S+H", "WEST", "A+B+C"]),
        (["REGEN", "REGEN", "REGEN", "SONNE", "REGEN"], ["REGEN", "SONNE", "REGEN"]),
        (["WIE-AUSSEHEN", "HABEN2", "loc-"], ["WIE-AUSSEHEN", "HABEN2"]),  # documented as left alone
    ],
)
def test_phoenix_cleanup_rules(glosses, expected):
    assert phoenix_cleanup(glosses) == expected


def _annotations(split):
    path = PHOENIX / f"{split}.corpus.csv"
    if not path.is_file():
        pytest.skip(f"PHOENIX-2014 annotations not found at {path} (third-party data, absent in a fresh clone)")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="|"))
    assert rows and set(rows[0]) == {"id", "folder", "signer", "annotation"}
    return [row["annotation"] for row in rows]


@pytest.mark.real_data
@pytest.mark.parametrize("split, n_sentences", [("dev", 540), ("train", 5671)])
def test_cleanup_on_real_phoenix_annotations(split, n_sentences):
    annotations = _annotations(split)
    assert len(annotations) == n_sentences
    cleaned = [phoenix_cleanup(a.split()) for a in annotations]
    assert all(cleaned), "every sentence keeps at least one gloss"
    words = [w for sentence in cleaned for w in sentence]
    assert not [w for w in words if w.startswith("__") or w.lower().startswith(("loc-", "cl-", "qu-", "poss-", "lh-"))]
    assert all(a != b for sentence in cleaned for a, b in zip(sentence, sentence[1:]))
    # the clean-up changes a good share of real lines (markers are frequent)
    assert sum(c != a.split() for c, a in zip(cleaned, annotations)) > len(annotations) // 4


def _drop_markers_and_loc(words):
    """What a recogniser trained without markers and location prefixes would say."""
    return [w[4:] if w.startswith("loc-") else w for w in words if not (w.startswith("__") and w.endswith("__"))]


@pytest.mark.real_data
@pytest.mark.parametrize("split", ["dev", "train"])
def test_wer_with_cleanup_ignores_markers_and_prefixes_on_real_lines(split):
    references = _annotations(split)
    hypotheses = [_drop_markers_and_loc(r.split()) for r in references]
    raw = word_error_rate(references, hypotheses)
    cleaned = word_error_rate(references, hypotheses, phoenix_cleanup=True)
    assert raw.wer > 0 and raw.deletions > 0
    assert cleaned.wer == 0.0 and cleaned.n_sentences == len(references)
    assert cleaned.n_ref_words < raw.n_ref_words
    if split == "train":  # dev has no loc- prefixes; train's make substitutions without the clean-up
        assert raw.substitutions > 0
    # self-consistency on the raw annotation (double spaces in the file are not words)
    assert word_error_rate(references, references).wer == 0.0
    assert word_error_rate(references, [r.split() for r in references]).n_ref_words == raw.n_ref_words
