import itertools
import math

import pytest
import torch

from model.ctc import ctc_loss, ctc_loss_per_sample, min_ctc_length, uniform_ctc_loss
from model.decode import Hypothesis, beam_search, collapse_path, greedy_decode


def random_log_probs(batch, steps, vocab, seed=0, sharpness=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(sharpness * torch.randn(batch, steps, vocab, generator=g), dim=-1)


def path_log_probs(path, vocab, peak=0.9):
    """[1, T, V] log-probs putting `peak` on each frame's id of `path`, the rest spread evenly."""
    probs = torch.full((len(path), vocab), (1 - peak) / (vocab - 1))
    probs[torch.arange(len(path)), torch.tensor(path)] = peak
    return probs.log()[None]


def labelling_log_probs(frames):
    """Brute force over all T^V alignments: {label tuple: log P(label)} for frames [T, V] log-probs."""
    steps, vocab = frames.shape
    totals = {}
    for path in itertools.product(range(vocab), repeat=steps):
        label = tuple(collapse_path(path)[0])
        p = math.exp(sum(float(frames[t, c]) for t, c in enumerate(path)))
        totals[label] = totals.get(label, 0.0) + p
    return {label: math.log(p) for label, p in totals.items()}


# ----------------------------------------------------------------------------- CTC loss


def test_ctc_loss_equals_brute_force_alignment_sum():
    log_probs = random_log_probs(2, 4, 3, seed=1)
    targets, target_lengths, out_lengths = torch.tensor([1, 2, 1]), torch.tensor([2, 1]), torch.tensor([4, 3])
    losses = ctc_loss_per_sample(log_probs, out_lengths, targets, target_lengths, normalize_by_target_length=False)
    expected = [-labelling_log_probs(log_probs[0, :4])[(1, 2)], -labelling_log_probs(log_probs[1, :3])[(1,)]]
    assert losses.dtype == torch.float32
    assert losses.tolist() == pytest.approx(expected, rel=1e-5)
    normalised = ctc_loss_per_sample(log_probs, out_lengths, targets, target_lengths)
    assert normalised.tolist() == pytest.approx([expected[0] / 2, expected[1] / 1], rel=1e-5)
    assert float(ctc_loss(log_probs, out_lengths, targets, target_lengths)) == pytest.approx(float(normalised.mean()), rel=1e-6)
    assert float(ctc_loss(log_probs, out_lengths, targets, target_lengths, reduction="sum")) == pytest.approx(sum(expected), rel=1e-5)


def test_ctc_loss_is_float32_under_autocast():
    log_probs = random_log_probs(3, 20, 7, seed=2)
    targets, target_lengths, out_lengths = torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([3, 2, 1]), torch.tensor([20, 15, 9])
    reference = ctc_loss_per_sample(log_probs, out_lengths, targets, target_lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = ctc_loss_per_sample(log_probs.bfloat16(), out_lengths, targets, target_lengths)
    assert low.dtype == torch.float32
    assert torch.allclose(low, reference, rtol=0.05)


def test_ctc_gradient_flows_to_log_probs():
    logits = torch.randn(2, 10, 5, requires_grad=True)
    ctc_loss(torch.log_softmax(logits, -1), torch.tensor([10, 6]), torch.tensor([1, 2, 3]), torch.tensor([2, 1])).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0].abs().sum() > 0
    assert torch.count_nonzero(logits.grad[1, 6:]) == 0  # frames past out_lengths do not count


def test_ctc_input_validation():
    log_probs = random_log_probs(2, 6, 5)
    out_lengths, targets, target_lengths = torch.tensor([6, 4]), torch.tensor([1, 2, 3]), torch.tensor([2, 1])
    with pytest.raises(ValueError, match=r"\[B, T, V\]"):
        ctc_loss(log_probs[0], out_lengths, targets, target_lengths)
    with pytest.raises(ValueError, match="targets must be a 1-D integer"):
        ctc_loss(log_probs, out_lengths, targets.float(), target_lengths)
    with pytest.raises(ValueError, match="targets must be a 1-D integer"):
        ctc_loss(log_probs, out_lengths, targets.view(1, 3), target_lengths)
    with pytest.raises(ValueError, match=r"targets\[2\] = 0 \(sample 1, position 0\) is the blank id 0"):
        ctc_loss(log_probs, out_lengths, torch.tensor([1, 2, 0]), target_lengths)
    with pytest.raises(ValueError, match=r"targets\[1\] = 9 \(sample 0, position 1\) is outside the vocabulary"):
        ctc_loss(log_probs, out_lengths, torch.tensor([1, 9, 2]), target_lengths)
    with pytest.raises(ValueError, match="out_lengths must lie in 0..T=6"):
        ctc_loss(log_probs, torch.tensor([7, 4]), targets, target_lengths)
    with pytest.raises(ValueError, match="sum to len"):
        ctc_loss(log_probs, out_lengths, targets, torch.tensor([2, 2]))
    with pytest.raises(ValueError, match="out_lengths must be an integer tensor"):
        ctc_loss(log_probs, out_lengths.float(), targets, target_lengths)


@pytest.mark.parametrize("target, expected", [([], 0), ([4], 1), ([1, 2, 3], 3), ([1, 1, 2], 4), ([5, 5, 5, 2, 2], 8)])
def test_min_ctc_length_is_the_feasibility_boundary(target, expected):
    assert min_ctc_length(target) == min_ctc_length(torch.tensor(target, dtype=torch.long)) == expected
    if not target:
        return
    log_probs = random_log_probs(1, expected, 6)
    targets, target_lengths = torch.tensor(target), torch.tensor([len(target)])
    feasible = ctc_loss(log_probs, torch.tensor([expected]), targets, target_lengths, reduction="none")
    too_short = ctc_loss(log_probs, torch.tensor([expected - 1]), targets, target_lengths, reduction="none")
    assert torch.isfinite(feasible).all() and torch.isinf(too_short).all()


def test_uniform_ctc_loss_counts_alignments():
    vocab, steps = 3, 5
    out_lengths, targets, target_lengths = torch.tensor([steps, 3]), torch.tensor([1, 2, 2]), torch.tensor([2, 1])
    losses = uniform_ctc_loss(out_lengths, targets, target_lengths, vocab, normalize_by_target_length=False)
    # uniform: every path has probability V^-T, so the loss is T log V - log(number of alignments)
    for loss, length, label in zip(losses.tolist(), [steps, 3], [(1, 2), (2,)]):
        alignments = sum(tuple(collapse_path(p)[0]) == label for p in itertools.product(range(vocab), repeat=length))
        assert loss == pytest.approx(length * math.log(vocab) - math.log(alignments), rel=1e-5)


# ----------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    "path, tokens, timesteps",
    [
        ([2, 2, 0, 3, 3, 3, 0, 3], [2, 3, 3], [0, 3, 7]),
        ([0, 0, 0], [], []),
        ([1, 1, 1, 1], [1], [0]),
        ([1, 0, 1, 2, 1], [1, 1, 2, 1], [0, 2, 3, 4]),
        ([0, 4, 0, 0, 4, 4, 5], [4, 4, 5], [1, 4, 6]),
    ],
)
def test_greedy_collapses_by_hand(path, tokens, timesteps):
    assert collapse_path(path) == (tokens, timesteps)
    (hyp,) = greedy_decode(path_log_probs(path, 6), torch.tensor([len(path)]))
    assert isinstance(hyp, Hypothesis)
    assert hyp.tokens == tokens and hyp.timesteps == timesteps
    assert hyp.score == pytest.approx(len(path) * math.log(0.9), rel=1e-5)


def test_decoders_respect_lengths():
    log_probs = torch.cat([path_log_probs([1, 2, 3, 4], 6), path_log_probs([5, 5, 0, 0], 6)])
    lengths = torch.tensor([2, 4])
    assert [h.tokens for h in greedy_decode(log_probs, lengths)] == [[1, 2], [5]]
    assert [h.tokens for h in beam_search(log_probs, lengths, beam_width=4)] == [[1, 2], [5]]
    assert greedy_decode(log_probs, torch.tensor([0, 4]))[0] == Hypothesis([], 0.0, [])
    with pytest.raises(ValueError, match="lengths must lie in 0..T=4"):
        greedy_decode(log_probs, torch.tensor([5, 4]))
    with pytest.raises(ValueError, match="beam_width"):
        beam_search(log_probs, lengths, beam_width=0)


@pytest.mark.parametrize("seed", range(5))
def test_beam_width_one_equals_greedy(seed):
    log_probs = random_log_probs(4, 30, 8, seed=seed)
    lengths = torch.tensor([30, 25, 7, 1])
    greedy, beam = greedy_decode(log_probs, lengths), beam_search(log_probs, lengths, beam_width=1)
    for g, b in zip(greedy, beam):
        assert b.tokens == g.tokens and b.timesteps == g.timesteps
        assert b.score == pytest.approx(g.score, rel=1e-5)


def test_beam_on_peaked_distribution_equals_greedy():
    g = torch.Generator().manual_seed(3)
    paths = torch.randint(0, 12, (3, 40), generator=g)
    log_probs = torch.cat([path_log_probs(p.tolist(), 12, peak=0.995) for p in paths])
    lengths = torch.tensor([40, 31, 12])
    greedy = greedy_decode(log_probs, lengths)
    beam = beam_search(log_probs, lengths, beam_width=10)
    assert [b.tokens for b in beam] == [h.tokens for h in greedy]
    assert any(h.tokens for h in greedy)


def test_beam_beats_greedy_by_merging_prefixes():
    # frames (blank, a): (0.55, 0.45), (0.7, 0.3). Best path: blank blank -> "" with 0.385.
    # "a" collects a-a 0.135 + a-blank 0.315 + blank-a 0.165 = 0.615; its likeliest alignment starts at frame 0.
    log_probs = torch.tensor([[[0.55, 0.45], [0.7, 0.3]]]).log()
    (greedy,) = greedy_decode(log_probs, torch.tensor([2]))
    (beam,) = beam_search(log_probs, torch.tensor([2]), beam_width=2)
    assert greedy.tokens == [] and greedy.score == pytest.approx(math.log(0.385))
    assert beam.tokens == [1] and beam.score == pytest.approx(math.log(0.615))
    assert beam.timesteps == [0]


@pytest.mark.parametrize("seed", range(4))
def test_wide_beam_finds_the_most_probable_labelling(seed):
    log_probs = random_log_probs(1, 5, 3, seed=seed, sharpness=2.0)
    exact = labelling_log_probs(log_probs[0])
    best = max(exact, key=exact.get)
    (beam,) = beam_search(log_probs, torch.tensor([5]), beam_width=64, token_top_k=3)
    assert tuple(beam.tokens) == best
    assert beam.score == pytest.approx(exact[best], rel=1e-6)


def test_wide_beam_keeps_blank_separated_repeats():
    log_probs = path_log_probs([1, 1, 0, 1, 2], 3, peak=0.8)
    exact = labelling_log_probs(log_probs[0])
    (beam,) = beam_search(log_probs, torch.tensor([5]), beam_width=64, token_top_k=3)
    assert max(exact, key=exact.get) == (1, 1, 2) == tuple(beam.tokens)
    assert beam.score == pytest.approx(exact[(1, 1, 2)], rel=1e-6)
