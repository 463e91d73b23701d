"""The user's own training step (train_step = "module.path:fn", model.components.TrainStep):
run as training runs it, on probe batches of the corpus and on one batch made non-finite on
purpose, and measured from outside:

    - its loss against a reference CTC (torch.nn.functional.ctc_loss) of the very output the
      step's forward produced, in the common reductions; a loss that matches none is compared
      with the usual mistakes (another blank, raw logits, a reduction by frames) and named;
    - whether the gradients are cleared: a hook on every parameter sees what p.grad still holds
      when the step's first backward pass adds the new gradient (0 or None when cleared);
    - whether it changes the parameters on a healthy batch, and keeps them finite;
    - what it does with a non-finite loss: stop (raise), skip the batch, or step with
      non-finite gradients.

The step's calls of torch.nn.functional.ctc_loss (torch.nn.CTCLoss goes through it) are
observed while it runs, so a failure can name the call's log-probs shape, blank and reduction.
`UserStep` also serves the smoke and overfit checks, which run the user's step instead of
this project's when one is configured.
"""
from __future__ import annotations

import math
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from harness.findings import Finding, status_from, table
from harness.probes import code_frame
from model import training
from model.components import ComponentError, UserModel, batch_targets, features_of, with_features

# the reductions of a CTC loss over a batch that are common and right; each maps the per-sample
# negative log-likelihoods, target lengths and output lengths to one number
REDUCTIONS = {
    "mean": ("torch's default: each sample's loss / its target length, averaged over the batch",
             lambda nll, tl, ol: (nll / tl.clamp(min=1)).mean()),
    "sum": ("summed over the batch", lambda nll, tl, ol: nll.sum()),
    "sum / batch size": ("each sample's loss averaged over the batch, not divided by its target length",
                         lambda nll, tl, ol: nll.mean()),
    "sum / target tokens": ("summed and divided by the batch's target tokens", lambda nll, tl, ol: nll.sum() / tl.sum().clamp(min=1)),
}
# reductions that are mistakes, tried only to name what a disagreeing loss is
WRONG_REDUCTIONS = {
    "per output frame": ("each sample's loss / its output frames, averaged: a reduction by frames, not by target length",
                         lambda nll, tl, ol: (nll / ol.clamp(min=1)).mean()),
    "first sample": ("the first sample's loss only", lambda nll, tl, ol: nll[0]),
}


@dataclass
class StepRecord:
    """One call of the user's step, measured."""

    loss: float | None  # what it returned, as a number (None: nothing numeric)
    returned: str  # the type of what it returned
    error: BaseException | None = None
    where: str = ""  # file:line in the user's code where the error was raised
    outputs: list = field(default_factory=list)  # the model's outputs during the step (detached), in call order
    lengths: list = field(default_factory=list)  # the lengths each of those calls got
    frames: list = field(default_factory=list)  # the padded frame count each of those calls got
    ctc_calls: list = field(default_factory=list)  # torch.nn.functional.ctc_loss calls: shape, blank, reduction, error
    leftover: float = 0.0  # norm of what p.grad held when the first backward pass added to it (0: cleared)
    fresh: float = 0.0  # norm of the gradient that backward pass added (before any clipping)
    backward: bool = False  # whether a backward pass reached the parameters
    changed: bool = False  # any parameter changed
    nonfinite: list = field(default_factory=list)  # parameters non-finite after the step

    @property
    def finite_loss(self) -> bool:
        return self.loss is not None and math.isfinite(self.loss)


HARNESS_DIR = Path(__file__).resolve().parents[1]


def _where(exc: BaseException) -> str:
    """The innermost frame of an error in the user's code (not torch, the standard library or the harness)."""
    frame = code_frame(exc, (HARNESS_DIR,))
    return f"{frame.filename}:{frame.lineno}" if frame else ""


def _without(tb, code):
    """A traceback without the frames of `code` (the ctc_loss observer: an error in the user's
    CTC call is the user's, located in the user's code)."""
    kept = []
    while tb is not None:
        if tb.tb_frame.f_code is not code:
            kept.append(tb)
        tb = tb.tb_next
    out = None
    for t in reversed(kept):
        out = types.TracebackType(out, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return out


def _detach(out):
    if torch.is_tensor(out):
        return out.detach()
    if isinstance(out, (tuple, list)):
        return type(out)(_detach(o) for o in out)
    return out


@dataclass
class Reference:
    """The reference CTC of one step's model output: per-sample negative log-likelihoods of the
    configured reading (user's blank, its ids) and the numbers each reduction gives."""

    nll: torch.Tensor  # [B] float32
    target_lengths: torch.Tensor
    out_lengths: torch.Tensor
    values: dict  # reduction name -> value

    @property
    def per_sample(self) -> torch.Tensor:
        """Per-sample loss / target length (model.training.StepResult's per_sample)."""
        return self.nll / self.target_lengths.clamp(min=1).float()


@dataclass
class UserStep:
    """The configured train_step with what running it needs: `make_batch(indices)` -> (the
    user's batch on the device, the Batch of the same samples on the CPU), the item keys, the
    user's vocabulary (None: the project's ids) and blank."""

    fn: Callable
    spec: str
    make_batch: Callable
    keys: dict
    user_vocab: object | None = None
    blank: int = 0

    # ---------------------------------------------------------------- running it

    def run(self, model: torch.nn.Module, raw, optimizer) -> StepRecord:
        """Call the step once on the user's batch `raw`, in train mode, measuring it."""
        module = training.user_module(model)
        params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        before = [p.detach().clone() for _, p in params]
        rec = StepRecord(loss=None, returned="")
        seen = set()
        leftover, fresh = [0.0], [0.0]

        def on_grad(name, p):
            def hook(grad):
                if name in seen:  # a later backward pass of the same step (accumulation inside it)
                    return grad
                seen.add(name)
                rec.backward = True
                if p.grad is not None:
                    leftover[0] += float(p.grad.detach().float().pow(2).sum())
                fresh[0] += float(grad.detach().float().pow(2).sum())
                return grad
            return hook

        def on_forward(mod, args, kwargs, out):
            if mod.training:
                feats = args[0] if args else kwargs.get("features", kwargs.get("x"))
                lengths = args[1] if len(args) > 1 else next((v for k, v in kwargs.items() if "len" in k), None)
                rec.outputs.append(_detach(out))
                rec.lengths.append(lengths.detach() if torch.is_tensor(lengths) else lengths)
                rec.frames.append(int(feats.shape[1]) if torch.is_tensor(feats) and feats.ndim == 3 else None)

        real_ctc = F.ctc_loss

        def spy(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
            call = {"shape": tuple(log_probs.shape), "blank": int(blank), "reduction": reduction, "zero_infinity": bool(zero_infinity),
                    "input_lengths": torch.as_tensor(input_lengths).detach().cpu().reshape(-1).tolist()}
            rec.ctc_calls.append(call)
            try:
                return real_ctc(log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity)
            except Exception as exc:
                call["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                raise

        handles = [p.register_hook(on_grad(n, p)) for n, p in params]
        handles.append(module.register_forward_hook(on_forward, with_kwargs=True))
        F.ctc_loss = spy
        module.train()
        try:
            loss = self.fn(module, raw, optimizer)
            rec.loss, rec.returned = training.loss_number(loss), type(loss).__name__
        except Exception as exc:  # noqa: BLE001 - the user's step: measured, reported in one line
            rec.error, rec.where = exc.with_traceback(_without(exc.__traceback__, spy.__code__)), _where(exc)
        finally:
            F.ctc_loss = real_ctc
            for h in handles:
                h.remove()
        rec.leftover, rec.fresh = math.sqrt(leftover[0]), math.sqrt(fresh[0])
        with torch.no_grad():
            rec.changed = any(not torch.equal(p.detach(), b) for (_, p), b in zip(params, before))
            rec.nonfinite = [n for n, p in params if not bool(torch.isfinite(p).all())]
        return rec

    # ---------------------------------------------------------------- the reference loss

    def targets_agree(self, raw, batch) -> bool:
        """Whether the user's batch carries the Batch's targets (in the user's ids), or none."""
        try:
            seqs = batch_targets(raw, self.keys)
        except ComponentError:
            return False
        if seqs is None:
            return True
        ids = self.user_targets(batch).tolist()
        bounds = [0] + torch.cumsum(batch.target_lengths, 0).tolist()
        return seqs == [ids[bounds[i] : bounds[i + 1]] for i in range(len(batch))]

    def user_targets(self, batch) -> torch.Tensor:
        """The batch's targets in the user's ids."""
        uv = self.user_vocab
        return uv.to_user(batch.targets) if uv is not None and uv.permutes else batch.targets

    def user_log_probs(self, model, rec: StepRecord, raw_output: bool = False):
        """(log-probs [B, T', V] in the user's class order, out_lengths) of the step's first
        forward; raw_output: the tensor as the model returned it, batch first, no log_softmax."""
        if not rec.outputs:
            return None
        out, lengths, frames = rec.outputs[0], rec.lengths[0], rec.frames[0]
        if isinstance(model, UserModel):
            if raw_output:
                x, returned = model.split_output(out)
                x = x.transpose(0, 1) if model.layout == "TBV" else x
                return x, (returned if returned is not None else model.output_lengths_for(lengths, x.shape[1], frames))
            return model.user_log_probs(out, lengths, frames)
        return out[0], out[1]

    def reference(self, model, rec: StepRecord, batch, blank: int | None = None, raw_output: bool = False) -> Reference | None:
        """The reference CTC of the step's own model output with `blank` (default: the configured one)."""
        got = self.user_log_probs(model, rec, raw_output)
        if got is None:
            return None
        log_probs, out_lengths = got
        blank = self.blank if blank is None else blank
        targets = self.user_targets(batch).to(log_probs.device)
        tl, ol = batch.target_lengths.to(log_probs.device), torch.as_tensor(out_lengths).long().to(log_probs.device)
        # a step whose CTC zeroes infinite (infeasible) losses is compared with the same
        zero_infinity = bool(rec.ctc_calls and rec.ctc_calls[0]["zero_infinity"])
        with torch.no_grad():
            nll = F.ctc_loss(log_probs.float().transpose(0, 1), targets, ol, tl, blank=blank, reduction="none", zero_infinity=zero_infinity)
            values = {}
            for table_ in (REDUCTIONS, WRONG_REDUCTIONS):
                for name, (_, fn) in table_.items():
                    values[name] = float(fn(nll, tl.float(), ol.float()))
        return Reference(nll.detach().cpu(), tl.cpu(), ol.cpu(), values)

    # ---------------------------------------------------------------- for smoke and overfit

    def result(self, model, raw, batch, optimizer) -> training.StepResult:
        """One step as model.training.train_step reports it: the loss the step returned, the
        gradient norm its backward pass produced (before clipping), the per-sample reference
        losses; not finite when the loss or the parameters are not. A step that raises on a
        batch whose reference loss is not finite counts as a non-finite step (it stopped on it),
        any other error is raised."""
        rec = self.run(model, raw, optimizer)
        ref = self.reference(model, rec, batch) if rec.outputs else None
        per_sample = ref.per_sample if ref is not None else torch.full((len(batch),), float("nan"))
        bad = [batch.ids[i] for i in torch.nonzero(~torch.isfinite(per_sample)).flatten().tolist()]
        if rec.error is not None and not bad:
            raise rec.error
        loss = rec.loss if rec.loss is not None else (float(per_sample.mean()) if ref is not None else float("nan"))
        finite = rec.error is None and math.isfinite(loss) and not rec.nonfinite
        return training.StepResult(loss if finite else float("nan"), rec.fresh, per_sample, finite, [] if finite else (bad or list(batch.ids)))


# ----------------------------------------------------------------------------- the check


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rtol * abs(b) + atol


def _ctc_call(rec: StepRecord) -> str:
    if not rec.ctc_calls:
        return ""
    c = rec.ctc_calls[0]
    return f" (its ctc_loss call: log_probs {list(c['shape'])}, blank={c['blank']}, reduction={c['reduction']!r})"


def _crash(step: UserStep, model, rec: StepRecord, batch, n: int) -> str:
    """What a step that raised on a healthy batch did, in one sentence; a CTC call that raised
    is compared with the model's output layout."""
    text = f"{type(rec.error).__name__}: {str(rec.error).splitlines()[0] if str(rec.error) else ''}"
    call = next((c for c in rec.ctc_calls if "error" in c), None)
    where = f" (at {rec.where})" if rec.where else ""
    if call is None:
        return f"the step raised {text} at step {n}{where}"
    shape, b = list(call["shape"]), len(batch)
    out = step.user_log_probs(model, rec)
    model_shape = list(out[0].shape) if out is not None else None  # [B, T', V]
    said = f"the step's CTC call raised {call['error']} at step {n}{where}: it gave ctc_loss log_probs {shape} with {len(call['input_lengths'])} input lengths"
    if len(shape) == 3 and shape[0] == b and shape[1] != b:
        declared = model.layout if isinstance(model, UserModel) else "BTV"
        return (f"{said}; CTC reads log_probs as [T, B, V] (batch {shape[1]} here) and the batch has {b} samples: the step hands CTC the "
                f"output batch first, [B, T, V] = {shape}, where the model returns {'[T, B, V]' if declared == 'TBV' else '[B, T, V]'} "
                f"(output_layout = {declared!r}); a wrong layout: give torch.nn.CTCLoss [T, B, V]{' as the model returns it' if declared == 'TBV' else ', log_probs.transpose(0, 1)'}")
    if model_shape is not None:
        said += f" (the model's output read as [B, T', V]: {model_shape})"
    return said


def _loss_verdict(step: UserStep, model, pairs: list, thresholds: dict) -> tuple[str, str, dict]:
    """(failure sentence or "", the note when it agrees, values) for the step's losses on healthy
    batches, (StepRecord, Batch) pairs: a reduction agrees when it gives every step's loss. A
    disagreement is named on the last step, whose output (trained a few steps) separates the
    candidates best: at init an output close to uniform gives nearly the same CTC for any blank."""
    rtol, atol = thresholds["step_loss_rtol"], thresholds["step_loss_atol"]
    refs = [step.reference(model, r, b) for r, b in pairs]
    rec, batch = pairs[-1]
    ref = refs[-1]
    values = {"step_loss": rec.loss, "reference": ref.values if ref is not None else None}
    if any(x is None for x in refs):
        return ("the step never called the model it was given (the user's module): it trains another model, or none", "", values)
    returned = next((r for r, _ in pairs if r.loss is None), None)
    if returned is not None:
        return (f"the step returned {returned.returned}, not the loss: return the loss (a float or a 0-dim tensor) so it can be compared and logged", "", values)
    loss = rec.loss
    for name, (desc, _) in REDUCTIONS.items():
        if all(_close(r.loss, x.values[name], rtol, atol) for (r, _), x in zip(pairs, refs)):
            values["reduction"] = name
            return "", f"its loss {loss:.4g} equals CTC of the model's output, reduction '{name}' ({desc})", values
    v = rec.ctc_calls[0] if rec.ctc_calls else {}
    found = []
    uv = step.user_vocab
    size = (len(uv) if uv is not None else int(step.user_log_probs(model, rec)[0].shape[-1]))
    for b in dict.fromkeys([0, size - 1, v.get("blank", step.blank)]):
        if b == step.blank:
            continue
        other = step.reference(model, rec, batch, blank=b)
        match = next((n for n in REDUCTIONS if _close(loss, other.values[n], rtol, atol)), None)
        if match:
            found.append(f"its loss {loss:.4g} is CTC with blank {b} (reduction '{match}'), not with the model's blank {step.blank} "
                         f"(blank = {step.blank} in the configuration; the right loss is {ref.values[match]:.4g}): a wrong blank")
            values["wrong_blank"] = b
            break
    if not found and isinstance(model, UserModel) and model.applies_log_softmax:
        raw = step.reference(model, rec, batch, raw_output=True)
        match = next((n for n in REDUCTIONS if _close(loss, raw.values[n], rtol, atol)), None)
        if match:
            found.append(f"its loss {loss:.4g} is CTC of the raw output before log_softmax (reduction '{match}'; of the log-probabilities it is "
                         f"{ref.values[match]:.4g}): the step gives CTC logits; apply log_softmax over V first")
            values["raw_logits"] = True
    if not found:
        wrong = next((n for n in WRONG_REDUCTIONS if _close(loss, ref.values[n], rtol, atol)), None)
        if wrong:
            found.append(f"its loss {loss:.4g} is {WRONG_REDUCTIONS[wrong][0]}: a wrong reduction (the common ones give "
                         + ", ".join(f"'{n}' {ref.values[n]:.4g}" for n in REDUCTIONS) + ")")
            values["wrong_reduction"] = wrong
    if not found:
        found.append(f"its loss {loss:.4g} matches no CTC of the model's output with blank {step.blank}: "
                     + ", ".join(f"'{n}' {ref.values[n]:.4g}" for n in REDUCTIONS)
                     + " (a wrong reduction, another output than the model's, or terms besides CTC)")
    return found[0] + _ctc_call(rec), "", values


def check_train_step(step: UserStep, model: torch.nn.Module, indices: list[int], cfg, thresholds: dict) -> Finding:
    """`train_step_steps` calls of the user's step on probe batches of `indices`, then one on the
    first of them with NaN in one sample's first frame, each measured (StepRecord): the loss
    against the reference CTC, gradients cleared before the backward pass, parameters changed
    and finite; on the non-finite batch: stops, skips (a warning naming the samples) or steps."""
    start = time.perf_counter()
    module = training.user_module(model)
    optimizer = training.build_optimizer(cfg, module)
    steps = max(2, int(thresholds["train_step_steps"]))
    chunks = [indices[j : j + cfg.batch_size] for j in range(0, len(indices), cfg.batch_size)] or [indices]
    batches = [step.make_batch(c) for c in chunks[:steps]]
    fails, warns, notes, samples, values, rows = [], [], [], [], {}, []
    records = []
    for n in range(1, steps + 1):
        raw, batch = batches[(n - 1) % len(batches)]
        rec = step.run(model, raw, optimizer)
        records.append((rec, batch))
        rows.append([n, ", ".join(batch.ids), "raised" if rec.error else f"{rec.loss:.4g}" if rec.loss is not None else rec.returned,
                     f"{rec.leftover:.3g}", f"{rec.fresh:.3g}", "yes" if rec.changed else "no"])
        if rec.error is not None:
            fails.append(_crash(step, model, rec, batch, n))
            samples += batch.ids
            break
    healthy = [(r, b, raw) for (r, b), (raw, _) in zip(records, batches * steps) if r.error is None]
    if healthy:
        # the loss is compared on a batch whose targets are the items' labels as the checks read them
        # (a label id the labels check reports is left out of the checks' targets, not the step's)
        comparable = [(r, b) for r, b, raw in healthy if step.targets_agree(raw, b)]
        if comparable:
            problem, note, loss_values = _loss_verdict(step, model, comparable, thresholds)
            values.update(loss_values)
            if problem:
                fails.append(problem)
            else:
                notes.append(note)
        else:
            notes.append("its loss was not compared: every probe batch holds label ids the labels check reports")
        carried = [(k + 1, r) for k, (r, _) in enumerate(records) if k > 0 and r.backward and r.leftover > 0]
        if carried:
            k, r = carried[0]
            held = ", ".join(f"{x.leftover:.3g}" for x, _ in records)
            fails.append(f"the step never clears gradients: at the backward pass of step {k} the parameters still held the gradient of the "
                         f"steps before (norm {r.leftover:.3g}, beside the new {r.fresh:.3g}), so gradients accumulate across calls (norm held "
                         f"at the backward of steps 1..{len(records)}: {held}); call optimizer.zero_grad() before loss.backward()")
            values["leftover"] = r.leftover
        finite_steps = [(k + 1, r) for k, (r, _) in enumerate(records) if r.error is None and r.finite_loss]
        if finite_steps and not any(r.changed for _, r in finite_steps):
            fails.append(f"the step changed no parameter in {len(finite_steps)} step(s) on healthy batches (loss finite): it never calls "
                         "optimizer.step() on the optimizer it is given, or its learning rate is 0")
        elif finite_steps:
            idle = [k for k, r in finite_steps if not r.changed]
            if idle:
                warns.append(f"steps {idle} changed no parameter on a healthy batch (loss finite): the step skips some healthy batches")
        broke = [(k + 1, r) for k, (r, _) in enumerate(records) if r.nonfinite]
        if broke:
            k, r = broke[0]
            fails.append(f"after step {k} on a healthy batch {len(r.nonfinite)} parameter(s) are non-finite (first: {r.nonfinite[0]})")
        skipped = [(k + 1, r, b) for k, (r, b) in enumerate(records) if r.error is None and not r.finite_loss and not r.changed]
        if skipped:
            ids = []
            for _, r, b in skipped:
                ref = step.reference(model, r, b)
                ids += [b.ids[i] for i in torch.nonzero(~torch.isfinite(ref.nll)).flatten().tolist()] if ref is not None else list(b.ids)
            warns.append(f"it skipped {len(skipped)} healthy batch(es) with a non-finite loss (steps {[k for k, _, _ in skipped]}), "
                         f"samples {ids}: skipping hides why their loss is not finite")
            samples += ids
        # the batch made non-finite on purpose
        raw, batch = batches[0]
        features = features_of(raw, step.keys).detach().clone()
        features[0, 0] = float("nan")
        target = batch.ids[0]
        rec = step.run(model, with_features(raw, step.keys, features), optimizer)
        n = len(records) + 1
        what = f"the batch made non-finite on purpose (step {n}: NaN in the first frame of sample {target})"
        rows.append([n, ", ".join(batch.ids) + " (NaN)", "raised" if rec.error else f"{rec.loss:.4g}" if rec.loss is not None else rec.returned,
                     f"{rec.leftover:.3g}", f"{rec.fresh:.3g}", "yes" if rec.changed else "no"])
        values["nonfinite_batch"] = {"sample": target, "loss": rec.loss, "raised": repr(rec.error) if rec.error else None,
                                     "changed": rec.changed, "nonfinite_parameters": rec.nonfinite}
        ref = step.reference(model, rec, batch) if rec.outputs else None
        hit = [batch.ids[i] for i in torch.nonzero(~torch.isfinite(ref.nll)).flatten().tolist()] if ref is not None else [target]
        if rec.nonfinite:
            fails.append(f"it steps with non-finite gradients: after {what} {len(rec.nonfinite)} of {len(list(module.parameters()))} parameter "
                         f"tensors are non-finite (first: {rec.nonfinite[0]}); check torch.isfinite(loss) (and the gradient norm) before optimizer.step()")
            samples += hit
        elif rec.error is not None:
            notes.append(f"{what} stops it: it raised {type(rec.error).__name__}")
        elif not rec.changed:
            loss = "nothing" if rec.loss is None else f"loss {rec.loss:.4g}"
            warns.append(f"it skips batches with a non-finite loss: {what} returned {loss} and changed no parameter, without a word; "
                         f"samples with a non-finite loss: {hit}; skipping hides the cause, which the harness names: "
                         f"{target}'s features hold NaN")
            samples += hit
        else:
            notes.append(f"{what}: the model absorbed it (loss {rec.loss}, parameters finite)")
    hint = ""
    if fails:
        hint = ("give torch.nn.CTCLoss the model's output as [T, B, V] with the model's blank, clear gradients before backward, "
                "step the optimizer it is given, and stop (raise) on a non-finite loss")
    elif warns:
        hint = "raise on a non-finite loss, or log the batch's sample ids before skipping it, so the cause is found"
    summary = "; ".join(fails + warns) or f"{len(records)} steps on probe batches: " + "; ".join(notes)
    if not fails and warns and notes:
        summary += "; " + "; ".join(notes)
    values["key"] = "broken" if fails else "skips non-finite" if warns else f"loss: CTC '{values.get('reduction', '?')}'"
    return Finding(
        check="train_step",
        status=status_from(bool(fails), bool(warns)),
        summary=summary,
        hint=hint,
        values=values,
        samples=list(dict.fromkeys(samples)),
        tables={"Calls of the training step": table(["step", "samples", "loss", "gradient held before backward", "new gradient", "parameters changed"], rows)},
        seconds=time.perf_counter() - start,
    )


def no_train_step(ctx) -> str:
    """Why the train_step check does not apply ('' when a train_step is configured)."""
    if ctx.cfg.train_step is None:
        return "no train_step is configured: smoke and overfit run this project's training step (model.training.train_step)"
    return ""
