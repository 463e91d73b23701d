"""Every threshold the checks use, in one place, with why it has its value.

Override any of them in the training configuration's `thresholds` table; the checks read
`resolve(cfg.thresholds)`.
"""
from __future__ import annotations

from data.drift import DEFAULTS as DRIFT_DEFAULTS

DEFAULTS = {
    # MediaPipe x/y are normalised to the image (0..1). Pose points below the frame reach ~3
    # (legs of an upper-body shot); values beyond this are pixel coordinates stored by mistake.
    "max_abs_coordinate": 4.0,
    # share of present x/y values beyond max_abs_coordinate that marks a file as pixel-valued
    "pixel_fraction": 0.01,
    # MediaPipe z is relative depth on roughly the scale of x (pose: to the hips, hands: to the
    # wrist). Real Kaggle landmarks reach |z| 4.9 (pose points out of the frame), the demo 2.5;
    # z in other units (a pre-normalised .pose, ~250) is far beyond. Same share as pixel_fraction.
    "max_abs_z": 10.0,
    # a train-split channel with std below this is "constant"; the normalization floor must cover it
    "min_channel_std": 1e-4,
    # share of a file's hand landmarks (either hand) stored as exact zeros above which the file
    # counts as storing undetected hands as 0 instead of NaN (warned)
    "zero_filled_hands": 0.05,
    # a std (train channel, or the normalization's std floor) below this is ~0: dividing by it
    # gives 0/0 or x/0
    "zero_std": 1e-6,
    # model input: z-scores beyond this are not "normalized" any more; the clip default is 20
    "max_abs_input": 50.0,
    # model input: a dev/test sample's dataset output (before any batch_transform) at this many
    # times its channel's train scale or more is a train statistic dividing by ~0, not a shift
    # between splits: with landmark deltas of a few units, |x| >= 1e3 needs a train std below ~4e-3.
    # Measured on the incident corpus (left hand constant over train), dev/test |x| over the train
    # scale: std + 1e-8 2.1e8, a 1e-3 std floor alone 2.1e3, the floor with those channels zeroed 2.7
    "unbounded_ratio": 1e3,
    # a channel's train scale (max |x| over the train probe samples) is floored here, so a channel
    # ~0 over train (a hand never seen there, zero-filled or zeroed) is judged by |x| itself: a
    # z-scored channel reaches ~1 over train
    "train_scale_floor": 1.0,
    # share of model-input values sitting at the clip bound before the clip is hiding a problem
    "max_clipped_fraction": 0.001,
    # relative and absolute tolerance when comparing the model input with one application of the
    # normalization (the absolute one for values near 0)
    "normalize_once_rtol": 1e-4,
    "normalize_once_atol": 1e-4,
    # |logsumexp(log_probs)| above this: the head does not output log-probabilities
    "logprob_norm_tol": 1e-3,
    # loss at init vs the CTC loss of a uniform prediction: allowed ratio band
    "init_loss_ratio": (0.5, 2.0),
    # gradient norms: any layer above max_layer_grad or below min_layer_grad (relative to the
    # median layer) is exploding / vanishing
    "max_global_grad_norm": 1e4,
    "layer_grad_ratio": 1e4,
    # padding leak tolerance (eval mode, alone vs in a padded batch)
    "padding_atol": 1e-4,
    # smoke run: steps, and the factor by which the last losses may exceed the first before
    # it counts as diverging
    "smoke_steps": 10,
    "smoke_divergence": 1.5,
    # smoke run: median ||delta w|| / ||w|| per step (second half, scaled to the peak learning rate).
    # Measured (demo and Kaggle corpora, small and default model): 0.3-0.9% at lr 1e-3, 2-5% at 1e-2,
    # 15-35% at 0.1 (100x). 10% catches the 100x case without refusing a deliberate 10x
    "max_update_ratio": 0.1,
    # the user's train_step: calls on healthy probe batches before the one made non-finite on
    # purpose (at least 2: a gradient left over from one call shows at the next one's backward)
    "train_step_steps": 3,
    # the step's loss agrees with the reference CTC of the same model output when within this
    # relative (and, near 0, absolute) tolerance: both are float32 CTC of the same values, which
    # differ by ~1e-6 relative; AMP or another CTC implementation may need more
    "step_loss_rtol": 1e-3,
    "step_loss_atol": 1e-4,
    # overfit: optimisation steps allowed to reach 0% WER on the tiny subset
    "overfit_steps": 300,
    "overfit_samples": 4,
    # share of the valid output frames decoded as blank at which CTC counts as stuck on its
    # all-blank plateau (the overfit check; train.py warns on the dev split at the same share)
    "plateau_blank_share": 0.95,
    # overfit: a best WER at or above this means the run learned nothing it can decode (on the
    # plateau, or a decoder that reads the output differently from the loss)
    "overfit_stuck_wer": 0.9,
    # shift between splits (warn only): a hand's presence rate differing by more than this
    # (absolute share of frames); the share of samples led by the right hand; hand speed and
    # length ratios outside 1/ratio..ratio; the signer's median position moved by more than this
    # share of the frame. Values and what they measured: see harness/checks/shift.py.
    "shift_presence": 0.2,
    "shift_handedness": 0.3,
    "shift_ratio": 1.5,
    "shift_position": 0.15,
    # handedness: a hand leads a sample when it moves at least this many times as much as the
    # other (or alone); a split needs this many samples led by one hand before it is compared
    "shift_hand_lead": 1.5,
    "shift_min_led": 3,
    # A teacher with more than half of the words of its dev probe sentences wrong is not worth
    # distilling from: its frame posteriors mislead the student about where glosses are more often
    # than they help. What this separates, measured on the small demo corpus (24 train sentences,
    # 6 dev): a healthy small teacher trained for the fault catalogue scores 0-17% dev WER; an untrained
    # one 100% (all blank), a teacher fed another normalization 80-100%. A sound teacher on a hard corpus
    # (PHOENIX-2014: 20-25% dev WER for strong models) passes with room to spare; the limit is for
    # broken teachers, not for ranking good ones.
    "max_teacher_wer": 0.5,
    # distillation loss at init vs T^2 KL(teacher_T || uniform): the student starts near uniform
    # (classifier weights std 0.01, zero bias), so the ratio is ~1 (measured 0.98-1.02); the band is
    # that of loss_at_init. A KL missing its T^2 gives 1/T^2 (0.25 at T = 2), one summed over frames ~T'.
    "distill_init_ratio": (0.5, 2.0),
    # below this (times T^2) the teacher's tempered posteriors are ~uniform: nothing to distil (warned)
    "min_teacher_kl": 1e-3,
    # global statistics of teacher and student train splits agree when every channel's mean differs
    # by less than this share of its std, and every std by less than this relative amount
    "teacher_stats_tol": 0.01,
    # length distribution: fewer frames than this is suspicious for a sentence
    "min_frames": 4,
    # share of a modality missing above which the check warns
    "missing_warn_fraction": 0.5,
    # drift of new data against a model's training profile (harness/checks/drift.py; warn only):
    # data/drift.py holds the values and how each was set from real data
    **DRIFT_DEFAULTS,
}


def resolve(overrides: dict | None = None) -> dict:
    thresholds = dict(DEFAULTS)
    for k, v in (overrides or {}).items():
        if k not in DEFAULTS:
            raise ValueError(f"unknown harness threshold {k!r}; known: {sorted(DEFAULTS)}")
        thresholds[k] = type(DEFAULTS[k])(v) if not isinstance(DEFAULTS[k], tuple) else tuple(v)
    return thresholds
