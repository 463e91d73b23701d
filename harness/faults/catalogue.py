"""Fault catalogue: ways a CSLR training pipeline breaks, each injected into a healthy setup,
and the harness check that must catch it.

A Fault's `inject(setup)` is a context manager. Given a healthy Setup (a private copy of a corpus
plus the TrainConfig that points at it) it transforms corpus files, changes the configuration or
patches a component (unittest.mock.patch) and yields the broken Setup; leaving the context undoes
every patch. The injections live by family (harness/faults/data.py, model.py, distill.py); this is
the table of them, with what breaks and the check that must catch it, in the detection table's order.
"""
from __future__ import annotations

import contextlib

from harness.faults.base import Fault, configured
from harness.faults.data import (
    blank_in_targets, ctc_infeasible, empty_glosses, gloss_not_in_vocabulary, inf_in_file, no_imputation, pixel_coordinates,
    train_test_duplicate, z_in_other_units, zscore_no_floor,
)
from harness.faults.distill import (
    shuffled_teacher_vocabulary, teacher_other_normalization, teacher_train_mode, temperature_zero, untrained_teacher,
)
from harness.faults.model import (
    blank_plateau, dead_branch, decoder_blank_mismatch, double_normalization, lengths_not_strided, log_softmax_over_time,
    lr_100x, lstm_not_packed, masking_disabled, raw_logits, zero_infinity,
)

CATALOGUE: tuple[Fault, ...] = (
    Fault(
        "double_normalization",
        "The incident's write-up: the dataset applies its global z-score, then the training loop z-scores each padded "
        "sample again over (time, features) (seed 000_f506711c01669819). A second affine map per sample; it is not what "
        "produces NaN (see tests/test_incident.py), but the input is no longer what the statistics describe.",
        ("normalization",), double_normalization,
        cause={"normalization": ("normalized twice", "per-sample z-score")},
    ),
    Fault(
        "zscore_without_floor",
        "Per-sample z-score with no std floor while a hand is never detected in some samples and zero-filled: its "
        "channels are constant 0 there and (0 - 0) / 0 = NaN.",
        ("normalization", "forward"), zscore_no_floor,
        cause={"normalization": ("divides by ~0", "std floor is 0", "nan")}, samples="any", modality="left_hand",
        feature_prefix="left_hand[",
    ),
    Fault(
        "nan_reaches_model",
        "Imputation skipped: MediaPipe's NaN for undetected landmarks flows into the statistics and the model.",
        ("normalization", "forward"), no_imputation,
        cause={"normalization": ("nan", "imputation"), "forward": ("input already holds nan",)},
    ),
    Fault(
        "inf_in_file", "One feature file holds an Inf (a corrupt extraction).",
        ("clean_features",), inf_in_file, cause={"clean_features": ("inf values",)}, samples="all",
    ),
    Fault(
        "pixel_coordinates", "Two files store x/y in pixels of a 1280x720 frame instead of 0..1.",
        ("clean_features",), pixel_coordinates, cause={"clean_features": ("pixel coordinates",)}, samples="all",
    ),
    Fault(
        "z_in_other_units",
        "Three files store z in other units (x250, as pose-format files written pre-normalised do): x/y look fine, the "
        "normalized input then sits at the clip bound.",
        ("clean_features",), z_in_other_units, cause={"clean_features": ("z far outside", "other units")}, samples="all",
        feature_prefix="",
    ),
    Fault(
        "ctc_infeasible",
        "Three sequences are too short for their gloss sequence after the 4x temporal stride: CTC loss +inf. "
        "Reported e.g. in github.com/thu-spmi/CAT/issues/22 (input lengths after downsampling shorter than labels).",
        ("ctc_feasibility",), ctc_infeasible, cause={"ctc_feasibility": ("too short", "stride")}, samples="all",
    ),
    Fault(
        "empty_glosses", "A train row with an empty gloss sequence.",
        ("labels",), empty_glosses, cause={"labels": ("empty gloss sequence",)}, samples="all",
    ),
    Fault(
        "gloss_not_in_vocabulary", "A stale vocabulary lacks a gloss that train samples use.",
        ("labels",), gloss_not_in_vocabulary, cause={"labels": ("missing from the vocabulary",)}, samples="all",
    ),
    Fault(
        "blank_in_targets",
        "Vocabulary off by one: the first gloss gets id 0, the CTC blank, so targets contain the blank "
        "(cf. github.com/marcpaga/basecalling_architectures/issues/10, targets shifted onto the blank id).",
        ("labels",), blank_in_targets, cause={"labels": ("blank id 0", "off by one")}, samples="all",
    ),
    Fault(
        "raw_logits",
        "The head's raw logits go to CTC instead of log-probabilities "
        "(github.com/gwx314/STARS/issues/9, github.com/jeremyfix/deeplearning-lectures/issues/22).",
        ("forward", "loss_at_init"), raw_logits, cause={"forward": ("not log-probabilities", "raw logits")},
    ),
    Fault(
        "lengths_not_strided",
        "The model reports its input lengths as output lengths (not divided by the temporal stride) "
        "(cf. github.com/nl8590687/ASRT_SpeechRecognition/issues/173 on input_length / downsampling).",
        ("forward",), lengths_not_strided, cause={"forward": ("temporal stride",)},
    ),
    Fault(
        "padding_leak",
        "Masking disabled (model.masking.pad_mask all true in the models): padded frames feed the convolutions, so a sample's "
        "output depends on what it is batched with (cf. github.com/castorini/castor/issues/176).",
        ("padding", "batch_size"), masking_disabled,
        cause={"padding": ("mixes padded frames into valid ones", "born in", "conv"), "batch_size": ("padding leaks",)},
    ),
    Fault(
        "lr_100x",
        "Learning rate 100x too large (0.1 for AdamW); CTC then goes NaN or collapses to blanks later in training "
        "(github.com/Sierkinhane/CRNN_Chinese_Characters_Rec/issues/59: NaN until the rate was lowered).",
        ("smoke",), lr_100x, cause={"smoke": ("learning rate", "too high")},
    ),
    Fault(
        "dead_branch",
        "The 'hands' projection is detached in the fusion: that branch never learns and the model ignores the hands.",
        ("modalities",), dead_branch,
        cause={"modalities": ("ignores 'hands'",)}, modality="hands",
    ),
    Fault(
        "frozen_model", "Learning rate 0: the optimizer steps but nothing changes.",
        ("smoke",), configured(lr=0.0), cause={"smoke": ("frozen",)},
    ),
    Fault(
        "decoder_blank_mismatch",
        "The decoder uses a different blank index than the loss (blank-last convention, ids shifted): loss falls, "
        "WER stays ~100% (github.com/githubharald/CTCDecoder/issues/19, github.com/tensorflow/tensorflow/issues/42488).",
        ("overfit",), decoder_blank_mismatch, cause={"overfit": ("decoder", "blank")},
        thresholds={"overfit_steps": 100},
    ),
    Fault(
        "train_test_duplicate", "The same recording is in train and in test (under another id).",
        ("labels",), train_test_duplicate, cause={"labels": ("two splits",)}, samples="all",
    ),
    # from issue trackers
    Fault(
        "zero_infinity_hides_infeasible",
        "zero_infinity=True in the CTC loss to 'ignore NaN or inf' (github.com/wenet-e2e/wenet/pull/2299): infeasible "
        "samples then give loss 0 and no gradient, silently. Training looks healthy; the data is still broken.",
        ("ctc_feasibility", "loss_at_init"), zero_infinity,
        cause={"ctc_feasibility": ("too short",), "loss_at_init": ("exactly 0", "zero_infinity")}, samples="all",
    ),
    Fault(
        "lstm_not_packed",
        "The BiLSTM runs on the padded tensor instead of a packed sequence: its backward direction starts in the "
        "padding (github.com/pytorch/pytorch/issues/1811, github.com/pytorch/pytorch/issues/3662).",
        ("padding", "batch_size"), lstm_not_packed, cause={"padding": ("born in 'lstm' (LSTM)",), "batch_size": ("padding leaks",)},
    ),
    Fault(
        "log_softmax_over_time",
        "log_softmax over the wrong axis (time instead of the vocabulary) - the classic dim bug "
        "(github.com/fxia22/pointnet.pytorch/issues/27, github.com/MicrosoftDocs/pytorchfundamentals/pull/21).",
        ("forward",), log_softmax_over_time, cause={"forward": ("time axis",)},
    ),
    Fault(
        "blank_plateau",
        "The loop's padding mask the wrong way round (t >= length keeps the padding and zeroes every valid frame): the "
        "model sees no signal, learns the blank and the label prior, and CTC sits on its all-blank plateau "
        "(this pipeline sat there itself before the conv-norm fix: dev WER 87-100% at every learning rate).",
        ("normalization", "model_input", "overfit"), blank_plateau,
        cause={"normalization": ("no signal",), "model_input": ("no signal",), "overfit": ("all-blank plateau",)},
    ),
)
# distillation (harness/checks/py): the small student distils from a small competent
# teacher trained once on the small demo corpus (harness.faults.demo_teacher, cached under .cache/)
CATALOGUE += (
    Fault(
        "teacher_vocabulary_shuffled",
        "The teacher's vocabulary holds the same glosses in another order (built in order of first appearance, or from "
        "another corpus version): a coherent teacher, but its id k is another gloss than the student's id k, so the KL "
        "teaches the student to say the wrong glosses.",
        ("teacher",), shuffled_teacher_vocabulary, cause={"teacher": ("vocabulary order differs", "other ids")},
    ),
    Fault(
        "teacher_in_train_mode",
        "The teacher is left in train mode (held inside the trained module, model.train() switches it back every "
        "step): its dropout makes the distillation targets noise and its batch norms drift on the student's batches.",
        ("teacher_frozen",), teacher_train_mode, cause={"teacher_frozen": ("train mode", "dropout")},
    ),
    Fault(
        "teacher_other_normalization",
        "The student trains on global z-scores while the teacher was trained on body normalization: the same frame "
        "reaches the two models as different numbers, and the teacher's posteriors on the student's input are wrong.",
        ("teacher",), teacher_other_normalization, cause={"teacher": ("normalization", "'body'", "'global'")},
    ),
    Fault(
        "distill_temperature_zero",
        "distill_temperature = 0 (meant as 'no temperature'): softmax(log_probs / 0) is NaN, so every distillation "
        "step is non-finite.",
        ("distill_loss", "smoke"), temperature_zero,
        cause={"distill_loss": ("temperature of 0", "divides by zero"), "smoke": ("non-finite",)},
    ),
    Fault(
        "untrained_teacher",
        "The teacher checkpoint holds initial weights (saved before training, or a run that never left the blank "
        "plateau): vocabulary and pipeline match, but it knows nothing, and the student would learn to say nothing.",
        ("teacher_competence",), untrained_teacher, cause={"teacher_competence": ("not competent",)},
    ),
)
HEALTHY = Fault("healthy", "no fault: the pipeline as configured", (), lambda setup: contextlib.nullcontext(setup))
