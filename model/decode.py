"""CTC decoders: greedy (best path) and prefix beam search, on batch-first log-probabilities.

Both take log_probs [B, T, V] (float, log_softmax over V) and lengths [B] (valid frames per
sample) and return one Hypothesis per sample: token ids without blanks, a log-probability
score, and for each token the frame at which it was first emitted.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch


class Hypothesis(NamedTuple):
    tokens: list[int]
    score: float  # greedy: log P(best path); beam: log P(label sequence), summed over kept alignments
    timesteps: list[int]  # frame index at which each token starts


def _check(log_probs, lengths, blank: int):
    if not torch.is_tensor(log_probs) or log_probs.ndim != 3 or not log_probs.is_floating_point():
        got = f"{tuple(log_probs.shape)} {log_probs.dtype}" if torch.is_tensor(log_probs) else type(log_probs).__name__
        raise ValueError(f"log_probs must be a floating tensor [B, T, V], got {got}")
    batch, steps, vocab = log_probs.shape
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (batch,) or lengths.is_floating_point():
        raise ValueError(f"lengths must be an integer tensor [B] with B={batch}, got {tuple(lengths.shape)} {lengths.dtype}")
    if batch and (int(lengths.min()) < 0 or int(lengths.max()) > steps):
        raise ValueError(f"lengths must lie in 0..T={steps}, got {lengths.tolist()}")
    if not 0 <= blank < vocab:
        raise ValueError(f"blank={blank} outside the vocabulary 0..{vocab - 1}")
    return lengths.tolist()


def collapse_path(path, blank: int = 0) -> tuple[list[int], list[int]]:
    """Frame-wise ids -> (tokens, start frames): merge repeats, then drop blanks. [2,2,0,3,3,3,0,3] -> [2,3,3]."""
    tokens, timesteps, previous = [], [], None
    for t, token in enumerate(path):
        if token != previous and token != blank:
            tokens.append(int(token))
            timesteps.append(t)
        previous = token
    return tokens, timesteps


@torch.no_grad()
def greedy_decode(log_probs, lengths, blank: int = 0) -> list[Hypothesis]:
    """Best path per sample: argmax per frame, collapse. score = sum of the per-frame maxima."""
    lengths = _check(log_probs, lengths, blank)
    best, best_ids = log_probs.detach().float().cpu().max(dim=-1)  # (B, T) each
    hypotheses = []
    for b, length in enumerate(lengths):
        tokens, timesteps = collapse_path(best_ids[b, :length].tolist(), blank)
        hypotheses.append(Hypothesis(tokens, float(best[b, :length].sum()), timesteps))
    return hypotheses


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def _prefix_beam_search(frames: np.ndarray, beam_width: int, token_top_k: int, blank: int) -> Hypothesis:
    """One sample: frames [T, V] float64 log-probs."""
    # prefix -> [log P(prefix, path ends in blank), log P(prefix, path ends in its last token),
    #            timesteps, log-prob of the contribution the timesteps came from]
    beams = {(): [0.0, -math.inf, [], 0.0]}
    for t, frame in enumerate(frames):
        # candidate tokens: the frame's top-k (stable order so ties match argmax's first index)
        candidates = np.argsort(-frame, kind="stable")[:token_top_k].tolist()
        following: dict[tuple, list] = {}

        def add(prefix, blank_part, score, timesteps):
            entry = following.setdefault(prefix, [-math.inf, -math.inf, timesteps, -math.inf])
            index = 0 if blank_part else 1
            entry[index] = _logaddexp(entry[index], score)
            if score > entry[3]:  # keep the timesteps of the likeliest alignment into this prefix
                entry[2], entry[3] = timesteps, score

        for prefix, (p_blank, p_token, timesteps, _) in beams.items():
            p_total = _logaddexp(p_blank, p_token)
            last = prefix[-1] if prefix else None
            for c in candidates:
                p = float(frame[c])
                if c == blank:
                    add(prefix, True, p_total + p, timesteps)
                elif c == last:
                    add(prefix, False, p_token + p, timesteps)  # repeat without blank: same prefix
                    add(prefix + (c,), False, p_blank + p, timesteps + [t])  # blank in between: new token
                else:
                    add(prefix + (c,), False, p_total + p, timesteps + [t])
        ranked = sorted(following.items(), key=lambda kv: _logaddexp(kv[1][0], kv[1][1]), reverse=True)
        beams = {prefix: entry for prefix, entry in ranked[:beam_width] if _logaddexp(entry[0], entry[1]) > -math.inf}
    prefix, (p_blank, p_token, timesteps, _) = max(beams.items(), key=lambda kv: _logaddexp(kv[1][0], kv[1][1]))
    return Hypothesis(list(prefix), _logaddexp(p_blank, p_token), list(timesteps))


@torch.no_grad()
def beam_search(log_probs, lengths, beam_width: int = 10, blank: int = 0, token_top_k: int | None = None) -> list[Hypothesis]:
    """CTC prefix beam search per sample (blank / non-blank prefix probabilities in log space).

    Each frame extends the beams only with its token_top_k likeliest tokens (default
    beam_width, like a decoder's token beam); the others are pruned, so prefixes reachable
    only through them are not scored. With beam_width=1 this is exactly greedy decoding.
    score = log P(tokens) summed over the alignments the search kept.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    lengths = _check(log_probs, lengths, blank)
    top_k = min(token_top_k or beam_width, log_probs.shape[-1])
    frames = log_probs.detach().double().cpu().numpy()
    return [_prefix_beam_search(frames[b, :length], beam_width, top_k, blank) for b, length in enumerate(lengths)]


def decoder_label(beam_width: int) -> str:
    """How train.py and the commands name the decoder of a beam width: 'greedy' (<= 1) or 'beam N'."""
    return "greedy" if beam_width <= 1 else f"beam {beam_width}"
