"""What a model was trained on, as a small JSON document that travels with it (a checkpoint's
"data_profile"), so that new data can be compared with it later (harness/checks/drift.py).

The profile itself is data/profile.py's (model.evaluate and model.recognize profile new data
there, without the harness); this module profiles a split of the corpus scan the compat checks
already make (harness/scan.py: one FileScan a file, the measurements data.profile.profile_of
reads): no second pass over the files.
"""
from __future__ import annotations

from data.profile import HANDS, MAX_VALUES, QUANTILES, VERSION, check_profile, distribution, load_profile, profile_of
from harness.scan import BLOCKS
from harness.thresholds import DEFAULTS

__all__ = ["BLOCKS", "HANDS", "MAX_VALUES", "QUANTILES", "VERSION", "check_profile", "distribution", "load_profile",
           "profile_corpus", "profile_from_scan"]


def profile_from_scan(scan, records, split: str | None = "train", hand_lead: float = DEFAULTS["shift_hand_lead"]) -> dict:
    """The profile of one split of a scan (split=None: every file). `records` (data.corpus
    SampleRecord, any order) give the fps; a record without fps counts as unknown."""
    files = [f for f in scan.files if split is None or f.split == split]
    return profile_of(files, {r.id: r.fps for r in records}, split or "all", hand_lead)


def profile_corpus(corpus_dir, split: str | None = None, workers: int = 0) -> dict:
    """The profile of a corpus directory in this project's format: one split, or all (None)."""
    from data.corpus import Corpus
    from harness.scan import scan_corpus

    corpus = Corpus(corpus_dir)
    if split is not None:
        corpus.records = [r for r in corpus.records if r.split == split]
    return profile_from_scan(scan_corpus(corpus, workers=workers), corpus.records, split)
