"""Root causes: one fault often fails several checks. Name the check it starts in.

A finding that measured where its failure is born names that finding's label in
`values["born_in"]` (batch_size measures whether a sample's output differs alone vs in a padded
batch because the batch_transform's statistics include padded frames, `padding[batch_transform]`,
or because a module mixes padded frames into valid ones, `padding[model]`): that link comes first.

Otherwise the checks form layers, each judging what the layers below produce: the components,
then the data (files, labels), the model input, the forward pass, the loss, the gradients, and
what trains on them. A failed finding is *caused by* the first failed finding of a lower layer
whose kind of failure explains it: a failed contract explains everything; bad data or a
non-finite model input explains a non-finite forward, loss or step (and a crash); infeasible CTC
targets explain any loss-based failure; a broken forward pass, loss or gradient explains every
failure of what is built on it; a crash explains only a crash, and a padding check only what
measured its difference born there. It gets `values["caused_by"]` and its summary says so; a
finding that no other failure explains is a root cause.
"""
from __future__ import annotations

from harness.findings import FAIL, Finding

LAYERS = {
    "contract": 0,
    "clean_features": 1, "labels": 1, "shift": 1,
    "ctc_feasibility": 2, "normalization": 2, "model_input": 2, "padding[batch_transform]": 2,
    "forward": 3, "teacher": 3,  # the teacher: another model's forward pass, and what it was trained on
    "padding[model]": 3.5,  # the forward pass of a padded batch
    "loss_at_init": 4, "teacher_competence": 4, "distill_loss": 4,
    "gradients": 5, "teacher_frozen": 5,
    "train_step": 5.5,  # the user's training step: smoke and overfit run it
    "batch_size": 6, "modalities": 6, "smoke": 6, "overfit": 6, "replay": 6,
}
INPUT_CHECKS = ("normalization", "model_input", "padding[batch_transform]")  # all judge the model input
LOSS_CHECKS = ("loss_at_init", "gradients", "batch_size", "modalities", "smoke", "overfit")
PADDING_CHECKS = ("padding[batch_transform]", "padding[model]")  # they explain only what measures its difference born there
NONFINITE_WORDS = ("not finite", "non-finite", "nan", "inf ", "infinite")


def _name(f: Finding) -> str:
    """The table row a finding belongs to: the check's name, or its label where the label has a layer of its own."""
    return f.check if f.check in LAYERS else f.check.split("[")[0]


def _nonfinite(f: Finding) -> bool:
    text = f.summary.lower()
    return any(w in text for w in NONFINITE_WORDS)


ORDER = {name: i for i, name in enumerate(LAYERS)}  # the suite's table order, layer by layer


def measured_origin(downstream: Finding, failed: list[Finding]) -> Finding | None:
    """The failed finding a check measured its own failure to be born in: `values["born_in"]`
    names its label (batch_size measures whether a padding difference comes from the transform
    or the model)."""
    label = downstream.values.get("born_in")
    return next((u for u in failed if u is not downstream and u.check == label), None) if isinstance(label, str) else None


def explains(upstream: Finding, downstream: Finding) -> bool:
    """Whether the failure of `upstream` (a lower layer, or an earlier input check) accounts for
    that of `downstream`, by the kind of failure (measured links come first: measured_origin)."""
    up, down = _name(upstream), _name(downstream)
    lu, ld = LAYERS.get(up), LAYERS.get(down)
    if lu is None or ld is None:
        return False
    if not lu < ld and not (up in INPUT_CHECKS and down in INPUT_CHECKS and ORDER[up] < ORDER[down]):
        return False
    if up == "contract":
        return True
    if upstream.values.get("crashed"):
        return bool(downstream.values.get("crashed"))  # a crash explains a crash, not an independent failure
    if up in PADDING_CHECKS:
        return False  # only by measurement
    if down in PADDING_CHECKS:
        # a padding difference is measured, not inferred: a non-finite forward pass explains a
        # non-finite one, and an output that is not log-probabilities one born after the last module
        # (a log_softmax over time mixes every frame)
        after_head = up == "forward" and bool(downstream.values.get("after_last_module"))
        return _nonfinite(downstream) or bool(downstream.values.get("alone_raises")) or after_head
    if downstream.values.get("crashed") or upstream.values.get("no_signal"):
        return True  # a model input without signal explains anything the model then fails to learn
    if lu <= 2:  # the data or the model input
        if down in INPUT_CHECKS:
            return True
        if up == "ctc_feasibility" and down in LOSS_CHECKS:
            return True
        return _nonfinite(downstream)
    return True  # a broken forward pass, loss or gradient: everything built on it


def link_causes(findings: list[Finding]) -> list[Finding]:
    """Set `values["caused_by"]` (and say so in the summary) on every failed finding that another
    failed finding explains: the one it measured its failure to be born in, else the first failed
    finding of a lower layer whose kind of failure explains it. Idempotent. Returns the findings,
    root causes first, then the rest in their order."""
    failed = sorted((f for f in findings if f.status == FAIL), key=lambda f: ORDER.get(_name(f), len(ORDER)))
    for f in failed:
        if f.values.get("caused_by"):
            continue
        cause = measured_origin(f, failed)
        if cause is None:
            cause = next((u for u in failed if u is not f and not u.values.get("caused_by") and explains(u, f)), None)
        if cause is None:
            cause = next((u for u in failed if u is not f and explains(u, f)), None)
        if cause is not None:
            root = cause.values.get("caused_by") or cause.check
            f.values["caused_by"] = root
            f.summary = f"caused by {root}: {f.summary}"
    roots = [f for f in findings if f.status == FAIL and not f.values.get("caused_by")]
    return roots + [f for f in findings if f not in roots]


def root_causes(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.status == FAIL and not f.values.get("caused_by")]
