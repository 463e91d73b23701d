"""The one table of checks: name, how it runs on a HarnessContext, its marker and parameters,
and when it does not apply. The pytest tests (harness/pytest_suite.py), the gate, the fault
catalogue and the benchmark all run checks through `CHECKS` and `run_check`.

    for check, param in expand(cfg):
        finding = run_check(check, ctx, param)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from data.layout import input_dim as layout_input_dim
from data.normalize import METHODS
from harness.context import HarnessContext
from harness.checks.data import check_clean_features, check_ctc_feasibility, check_labels, check_normalization
from harness.checks.distill import check_distill_loss, check_teacher, check_teacher_competence, check_teacher_frozen, no_teacher
from harness.checks.input import check_contract, check_model_input
from harness.checks.model import check_batch_size, check_forward, check_gradients, check_loss_at_init, check_modalities
from harness.checks.padding import check_padding
from harness.checks.shift import check_shift
from harness.checks.step import UserStep, check_train_step, no_train_step
from harness.checks.training import check_overfit, check_smoke
from harness.findings import FAIL, SKIP, Finding
from harness.probes import code_frame, one_line
from model.components import ComponentError, UserModel
from model.config import TrainConfig

BATCH_SIZES = (1, 2, 4)
PADDING_SOURCES = ("batch_transform", "model")  # where a dependence on padding is born
HARNESS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable  # (ctx, param) -> Finding
    marker: str = "compat"  # compat, smoke or overfit
    params: Callable | None = None  # (cfg, configured_only) -> tuple of parameters; None: one run
    skip: Callable | None = None  # ctx -> reason the check does not apply ("" if it does)

    def expand(self, cfg: TrainConfig, configured_only: bool = False) -> tuple:
        return self.params(cfg, configured_only) if self.params else (None,)

    def label(self, param) -> str:
        """The finding's name: 'forward[global]', 'batch_size[4]', 'labels'."""
        return self.name if param is None else f"{self.name}[{param}]"


# ----------------------------------------------------------------------------- parameters, applicability


def _methods(cfg: TrainConfig, configured_only: bool) -> tuple:
    """The project's normalization methods (one for the gate); a user dataset normalizes itself."""
    if cfg.dataset is not None:
        return (None,)
    return (cfg.normalize,) if configured_only else METHODS


def _needs_corpus(ctx: HarnessContext) -> str:
    if ctx.corpus is None:
        return (f"no corpus to scan: the dataset is the user's ({ctx.cfg.dataset}) and data_dir holds no manifest.csv "
                "(the project's corpus format); model_input checks what the dataset yields")
    return ""


def _needs_own_dataset(ctx: HarnessContext) -> str:
    if ctx.external:
        return f"the dataset is the user's ({ctx.cfg.dataset}): its normalization is its own; model_input checks what it yields"
    return ""


def _needs_layout(ctx: HarnessContext) -> str:
    if not ctx.follows_layout:
        return (f"the features ({ctx.input_dim} a frame) do not follow the MediaPipe layout of modalities "
                f"{list(ctx.cfg.modalities)} ({layout_input_dim(ctx.cfg.modalities)} a frame)")
    return ""


# ----------------------------------------------------------------------------- the checks


def _contract(ctx: HarnessContext, _) -> Finding:
    """The components' contracts (check_contract), the declared conventions (the vocabulary,
    collate_fn, train_step: HarnessContext.convention_report) and, for a model seen through
    UserModel, what the adapter assumed (layout, lengths, logits, blank)."""
    if ctx.cfg.vocab is not None or ctx.cfg.blank != 0:
        try:
            ctx.user_vocab
        except ComponentError as exc:  # nothing else can be judged without the ids
            return Finding(check="contract", status=FAIL, summary=str(exc), values={"key": "broken"},
                           hint="name a vocabulary whose ids the items and the model use: vocab = \"vocab.txt\" (one gloss a line), blank = its index")
    notes, problems = ctx.convention_report()
    built = {}

    def build():
        built["model"] = ctx.model()
        return built["model"]

    finding = check_contract(ctx.cfg, build, ctx.scan if ctx.external else None, lambda: ctx.transform)
    model = built.get("model")
    if isinstance(model, UserModel):
        notes.insert(0, f"through model.components.UserModel (module names 'inner.*'): {model.describe()}")
    finding.values["conventions"] = notes
    if problems:
        finding.summary = "; ".join(([finding.summary] if finding.status == FAIL else []) + problems)
        finding.status = FAIL
        finding.values["key"] = "broken"
        finding.hint = finding.hint or "make collate_fn and train_step keep their contracts (model.components.UserCollate, TrainStep)"
    elif finding.status != FAIL and notes:
        finding.summary += "; " + "; ".join(notes)
    return finding


def _train_step(ctx: HarnessContext, _) -> Finding:
    indices = ctx.probe_indices(k_random=8)
    if not indices:
        return Finding(check="train_step", status=SKIP, summary="nothing to run the step on: no train sample could be read (see the contract check)")
    return check_train_step(_user_step(ctx), ctx.model(), indices, ctx.cfg, ctx.thresholds)


def _user_step(ctx: HarnessContext) -> UserStep | None:
    """The configured train_step for the checks that run it (None: this project's step runs)."""
    if ctx.cfg.train_step is None:
        return None
    uv = ctx.user_vocab
    keys = ctx.item_keys if ctx.cfg.collate_fn is not None else None  # without a collate_fn: step_batch's own key names
    return UserStep(ctx.train_step_fn, ctx.cfg.train_step, lambda indices: ctx.step_batch(indices), keys, uv, uv.blank if uv is not None else 0)


def _normalization(ctx: HarnessContext, method) -> Finding:
    return check_normalization(ctx.dataset(method), ctx.probe_indices(method), ctx.to_input, ctx.thresholds, ctx.train_frames)


def _model_input(ctx: HarnessContext, _) -> Finding:
    ds = ctx.dataset()
    samples = [ds[i] for i in ctx.probe_indices()]
    n_train = len(samples)
    # and the extremes of dev and test: statistics from train meet values train never had there
    for split in ("dev", "test"):
        if ctx.split_records(split):
            other = ctx.dataset(split=split)
            samples += [other[i] for i in ctx.probe_indices(split=split, k_random=0)]
    try:
        model = ctx.model()
    except ComponentError:
        model = None  # the contract check reports it; the input can still be judged
    columns = getattr(ds, "columns", None)
    if columns is None and ctx.follows_layout:
        from data.layout import modality_columns

        columns = modality_columns(ctx.layout_modalities)
    inner = getattr(ds, "inner", ds)
    return check_model_input(samples, ctx.to_input, ctx.thresholds, model, inner, columns, ctx.cfg.batch_transform, n_train)


def _batch_size(ctx: HarnessContext, n) -> Finding:
    ds = ctx.dataset()
    return check_batch_size(ctx.model(), [ds[i] for i in ctx.probe_indices()[:n]], ctx.thresholds, ctx.device, ctx.to_input)


def _padding(ctx: HarnessContext, where: str) -> Finding:
    if where == "batch_transform" and not ctx.cfg.batch_transform:
        return Finding(check="padding[batch_transform]", status=SKIP, summary="no batch_transform is configured: the model input is the dataset's output")
    ds = ctx.dataset()
    samples = [ds[i] for i in ctx.probe_indices()]
    return check_padding(ctx.model(), samples, ctx.to_input, ctx.thresholds, where, ctx.cfg.batch_transform)


def _modalities(ctx: HarnessContext, _) -> Finding:
    def single(m):
        return ctx.model(modalities=(m,), input_dim=layout_input_dim((m,)))

    return check_modalities(ctx.model(), ctx.probe_batch(), single, ctx.layout_modalities)


CHECKS: tuple[Check, ...] = (
    Check("contract", _contract),
    Check("clean_features", lambda ctx, _: check_clean_features(ctx.raw_scan, ctx.thresholds), skip=_needs_corpus),
    Check("labels", lambda ctx, _: check_labels(ctx.label_source, ctx.records, ctx.vocab, ctx.scan, ctx.declared_vocab)),
    Check("shift", lambda ctx, _: check_shift(ctx.raw_scan, ctx.thresholds), skip=_needs_corpus),
    Check("ctc_feasibility", lambda ctx, _: check_ctc_feasibility(ctx.scan, ctx.records, ctx.vocab, ctx.model().output_lengths)),
    Check("normalization", _normalization, params=_methods, skip=_needs_own_dataset),
    Check("model_input", _model_input),
    Check("forward", lambda ctx, m: check_forward(ctx.model(), ctx.probe_batch(m), ctx.thresholds, f"[{m}]" if m else ""), params=_methods),
    Check("loss_at_init", lambda ctx, _: check_loss_at_init(ctx.model(), ctx.probe_batch(), len(ctx.vocab), ctx.thresholds)),
    Check("padding", _padding, params=lambda cfg, _: PADDING_SOURCES),
    Check("gradients", lambda ctx, _: check_gradients(ctx.model(), ctx.probe_batch(), ctx.thresholds, distributed=ctx.distributed)),
    Check("batch_size", _batch_size, params=lambda cfg, _: BATCH_SIZES),
    Check("modalities", _modalities, skip=_needs_layout),
    # distillation (harness/checks/distill.py): only with a configured teacher
    Check("teacher", lambda ctx, _: check_teacher(ctx), skip=no_teacher),
    Check("teacher_competence", lambda ctx, _: check_teacher_competence(ctx), skip=no_teacher),
    Check("distill_loss", lambda ctx, _: check_distill_loss(ctx), skip=no_teacher),
    Check("teacher_frozen", lambda ctx, _: check_teacher_frozen(ctx), skip=no_teacher),
    # the user's training step (harness/checks/step.py): only with a configured train_step
    Check("train_step", _train_step, marker="smoke", skip=no_train_step),
    Check("smoke", lambda ctx, _: check_smoke(ctx.cfg, ctx.model(), ctx.dataset(), ctx.probe_indices(k_random=8), ctx.device, ctx.thresholds,
                                              _user_step(ctx), ctx.batch), marker="smoke"),
    Check("overfit", lambda ctx, _: check_overfit(ctx.cfg, ctx.model(), ctx.dataset(), ctx.overfit_indices(), ctx.device, ctx.thresholds,
                                                  user_step=_user_step(ctx), make_batch=ctx.batch), marker="overfit"),
)
BY_NAME = {c.name: c for c in CHECKS}
# everything but the overfit run (seconds to minutes)
CHEAP = tuple(c.name for c in CHECKS if c.marker != "overfit")


def expand(cfg: TrainConfig, names=None, configured_only: bool = False) -> list[tuple[Check, object]]:
    """(check, parameter) pairs for a configuration, in table order; `names` selects checks."""
    checks = CHECKS if names is None else tuple(BY_NAME[n] for n in names)
    return [(c, p) for c in checks for p in c.expand(cfg, configured_only)]


def check_name(finding: Finding) -> str:
    """'normalization[global]' -> 'normalization': the table name a finding came from."""
    return finding.check.split("[")[0]


def crashed(finding: Finding) -> bool:
    return bool(finding.values.get("crashed"))


def _in_harness(filename: str) -> bool:
    """Whether a file is the harness's own code (the fault rig's patched components are not)."""
    path = Path(filename).resolve()
    return path.is_relative_to(HARNESS_DIR) and not path.is_relative_to(HARNESS_DIR / "faults")


def run_check(check: Check | str, ctx: HarnessContext, param=None) -> Finding:
    """One check as a Finding, never an exception: status skip (with the reason) where it does
    not apply, a component it needs breaks its contract, or the harness's own probe cannot run on
    this model; a crash in the user's or the project's code is a FAIL marked crashed. Either way
    the reason is one line."""
    check = BY_NAME[check] if isinstance(check, str) else check
    label = check.label(param)
    start = time.perf_counter()
    try:
        reason = check.skip(ctx) if check.skip else ""
        if reason:
            return Finding(check=label, status=SKIP, summary=reason)
        return check.run(ctx, param)
    except ComponentError as exc:
        # contract handles its own; every other check needs the component and cannot run
        return Finding(check=label, status=SKIP, summary=f"cannot run: {one_line(exc, limit=240)} (see the contract check)",
                       values={"needs": "contract"}, seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - any crash is a finding of its own
        frame = code_frame(exc)
        where = f" (at {frame.filename}:{frame.lineno})" if frame else ""
        if frame is not None and _in_harness(frame.filename):
            # the harness's own probe met a model it cannot handle: not the user's failure
            return Finding(check=label, status=SKIP, summary=f"the probe could not run on this setup: {one_line(exc, limit=240)}{where}",
                           values={"probe_error": True}, seconds=time.perf_counter() - start)
        return Finding(
            check=label, status=FAIL, summary=f"the check could not run: {one_line(exc, limit=240)}{where}",
            values={"crashed": True}, seconds=time.perf_counter() - start,
        )
