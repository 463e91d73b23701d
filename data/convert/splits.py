"""The split policy of the importers: signers to train/dev/test, so no signer is in two splits."""
from __future__ import annotations

import numpy as np

from data.convert.common import ConvertError
from data.corpus import SPLITS

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


def _split_counts(n: int, fractions) -> list[int]:
    """Signers a split: largest-remainder rounding, then every split with a positive fraction
    gets at least one signer while another split can spare one (train first, then dev, test)."""
    raw = [n * f for f in fractions]
    counts = [int(np.floor(r)) for r in raw]
    by_remainder = sorted(range(3), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    for i in range(3):
        if fractions[i] > 0 and counts[i] == 0:
            # a donor can spare a signer if it keeps one, or if it is a lower-priority split
            # (train before dev before test): 2 signers end up in train and dev
            donors = [j for j in range(3) if j != i and (counts[j] > 1 or (counts[j] == 1 and j > i))]
            if donors:
                donor = max(donors, key=lambda j: (counts[j], j))
                counts[donor] -= 1
                counts[i] += 1
    return counts


def check_fractions(fractions) -> tuple[float, float, float]:
    """(train, dev, test) fractions, non-negative, train > 0; normalised to sum 1 (70/15/15 works)."""
    try:
        fr = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ConvertError(f"fractions {fractions!r}: give three numbers (train, dev, test), e.g. 0.7 0.15 0.15") from None
    if len(fr) != 3 or any(not np.isfinite(f) or f < 0 for f in fr) or fr[0] <= 0:
        raise ConvertError(f"fractions {fractions!r}: need three non-negative numbers (train, dev, test) with train > 0")
    total = sum(fr)
    return tuple(f / total for f in fr)


def signer_splits(signers, seed: int = 0, fractions=DEFAULT_FRACTIONS) -> dict[str, str]:
    """Assign each distinct signer to train/dev/test, so no signer is in two splits.

    Signers are shuffled with `seed` (same seed and signer set -> same assignment). With at least
    3 signers and positive fractions every split is non-empty; with 2 they go to train and dev,
    with 1 to train.
    """
    fr = check_fractions(fractions)
    unique = sorted({str(s) for s in signers})
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    counts = _split_counts(len(unique), fr)
    out, start = {}, 0
    for split, count in zip(SPLITS, counts):
        for signer in order[start : start + count]:
            out[signer] = split
        start += count
    return out
