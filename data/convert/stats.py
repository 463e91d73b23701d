"""Gloss statistics of a corpus: samples, signers, tokens, vocabulary, sentence lengths, OOV rate by split."""
from __future__ import annotations

import statistics

import numpy as np

from data.corpus import SPLITS, read_manifest


def gloss_statistics(corpus_dir) -> dict:
    """Gloss-level statistics of a corpus (manifest only, no feature file is read).

    Returns {"samples": {split: n}, "signers": {split: n distinct}, "shared_signers": [signers in
    more than one split], "tokens": {split: n}, "vocabulary_size": distinct train glosses,
    "sentence_length": {split: {"min", "median", "max", "mean"} or None if empty},
    "oov_rate": {"dev"/"test": fraction of tokens not in the train vocabulary, None if empty},
    "oov_glosses": {"dev"/"test": distinct such glosses}}. Rows with an unknown split are ignored.
    """
    return records_statistics(read_manifest(corpus_dir, validate=False))


def records_statistics(records) -> dict:
    """gloss_statistics of any records with .split, .glosses and .signer (a manifest's, or a user dataset's)."""
    by_split = {s: [r for r in records if r.split == s] for s in SPLITS}
    vocab = {g for r in by_split["train"] for g in r.glosses}
    signer_sets = {s: {r.signer for r in recs if r.signer} for s, recs in by_split.items()}
    stats = {
        "samples": {s: len(recs) for s, recs in by_split.items()},
        "signers": {s: len(signer_sets[s]) for s in SPLITS},
        "shared_signers": sorted(g for g in set().union(*signer_sets.values()) if sum(g in v for v in signer_sets.values()) > 1),
        "tokens": {s: sum(len(r.glosses) for r in recs) for s, recs in by_split.items()},
        "vocabulary_size": len(vocab),
        "sentence_length": {},
        "oov_rate": {},
        "oov_glosses": {},
    }
    for s, recs in by_split.items():
        lengths = [len(r.glosses) for r in recs]
        stats["sentence_length"][s] = (
            {"min": min(lengths), "median": float(statistics.median(lengths)), "max": max(lengths),
             "mean": float(np.mean(lengths))} if lengths else None
        )
    for s in ("dev", "test"):
        tokens = [g for r in by_split[s] for g in r.glosses]
        oov = [g for g in tokens if g not in vocab]
        stats["oov_rate"][s] = len(oov) / len(tokens) if tokens else None
        stats["oov_glosses"][s] = len(set(oov))
    return stats
