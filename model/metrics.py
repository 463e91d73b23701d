"""Word error rate over gloss sequences (corpus level, via jiwer) and the PHOENIX clean-up.

WER = (substitutions + deletions + insertions) / reference words, summed over the corpus
(not an average of sentence WERs), as published CSLR results report it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import jiwer


@dataclass
class WERResult:
    wer: float  # (S + D + I) / n_ref_words over the corpus
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    n_ref_words: int
    n_sentences: int


_MARKER = re.compile(r"^__[A-Za-z0-9]+__$")  # __ON__, __OFF__, __EMOTION__, __PU__, __LEFTHAND__, ...
_PREFIX = re.compile(r"^(loc|cl|qu|poss|lh)-", re.IGNORECASE)
_SPELLED = re.compile(r"^[A-Z](\+[A-Z])*$")  # a fingerspelled letter or run of letters, e.g. S or S+H


def phoenix_cleanup(glosses: list[str]) -> list[str]:
    """The PHOENIX scoring clean-up, applied alike to references and hypotheses.

    In order:
      1. drop every `__X__` marker (`__ON__`, `__OFF__`, `__EMOTION__`, `__PU__`, `__LEFTHAND__`, ...);
      2. strip the prefixes `loc-`, `cl-`, `qu-`, `poss-`, `lh-` (any case, repeatedly: `loc-REGION` -> `REGION`);
      3. merge adjacent fingerspelled tokens into the annotation's `+` form (`S H` -> `S+H`, `A B+C` -> `A+B+C`);
      4. collapse consecutive repeats (`REGION REGION` -> `REGION`).
    Not done (the official sed script has more special cases): digit suffixes such as `HABEN2`,
    `-PLUSPLUS` and `RAUM` suffixes, and single-gloss spelling fixes; they stay as written.
    """
    words = []
    for gloss in glosses:
        if _MARKER.match(gloss):
            continue
        while _PREFIX.match(gloss):
            gloss = _PREFIX.sub("", gloss, count=1)
        if gloss:
            words.append(gloss)
    merged = []
    for gloss in words:
        if merged and _SPELLED.match(gloss) and _SPELLED.match(merged[-1]):
            merged[-1] += "+" + gloss
        else:
            merged.append(gloss)
    return [g for i, g in enumerate(merged) if i == 0 or g != merged[i - 1]]


def _as_words(sentence, what: str, index: int) -> list[str]:
    if isinstance(sentence, str):
        return sentence.split()
    if isinstance(sentence, (list, tuple)) and all(isinstance(w, str) for w in sentence):
        return [w for w in sentence if w.strip()]
    raise TypeError(f"{what}[{index}] must be a string or a list of gloss strings, got {type(sentence).__name__}")


def word_error_rate(references, hypotheses, phoenix_cleanup: bool = False) -> WERResult:
    """Corpus WER of hypotheses against references (each a whitespace-separated string or a list of glosses).

    An empty hypothesis counts every reference word as a deletion; an empty reference (after
    the clean-up, if on) has no defined error rate and raises ValueError naming its index.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"word_error_rate got {len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("word_error_rate got no sentences to score")
    refs = [_as_words(r, "references", i) for i, r in enumerate(references)]
    hyps = [_as_words(h, "hypotheses", i) for i, h in enumerate(hypotheses)]
    if phoenix_cleanup:
        refs, hyps = [_cleanup(r) for r in refs], [_cleanup(h) for h in hyps]
    for i, ref in enumerate(refs):
        if not ref:
            note = " after the PHOENIX clean-up" if phoenix_cleanup else ""
            raise ValueError(f"references[{i}] is empty{note} ({references[i]!r}); every reference needs at least one gloss")
    out = jiwer.process_words([" ".join(r) for r in refs], [" ".join(h) for h in hyps])
    n_ref = out.hits + out.substitutions + out.deletions
    return WERResult(
        wer=(out.substitutions + out.deletions + out.insertions) / n_ref,
        substitutions=out.substitutions, deletions=out.deletions, insertions=out.insertions,
        hits=out.hits, n_ref_words=n_ref, n_sentences=len(refs),
    )


_cleanup = phoenix_cleanup  # the keyword argument of word_error_rate shadows the function's name
