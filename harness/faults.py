"""Fault catalogue: ways a CSLR training pipeline breaks, each injected into a healthy setup,
and the harness check that must catch it.

    python -m harness.faults [--quick] [--json PATH] [--only NAME ...]

A Fault's `inject(setup)` is a context manager. Given a healthy Setup (a private copy of a corpus
plus the TrainConfig that points at it) it transforms corpus files, changes the configuration or
patches a component (unittest.mock.patch) and yields the broken Setup; leaving the context undoes
every patch. `run_fault` then runs the checks exactly as tests/compat/test_compat.py calls them,
and `detection_table` tabulates which check caught which fault, and how fast.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

from data.corpus import SampleRecord, atomic_save_npy, atomic_write_text, read_manifest, write_manifest
from data.dataset import Vocabulary
from data.layout import COORDS, LAYOUT
from data.normalize import Normalizer
from harness import distill_checks as distill
from harness import suite
from harness.causes import link_causes
from harness.context import HarnessContext
from harness.findings import FAIL, PASS, SKIP, WARN, Finding
from harness.suite import check_name, crashed
from model.config import TrainConfig
from model.decode import Hypothesis, greedy_decode
from model.i3d import I3DTeacher, ModalityFusion

REPO = Path(__file__).resolve().parents[1]
KAGGLE_DIR = REPO / ".." / "shared" / "data" / "kaggle_asl_signs"
# A model small enough that every fault reaches its verdict in seconds on one CPU thread.
SMALL_MODEL = {"modality_dim": 32, "fusion_dim": 64, "conv_dim": 64, "lstm_hidden": 32, "stage_blocks": [1, 1]}


@dataclass
class Setup:
    corpus: Path  # a private copy the fault may rewrite
    cfg: TrainConfig  # its data_dir is `corpus`
    touched: list = field(default_factory=list)  # ids of the samples the fault altered (for assertions)


@dataclass(frozen=True)
class Fault:
    name: str
    description: str  # what breaks, how it shows in training, and the source where one exists
    expected_checks: tuple  # check names (CHECKS keys) that must FAIL
    inject: Callable[[Setup], ContextManager[Setup]]
    cause: dict = field(default_factory=dict)  # check -> words its failing message must contain
    samples: str = ""  # "all": every touched id named in the expected finding; "any": at least one
    modality: str = ""  # offending modality/part the expected finding must name, if any
    feature_prefix: str = ""  # some named feature must start with this, if set
    thresholds: dict = field(default_factory=dict)  # overrides that only make the run faster


# ----------------------------------------------------------------------------- the checks

# The table the pytest tests and the gate run (harness/suite.py), by name.
CHECKS = tuple(c.name for c in suite.CHECKS)
# Everything but the overfit run (seconds to minutes); the table runs that one only where expected.
CHEAP_CHECKS = suite.CHEAP


def run_check(name: str, ctx: HarnessContext) -> Finding:
    """One check of the table with the parameter the gate checks last for this configuration
    (its normalization method, batch size 4); never an exception (harness.suite.run_check)."""
    check = suite.BY_NAME[name]
    return suite.run_check(check, ctx, check.expand(ctx.cfg, configured_only=True)[-1])


# ----------------------------------------------------------------------------- injection helpers


def _records(setup: Setup) -> list[SampleRecord]:
    return read_manifest(setup.corpus, validate=False)


def _train(setup: Setup, every: int = 1, limit: int | None = None) -> list[SampleRecord]:
    """Every `every`-th train record (manifest order), at most `limit`: deterministic picks."""
    picked = [r for r in _records(setup) if r.split == "train"][::every]
    return picked[:limit] if limit else picked


def _rewrite(setup: Setup, records, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    """Replace each record's feature file by fn(array) ([T, 1629] float32 in, any array out)."""
    for rec in records:
        path = setup.corpus / rec.path
        atomic_save_npy(path, fn(np.load(path).astype(np.float32)))
        setup.touched.append(rec.id)


@contextlib.contextmanager
def _patched(setup: Setup, *patchers):
    with contextlib.ExitStack() as stack:
        for p in patchers:
            stack.enter_context(p)
        yield setup


def _configured(**changes):
    """inject: a configuration change only."""

    @contextlib.contextmanager
    def inject(setup: Setup):
        yield dataclasses.replace(setup, cfg=setup.cfg.replace(**changes))

    return inject


def per_sample_zscore(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The incident's training-loop step, as a batch_transform: per sample one mean and std over
    (time, features) of the zero-padded batch, x <- (x - mean) / (std + 1e-6). [B, T, F] float32."""
    return (features - features.mean(dim=(1, 2), keepdim=True)) / (features.std(dim=(1, 2), keepdim=True) + 1e-6)


# the incident's second normalization, configured as the user's loop would have it
LOOP_ZSCORE = "harness.faults:per_sample_zscore"


def inverted_padding_mask(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A loop step meant to zero the padded frames, with the comparison the wrong way round:
    it zeroes every valid frame and keeps the (zero) padding. [B, T, F] -> [B, T, F]."""
    keep = torch.arange(features.shape[1], device=features.device)[None, :] >= lengths[:, None]
    return features * keep.unsqueeze(-1)


def without_std_floor():
    """Patch Normalizer so its std floor is 0 (the constructor refuses 0, so set it afterwards):
    a z-score divides by the raw std, as the incident's dataset did."""
    original = Normalizer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.std_floor = 0.0

    return mock.patch.object(Normalizer, "__init__", init)


def hide_hand(setup: Setup, records, hand: str = "left_hand") -> None:
    """The hand is never detected in these samples: all its landmarks NaN in every frame."""

    def fn(a):
        a[:, LAYOUT[hand]] = np.nan
        return a

    _rewrite(setup, records, fn)


# ----------------------------------------------------------------------------- the faults


@contextlib.contextmanager
def _inverted_padding_mask(setup):
    yield dataclasses.replace(setup, cfg=setup.cfg.replace(batch_transform="harness.faults:inverted_padding_mask"))


@contextlib.contextmanager
def _double_normalization(setup):
    yield dataclasses.replace(setup, cfg=setup.cfg.replace(batch_transform=LOOP_ZSCORE))


@contextlib.contextmanager
def _zscore_no_floor(setup):
    hide_hand(setup, _train(setup, every=3))
    cfg = setup.cfg.replace(normalize="per_sample", impute="zero")
    with _patched(dataclasses.replace(setup, cfg=cfg), without_std_floor()) as s:
        yield s


@contextlib.contextmanager
def _no_imputation(setup):
    def impute(raw, method="ffill"):
        return np.array(raw, dtype=np.float32, copy=True)  # NaN stays NaN

    with _patched(setup, mock.patch("data.dataset.impute", impute)):
        yield setup


@contextlib.contextmanager
def _inf_in_file(setup):
    def fn(a):
        a[len(a) // 2, 0] = np.inf  # one pose x value of one frame
        return a

    _rewrite(setup, _train(setup, limit=1), fn)
    yield setup


@contextlib.contextmanager
def _pixel_coordinates(setup):
    def fn(a):
        pts = a.reshape(len(a), -1, COORDS)
        pts[:, :, 0] *= 1280  # x, y in pixels of a 1280x720 frame; NaN stays NaN
        pts[:, :, 1] *= 720
        return a

    _rewrite(setup, _train(setup, every=5, limit=2), fn)
    yield setup


def _truncate(setup, n_frames: int = 4, limit: int = 3) -> None:
    # 4 frames -> ceil(4 / 4) = 1 output frame, fewer than any demo sentence's >= 2 glosses
    _rewrite(setup, _train(setup, every=4, limit=limit), lambda a: a[:n_frames])


@contextlib.contextmanager
def _z_in_other_units(setup):
    def fn(a):
        a.reshape(len(a), -1, COORDS)[:, :, 2] *= 250  # z scaled like pixels; NaN stays NaN
        return a

    _rewrite(setup, _train(setup, every=4, limit=3), fn)
    yield setup


@contextlib.contextmanager
def _ctc_infeasible(setup):
    _truncate(setup)
    yield setup


@contextlib.contextmanager
def _empty_glosses(setup):
    records = _records(setup)
    victim = next(r for r in records if r.split == "train")
    write_manifest(setup.corpus, [dataclasses.replace(r, glosses=()) if r is victim else r for r in records])
    setup.touched.append(victim.id)
    yield setup


def _vocabulary_patch(setup, make: Callable[[Vocabulary], Vocabulary], touched_gloss: Callable[[Vocabulary], str]):
    """Patch Vocabulary.from_records to return make(correct vocabulary); record the train
    samples that use the gloss the fault affects."""
    original = Vocabulary.from_records
    correct = original(_records(setup))
    gloss = touched_gloss(correct)
    setup.touched += [r.id for r in _train(setup) if gloss in r.glosses]
    return mock.patch.object(Vocabulary, "from_records", classmethod(lambda cls, records: make(original(records))))


@contextlib.contextmanager
def _gloss_not_in_vocabulary(setup):
    # a stale vocabulary file from an older corpus version: the newest gloss is missing
    patch = _vocabulary_patch(setup, lambda v: Vocabulary(v.to_list()[:-1]), lambda v: v.to_list()[-1])
    with _patched(setup, patch):
        yield setup


class NoBlankVocabulary(Vocabulary):
    """Off by one: glosses numbered from 0, so the first gloss gets the CTC blank's id."""

    def __init__(self, glosses):
        self.itos = list(glosses)
        self.stoi = {g: i for i, g in enumerate(self.itos)}


@contextlib.contextmanager
def _blank_in_targets(setup):
    patch = _vocabulary_patch(setup, lambda v: NoBlankVocabulary(v.to_list()), lambda v: v.to_list()[0])
    with _patched(setup, patch):
        yield setup


def _forward_returning(head: Callable):
    """Patch I3DTeacher.forward: head(model, logits, out_lengths, input lengths) -> outputs."""

    def forward(self, x, lengths):
        feats, out_lengths = self.forward_features(x, lengths)
        return head(self, self.forward_head(feats), out_lengths, lengths)

    return mock.patch.object(I3DTeacher, "forward", forward)


@contextlib.contextmanager
def _raw_logits(setup):
    with _patched(setup, _forward_returning(lambda m, logits, out, inp: (logits, out))):
        yield setup


@contextlib.contextmanager
def _lengths_not_strided(setup):
    with _patched(setup, _forward_returning(lambda m, logits, out, inp: (F.log_softmax(logits, -1), inp.long()))):
        yield setup


@contextlib.contextmanager
def _log_softmax_over_time(setup):
    with _patched(setup, _forward_returning(lambda m, logits, out, inp: (F.log_softmax(logits, dim=1), out))):
        yield setup


@contextlib.contextmanager
def _masking_disabled(setup):
    def length_mask(lengths, steps):
        return torch.ones(len(lengths), 1, steps, dtype=torch.bool, device=lengths.device)  # every frame "valid"

    with _patched(setup, mock.patch("model.i3d.length_mask", length_mask)):
        yield setup


@contextlib.contextmanager
def _lstm_not_packed(setup):
    # the BiLSTM runs over the zero-padded tensor: its backward direction starts in the padding
    pack = mock.patch("model.i3d.pack_padded_sequence", lambda h, lengths, batch_first, enforce_sorted: h)
    unpack = mock.patch("model.i3d.pad_packed_sequence", lambda out, batch_first, total_length: (out, None))
    with _patched(setup, pack, unpack):
        yield setup


@contextlib.contextmanager
def _dead_branch(setup, modality: str = "hands"):
    def forward(self, x):
        parts = [self.proj[name](x[..., sl]) for name, sl in self.slices.items()]
        parts = [p.detach() if name == modality else p for name, p in zip(self.slices, parts)]
        return self.mix(torch.cat(parts, dim=-1))

    with _patched(setup, mock.patch.object(ModalityFusion, "forward", forward)):
        yield setup


@contextlib.contextmanager
def _lr_100x(setup):
    yield dataclasses.replace(setup, cfg=setup.cfg.replace(lr=setup.cfg.lr * 100))


def blank_last_decode(log_probs, out_lengths, beam_width: int = 1) -> list[Hypothesis]:
    """A decoder written for a blank-last model (blank = V-1, gloss k at id k-1), mapping its ids
    back with +1: the true blank 0 becomes gloss 1 and every gloss id shifts by one."""
    vocab = log_probs.shape[-1]
    out = []
    for h in greedy_decode(log_probs, out_lengths, blank=vocab - 1):
        out.append(Hypothesis([t + 1 for t in h.tokens], h.score, h.timesteps))
    return out


@contextlib.contextmanager
def _decoder_blank_mismatch(setup):
    with _patched(setup, mock.patch("model.training.decode", blank_last_decode)):
        yield setup


@contextlib.contextmanager
def _train_test_duplicate(setup):
    records = _records(setup)
    source = next(r for r in records if r.split == "train")
    copy = SampleRecord(f"{source.id}-copy", "test", source.glosses, "features/leaked-copy.npy", signer=source.signer, fps=source.fps)
    shutil.copyfile(setup.corpus / source.path, setup.corpus / copy.path)
    write_manifest(setup.corpus, records + [copy])
    setup.touched += [source.id, copy.id]
    yield setup


@contextlib.contextmanager
def _zero_infinity(setup):
    _truncate(setup)
    import model.ctc as ctc

    original = ctc.ctc_loss

    def ctc_loss(log_probs, out_lengths, targets, target_lengths, blank=0, reduction="mean", zero_infinity=False):
        return original(log_probs, out_lengths, targets, target_lengths, blank, reduction, zero_infinity=True)

    with _patched(setup, mock.patch("model.ctc.ctc_loss", ctc_loss)):
        yield setup


CATALOGUE: tuple[Fault, ...] = (
    Fault(
        "double_normalization",
        "The incident's write-up: the dataset applies its global z-score, then the training loop z-scores each padded "
        "sample again over (time, features) (seed 000_f506711c01669819). A second affine map per sample; it is not what "
        "produces NaN (see tests/test_incident.py), but the input is no longer what the statistics describe.",
        ("normalization",), _double_normalization,
        cause={"normalization": ("normalized twice", "per-sample z-score")},
    ),
    Fault(
        "zscore_without_floor",
        "Per-sample z-score with no std floor while a hand is never detected in some samples and zero-filled: its "
        "channels are constant 0 there and (0 - 0) / 0 = NaN.",
        ("normalization", "forward"), _zscore_no_floor,
        cause={"normalization": ("divides by ~0", "std floor is 0", "nan")}, samples="any", modality="left_hand",
        feature_prefix="left_hand[",
    ),
    Fault(
        "nan_reaches_model",
        "Imputation skipped: MediaPipe's NaN for undetected landmarks flows into the statistics and the model.",
        ("normalization", "forward"), _no_imputation,
        cause={"normalization": ("nan", "imputation"), "forward": ("input already holds nan",)},
    ),
    Fault(
        "inf_in_file", "One feature file holds an Inf (a corrupt extraction).",
        ("clean_features",), _inf_in_file, cause={"clean_features": ("inf values",)}, samples="all",
    ),
    Fault(
        "pixel_coordinates", "Two files store x/y in pixels of a 1280x720 frame instead of 0..1.",
        ("clean_features",), _pixel_coordinates, cause={"clean_features": ("pixel coordinates",)}, samples="all",
    ),
    Fault(
        "z_in_other_units",
        "Three files store z in other units (x250, as pose-format files written pre-normalised do): x/y look fine, the "
        "normalized input then sits at the clip bound.",
        ("clean_features",), _z_in_other_units, cause={"clean_features": ("z far outside", "other units")}, samples="all",
        feature_prefix="",
    ),
    Fault(
        "ctc_infeasible",
        "Three sequences are too short for their gloss sequence after the 4x temporal stride: CTC loss +inf. "
        "Reported e.g. in github.com/thu-spmi/CAT/issues/22 (input lengths after downsampling shorter than labels).",
        ("ctc_feasibility",), _ctc_infeasible, cause={"ctc_feasibility": ("too short", "stride")}, samples="all",
    ),
    Fault(
        "empty_glosses", "A train row with an empty gloss sequence.",
        ("labels",), _empty_glosses, cause={"labels": ("empty gloss sequence",)}, samples="all",
    ),
    Fault(
        "gloss_not_in_vocabulary", "A stale vocabulary lacks a gloss that train samples use.",
        ("labels",), _gloss_not_in_vocabulary, cause={"labels": ("missing from the vocabulary",)}, samples="all",
    ),
    Fault(
        "blank_in_targets",
        "Vocabulary off by one: the first gloss gets id 0, the CTC blank, so targets contain the blank "
        "(cf. github.com/marcpaga/basecalling_architectures/issues/10, targets shifted onto the blank id).",
        ("labels",), _blank_in_targets, cause={"labels": ("blank id 0", "off by one")}, samples="all",
    ),
    Fault(
        "raw_logits",
        "The head's raw logits go to CTC instead of log-probabilities "
        "(github.com/gwx314/STARS/issues/9, github.com/jeremyfix/deeplearning-lectures/issues/22).",
        ("forward", "loss_at_init"), _raw_logits, cause={"forward": ("not log-probabilities", "raw logits")},
    ),
    Fault(
        "lengths_not_strided",
        "The model reports its input lengths as output lengths (not divided by the temporal stride) "
        "(cf. github.com/nl8590687/ASRT_SpeechRecognition/issues/173 on input_length / downsampling).",
        ("forward",), _lengths_not_strided, cause={"forward": ("temporal stride",)},
    ),
    Fault(
        "padding_leak",
        "Masking disabled (model.i3d.length_mask all true): padded frames feed the convolutions, so a sample's "
        "output depends on what it is batched with (cf. github.com/castorini/castor/issues/176).",
        ("batch_size", "gradients"), _masking_disabled,
        cause={"batch_size": ("padding leaks",), "gradients": ("padded frames receive gradient",)},
    ),
    Fault(
        "lr_100x",
        "Learning rate 100x too large (0.1 for AdamW); CTC then goes NaN or collapses to blanks later in training "
        "(github.com/Sierkinhane/CRNN_Chinese_Characters_Rec/issues/59: NaN until the rate was lowered).",
        ("smoke",), _lr_100x, cause={"smoke": ("learning rate", "too high")},
    ),
    Fault(
        "dead_branch",
        "The 'hands' projection is detached in the fusion: that branch never learns and the model ignores the hands.",
        ("gradients", "modalities"), _dead_branch,
        cause={"gradients": ("dead branch", "fusion.proj.hands"), "modalities": ("ignores 'hands'",)}, modality="hands",
    ),
    Fault(
        "frozen_model", "Learning rate 0: the optimizer steps but nothing changes.",
        ("smoke",), _configured(lr=0.0), cause={"smoke": ("frozen",)},
    ),
    Fault(
        "decoder_blank_mismatch",
        "The decoder uses a different blank index than the loss (blank-last convention, ids shifted): loss falls, "
        "WER stays ~100% (github.com/githubharald/CTCDecoder/issues/19, github.com/tensorflow/tensorflow/issues/42488).",
        ("overfit",), _decoder_blank_mismatch, cause={"overfit": ("decoder", "blank")},
        thresholds={"overfit_steps": 100},
    ),
    Fault(
        "train_test_duplicate", "The same recording is in train and in test (under another id).",
        ("labels",), _train_test_duplicate, cause={"labels": ("two splits",)}, samples="all",
    ),
    # from issue trackers
    Fault(
        "zero_infinity_hides_infeasible",
        "zero_infinity=True in the CTC loss to 'ignore NaN or inf' (github.com/wenet-e2e/wenet/pull/2299): infeasible "
        "samples then give loss 0 and no gradient, silently. Training looks healthy; the data is still broken.",
        ("ctc_feasibility", "loss_at_init"), _zero_infinity,
        cause={"ctc_feasibility": ("too short",), "loss_at_init": ("exactly 0", "zero_infinity")}, samples="all",
    ),
    Fault(
        "lstm_not_packed",
        "The BiLSTM runs on the padded tensor instead of a packed sequence: its backward direction starts in the "
        "padding (github.com/pytorch/pytorch/issues/1811, github.com/pytorch/pytorch/issues/3662).",
        ("batch_size",), _lstm_not_packed, cause={"batch_size": ("padding leaks",)},
    ),
    Fault(
        "log_softmax_over_time",
        "log_softmax over the wrong axis (time instead of the vocabulary) - the classic dim bug "
        "(github.com/fxia22/pointnet.pytorch/issues/27, github.com/MicrosoftDocs/pytorchfundamentals/pull/21).",
        ("forward",), _log_softmax_over_time, cause={"forward": ("time axis",)},
    ),
    Fault(
        "blank_plateau",
        "The loop's padding mask the wrong way round (t >= length keeps the padding and zeroes every valid frame): the "
        "model sees no signal, learns the blank and the label prior, and CTC sits on its all-blank plateau "
        "(this pipeline sat there itself before the conv-norm fix: dev WER 87-100% at every learning rate).",
        ("normalization", "model_input", "overfit"), _inverted_padding_mask,
        cause={"normalization": ("no signal",), "model_input": ("no signal",), "overfit": ("all-blank plateau",)},
    ),
)
# distillation (harness/distill_checks.py): the small student distils from a small competent I3D
# teacher trained once on the small demo corpus (distill_checks.demo_teacher, cached under .cache/)
CATALOGUE += (
    Fault(
        "teacher_vocabulary_shuffled",
        "The teacher's vocabulary holds the same glosses in another order (built in order of first appearance, or from "
        "another corpus version): a coherent teacher, but its id k is another gloss than the student's id k, so the KL "
        "teaches the student to say the wrong glosses.",
        ("teacher",), distill.shuffled_teacher_vocabulary, cause={"teacher": ("vocabulary order differs", "other ids")},
    ),
    Fault(
        "teacher_in_train_mode",
        "The teacher is left in train mode (held inside the trained module, model.train() switches it back every "
        "step): its dropout makes the distillation targets noise and its batch norms drift on the student's batches.",
        ("teacher_frozen",), distill.teacher_train_mode, cause={"teacher_frozen": ("train mode", "dropout")},
    ),
    Fault(
        "teacher_other_normalization",
        "The student trains on global z-scores while the teacher was trained on body normalization: the same frame "
        "reaches the two models as different numbers, and the teacher's posteriors on the student's input are wrong.",
        ("teacher",), distill.teacher_other_normalization, cause={"teacher": ("normalization", "'body'", "'global'")},
    ),
    Fault(
        "distill_temperature_zero",
        "distill_temperature = 0 (meant as 'no temperature'): softmax(log_probs / 0) is NaN, so every distillation "
        "step is non-finite.",
        ("distill_loss", "smoke"), distill.temperature_zero,
        cause={"distill_loss": ("temperature of 0", "divides by zero"), "smoke": ("non-finite",)},
    ),
    Fault(
        "untrained_teacher",
        "The teacher checkpoint holds initial weights (saved before training, or a run that never left the blank "
        "plateau): vocabulary and pipeline match, but it knows nothing, and the student would learn to say nothing.",
        ("teacher_competence",), distill.untrained_teacher, cause={"teacher_competence": ("not competent",)},
    ),
)
HEALTHY = Fault("healthy", "no fault: the pipeline as configured", (), lambda setup: contextlib.nullcontext(setup))


# ----------------------------------------------------------------------------- running


@dataclass
class FaultRun:
    fault: Fault
    findings: list  # Finding, one per check run
    touched: list  # ids of the samples the fault altered
    seconds: float  # injection + all checks (time to verdict)

    def finding(self, name: str) -> Finding | None:
        return next((f for f in self.findings if check_name(f) == name), None)

    def caught_by(self, name: str) -> bool:
        f = self.finding(name)
        return f is not None and f.status == FAIL and not crashed(f)

    @property
    def caught(self) -> bool:
        return all(self.caught_by(name) for name in self.fault.expected_checks)

    @property
    def false_alarms(self) -> list:
        """For the healthy setup: every failing finding."""
        return [f for f in self.findings if f.status == FAIL]


def inject_and_run(fault: Fault, base_corpus, base_cfg: TrainConfig, checks=None, workdir=None) -> FaultRun:
    """Copy base_corpus, inject the fault, run `checks` (default: the fault's expected checks)."""
    start = time.perf_counter()
    checks = tuple(checks or fault.expected_checks)
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; known: {list(CHECKS)}")
    with tempfile.TemporaryDirectory(prefix=f"fault-{fault.name}-", dir=workdir) as tmp:
        corpus = Path(tmp) / "corpus"
        shutil.copytree(base_corpus, corpus)
        cfg = base_cfg.replace(data_dir=str(corpus), device="cpu", thresholds={**base_cfg.thresholds, **fault.thresholds})
        setup = Setup(corpus, cfg)
        # injected faults divide by zero on purpose; numpy's warnings would only repeat the findings
        with fault.inject(setup) as broken, np.errstate(divide="ignore", invalid="ignore"):
            ctx = HarnessContext(broken.cfg, "cpu")
            findings = link_causes([run_check(name, ctx) for name in checks])
            touched = list(broken.touched)
    return FaultRun(fault, findings, touched, time.perf_counter() - start)


def run_fault(fault: Fault, base_corpus, base_cfg: TrainConfig, checks=None) -> list[Finding]:
    """The findings of `checks` (default: the fault's expected ones) on the broken setup."""
    return inject_and_run(fault, base_corpus, base_cfg, checks).findings


def table_checks(fault: Fault, quick: bool) -> tuple:
    """Quick: the expected checks only. Full: every cheap check, plus overfit where expected."""
    if quick:
        return fault.expected_checks
    return CHEAP_CHECKS + tuple(c for c in fault.expected_checks if c not in CHEAP_CHECKS)


def detection_table(faults=CATALOGUE, base_corpus=None, base_cfg: TrainConfig | None = None, quick: bool = False, progress=None) -> list[dict]:
    """One row a fault: {fault, expected, verdict (caught/missed), statuses {check: pass/warn/fail/error}, seconds, cause}."""
    base_corpus = base_corpus or small_demo_corpus()
    base_cfg = base_cfg or default_base_config()
    rows = []
    for fault in faults:
        run = inject_and_run(fault, base_corpus, base_cfg, table_checks(fault, quick))
        statuses = {check_name(f): ("error" if crashed(f) else f.status) for f in run.findings}
        expected = [run.finding(c) for c in fault.expected_checks]
        rows.append({
            "fault": fault.name,
            "expected": list(fault.expected_checks),
            "verdict": "caught" if run.caught else "missed",
            "statuses": statuses,
            "seconds": round(run.seconds, 2),
            "cause": " | ".join(f.summary for f in expected if f is not None and f.status == FAIL),
        })
        if progress:
            progress(rows[-1])
    return rows


def healthy_run(base_corpus, base_cfg: TrainConfig, checks=tuple(CHECKS)) -> FaultRun:
    """Every check (overfit included) on the unmodified setup: any FAIL is a false alarm."""
    return inject_and_run(HEALTHY, base_corpus, base_cfg, checks)


# ----------------------------------------------------------------------------- base setups


def default_base_config(**changes) -> TrainConfig:
    return TrainConfig(model_overrides=dict(SMALL_MODEL), device="cpu", **changes)


def small_demo_corpus(cache_dir=None) -> Path:
    """The small demo corpus (24/6/6 sentences), generated once into the cache."""
    from data.synthetic import SIZES, default_cache_root, generate_corpus

    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    return generate_corpus(root / "faults_demo_small", seed=0, **SIZES["small"])


def kaggle_corpus(out_dir) -> Path | None:
    """The real Kaggle ASL landmarks (../shared/data) converted into out_dir; None if absent."""
    from data.convert import kaggle_to_corpus

    if not (KAGGLE_DIR / "train.csv").is_file():
        return None
    if (Path(out_dir) / "manifest.csv").is_file():
        return Path(out_dir)
    return kaggle_to_corpus(KAGGLE_DIR, out_dir)


# ----------------------------------------------------------------------------- CLI

ABBREV = {"contract": "contr", "model_input": "input", "shift": "shift", "clean_features": "clean", "labels": "label", "ctc_feasibility": "ctc", "normalization": "norm",
          "forward": "fwd", "loss_at_init": "init", "gradients": "grad", "batch_size": "batch",
          "modalities": "modal", "smoke": "smoke", "overfit": "overf"}
ABBREV.update({"teacher": "teach", "teacher_competence": "tcomp", "distill_loss": "kd", "teacher_frozen": "tfroz"})
MARK = {FAIL: "FAIL", WARN: "warn", PASS: "ok", SKIP: "skip", "error": "ERR"}


def format_table(rows: list[dict]) -> str:
    """fault x check: the status of every check run, [brackets] on the expected ones."""
    width = max(len(r["fault"]) for r in rows)
    head = f"{'fault':<{width}}  verdict  {'s':>5}  " + " ".join(f"{ABBREV[c]:>7}" for c in CHECKS)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for c in CHECKS:
            s = r["statuses"].get(c)
            text = "" if s is None else MARK[s]
            cells.append(f"{f'[{text}]' if c in r['expected'] else text:>7}")
        lines.append(f"{r['fault']:<{width}}  {r['verdict']:<7}  {r['seconds']:>5.1f}  " + " ".join(cells))
    return "\n".join(lines)


def _healthy_summary(label: str, run: FaultRun) -> dict:
    return {
        "corpus": label,
        "false_alarms": len(run.false_alarms),
        "failed": [f.message() for f in run.false_alarms],
        "warned": [f"{f.check}: {f.summary}" for f in run.findings if f.status == WARN],
        "seconds": round(run.seconds, 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.faults", description="Inject every catalogued fault and print which check catches it.")
    ap.add_argument("--quick", action="store_true", help="run only each fault's expected checks (no cross-table)")
    ap.add_argument("--json", type=Path, help="write the table and totals as JSON to this path")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these faults")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: tiny models, shared cores)")
    ap.add_argument("--no-healthy", action="store_true", help="skip the false-alarm runs on healthy corpora")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    faults = CATALOGUE
    if args.only:
        names = {f.name for f in CATALOGUE}
        unknown = sorted(set(args.only) - names)
        if unknown:
            print(f"error: unknown fault(s) {unknown}; known: {sorted(names)}", file=sys.stderr)
            return 2
        faults = tuple(f for f in CATALOGUE if f.name in args.only)
    start = time.perf_counter()
    base, cfg = small_demo_corpus(), default_base_config()
    mode = "expected checks only" if args.quick else "all cheap checks + overfit where expected"
    print(f"base setup: {base} (small demo corpus), model {SMALL_MODEL}, {mode}")
    healthy = []
    if not args.no_healthy:  # first, so its one-off warm-up (imports, allocator) is not charged to a fault
        healthy.append(_healthy_summary("demo (small)", healthy_run(base, cfg)))
    rows = detection_table(faults, base, cfg, quick=args.quick,
                           progress=lambda r: print(f"  {r['fault']}: {r['verdict']} ({r['seconds']:.1f} s)", flush=True))
    print()
    print(format_table(rows))
    if not args.no_healthy:
        with tempfile.TemporaryDirectory(prefix="kaggle-corpus-") as tmp:
            kaggle = kaggle_corpus(Path(tmp) / "kaggle")
            if kaggle is not None:
                healthy.append(_healthy_summary("kaggle_asl_signs (real)", healthy_run(kaggle, cfg)))
            else:
                print(f"\n(no real data at {KAGGLE_DIR.resolve()}: Kaggle false-alarm run skipped)")
    caught = sum(r["verdict"] == "caught" for r in rows)
    print(f"\ndetection: {caught}/{len(rows)} faults caught ({caught / len(rows):.0%}); "
          f"time to verdict: max {max(r['seconds'] for r in rows):.1f} s, total {sum(r['seconds'] for r in rows):.1f} s")
    for h in healthy:
        print(f"false alarms on healthy {h['corpus']}: {h['false_alarms']} ({h['seconds']:.1f} s, all {len(CHECKS)} checks)")
        for msg in h["failed"]:
            print("  " + msg.replace("\n", "\n  "))
        for w in h["warned"]:
            print(f"  warn {w}")
    missed = [r["fault"] for r in rows if r["verdict"] == "missed"]
    if missed:
        print(f"MISSED: {missed}")
    print(f"total {time.perf_counter() - start:.1f} s")
    if args.json:
        atomic_write_text(args.json, json.dumps({"rows": rows, "healthy": healthy, "caught": caught, "faults": len(rows)}, indent=1))
    return 0 if not missed and not any(h["false_alarms"] for h in healthy) else 1


if __name__ == "__main__":
    sys.exit(main())
