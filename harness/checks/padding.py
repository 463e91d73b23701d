"""Whether a sample's output depends on the batch it is padded into, and where that is born.

`padding[batch_transform]`: the batch_transform gives a sample other features in a padded batch
than alone (its statistics include padded frames); measured is whether that changes this model's
output. `padding[model]`: the model's output for a sample alone vs zero-padded into a batch with a
longer sample (effective: what training does) and with noise in the padded frames (latent: what
non-zero padding would do); watching every module's forward (harness.probes.watch_modules)
names the first module whose valid frames change.

A few samples (the shortest and the longest of the probe samples), eval mode, no gradients.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from data.dataset import collate
from harness.checks.input import _affine_fit, _replace_features
from harness.findings import SKIP, Finding, status_from, table
from harness.probes import finite_scale, fused_note, module_kind, nan_diff, one_line, output_tensors, prefix_diff, repad, watch_modules

WHERES = ("batch_transform", "model")
NOISE = (5.0, 5.0)  # padded frames of the latent probe: mean and std of the values put there

PADDING_HINTS = {
    "time_norm": ("{type} normalizes over time, padded frames included: take its statistics over valid frames only "
                  "(a masked norm) or normalize per frame (LayerNorm over the channels)"),
    "pool": ("a pool across the sample's end reads padded frames: mask them before it (-inf for a max pool; "
             "0 and a division by the valid count for an average)"),
    "conv": ("a conv reads padded frames at the sample's end: zero padded frames in its input (x * mask) after every "
             "layer that makes them non-zero (a bias, a norm), and mask its output"),
    "attention": ("attention attends to padded frames: pass a key padding mask where True means padded "
                  "(src_key_padding_mask = arange(T)[None] >= lengths[:, None]); an inverted mask attends only to padding"),
    "rnn": ("an RNN runs over padded frames (a backward direction starts in them): pack its input "
            "(pack_padded_sequence with the lengths, enforce_sorted=False)"),
    "other": ("its forward mixes frames over time (a mean, sum, softmax or interpolation over all T frames): "
              "restrict it to each sample's valid frames"),
}
BEFORE_HINT = ("a functional op just before it mixes padded frames into valid ones (F.interpolate back to the padded "
               "length, a mean, sum or softmax over all T frames): compute it over each sample's valid frames")
AFTER_HINT = ("a functional op of forward after the last module mixes padded frames into valid ones (a mean or "
              "softmax over all T frames, F.interpolate): compute it over each sample's valid frames")


def check_padding(model, samples: list, to_input, thresholds: dict, where: str, transform_name: str | None = None) -> Finding:
    """padding[batch_transform] or padding[model] (`where`) on the shortest and longest of
    `samples` (data.dataset.Sample, as the dataset yields them); `to_input` (batch -> batch) is
    what training applies between loader and model (device, batch_transform)."""
    if where not in WHERES:
        raise ValueError(f"where must be one of {WHERES}, not {where!r}")
    start = time.perf_counter()
    label = f"padding[{where}]"
    if where == "batch_transform" and not transform_name:
        return Finding(check=label, status=SKIP, summary="no batch_transform is configured: the model input is the dataset's output")
    finite = [s for s in samples if bool(torch.isfinite(torch.as_tensor(s.features)).all())]
    if not finite:
        return Finding(check=label, status=SKIP, seconds=time.perf_counter() - start,
                       summary="nothing to judge: every probe sample's features hold NaN/Inf (see model_input); padding is judged on finite input")
    picks, judged = probe_samples(finite)
    model.eval()
    with torch.no_grad():
        finding = _transform(model, picks, judged, to_input, thresholds, transform_name) if where == "batch_transform" \
            else _model(model, picks, judged, to_input, thresholds)
    finding.check = label
    finding.seconds = time.perf_counter() - start
    return finding


def probe_samples(samples: list) -> tuple[list, int]:
    """(the samples to batch, how many of them are judged): the longest and the shortest probe
    sample, and one of middle length when there are three lengths or more. When they are all of
    one length a longer companion (the first one with half of its frames repeated) is appended,
    so the others are padded; it is not judged."""
    if not samples:
        raise ValueError("check_padding needs at least one sample")
    by_length = sorted(range(len(samples)), key=lambda i: (samples[i].length, i))
    chosen = [by_length[0], by_length[-1]]
    if len({samples[i].length for i in by_length}) >= 3:
        chosen.insert(1, by_length[len(by_length) // 2])
    picks = [samples[i] for i in dict.fromkeys(chosen)]
    judged = len(picks)
    if len({s.length for s in picks}) == 1:
        s = picks[-1]
        extra = s.features[: max(1, s.length // 2)]
        picks.append(dataclasses.replace(s, id=f"{s.id}+{extra.shape[0]} frames", features=torch.cat([s.features, extra])))
    return picks, judged


def _alone_inputs(picks: list, to_input) -> tuple:
    """(padded loader batch, each sample's model input when it is alone in its batch)."""
    raw = collate(picks)
    raw_np = raw.features.numpy()
    return raw, [to_input(_replace_features(raw, b, raw_np)) for b in range(len(picks))]


# ----------------------------------------------------------------------------- the transform


def _transform(model, picks, judged, to_input, thresholds, name) -> Finding:
    atol = thresholds["padding_atol"]
    raw, alone = _alone_inputs(picks, to_input)
    together = to_input(raw)
    x_rep, lengths = repad([a.features[0] for a in alone])
    values = {"born_in": "batch_transform"}
    rows, in_diffs, effects, fits = [], [], [], []
    comparable = together.features.shape == x_rep.shape
    if comparable:
        lp_t, ol_t = model(together.features, together.lengths)
        lp_r, _ = model(x_rep, lengths)
    for b in range(judged):
        n_in = int(lengths[b])
        in_diff = prefix_diff(together.features[b], alone[b].features[0], n_in)
        effect = prefix_diff(lp_t[b], lp_r[b], int(ol_t[b])) if comparable else float("nan")
        in_diffs.append(in_diff)
        effects.append(effect)
        fits.append(_affine(alone[b].features[0], together.features[b, :n_in]))
        rows.append([picks[b].id, picks[b].length, f"{in_diff:.3g}", f"{effect:.3g}"])
    worst_in = max(in_diffs)
    b_in = int(np.argmax(in_diffs))
    values.update(transform_diff=worst_in, effective_diff=max(effects) if comparable else None, key=f"diff {worst_in:.1e}")
    tables = {"batch_transform alone vs in a padded batch": table(["id", "frames", "max |input diff|", "max |output diff|"], rows)}
    if worst_in <= atol:
        return Finding(check="", status=status_from(False),
                       summary=(f"batch_transform {name!r} gives each of {judged} probe samples the same features alone and in a "
                                f"padded batch (max diff {worst_in:.1e})"),
                       values=values, tables=tables)
    leaking = [picks[b].id for b in range(judged) if in_diffs[b] > atol]
    text = (f"batch_transform {name!r} depends on the batch's padding: its statistics include padded frames; sample "
            f"{picks[b_in].id} ({picks[b_in].length} frames, padded to {x_rep.shape[1]}) gets features differing by up to "
            f"{worst_in:.3g} alone and in the batch")
    a, shift = fits[b_in]
    if a is not None:
        text += f" (a per-sample rescale: x_batch = {a:.3g} * x_alone + {shift:.3g})"
    if not comparable:
        return Finding(check="", status=status_from(False, True),
                       summary=text + "; its effect on this model's output is not measured (the transform changes the batch's shape)",
                       hint=_transform_hint(), values=values, samples=leaking, tables=tables)
    worst_effect = max(effects)
    b_eff = int(np.argmax(effects))
    if worst_effect > atol:
        return Finding(check="", status=status_from(True),
                       summary=(f"{text}; the model's output of sample {picks[b_eff].id} differs by {worst_effect:.3g} "
                                f"(the batch-transformed input vs its own transformed features zero-padded)"),
                       hint=_transform_hint(), values=values, samples=leaking, tables=tables)
    return Finding(check="", status=status_from(False, True),
                   summary=(f"{text}; no effect on this model's output (max diff {worst_effect:.1e}: it is invariant to that "
                            "change, e.g. a per-frame norm at its input). Latent: it bites with a model that is not, or with "
                            "padding that changes (other batch sizes, bucketing)"),
                   hint=_transform_hint(), values=values, samples=leaking, tables=tables)


def _transform_hint() -> str:
    return ("take the transform's statistics over each sample's valid frames only (mask with the lengths: "
            "mean = (x * mask).sum(1) / lengths) and keep padded frames at 0")


def _affine(alone: torch.Tensor, together: torch.Tensor) -> tuple:
    """(a, b) when together = a * alone + b over one sample's valid frames (one scale and
    shift for the whole sample), else (None, None)."""
    a, b, residual = _affine_fit(alone.detach().double().cpu().numpy().ravel(), together.detach().double().cpu().numpy().ravel())
    return (a, b) if residual < 1e-3 * max(1.0, abs(a)) else (None, None)


# ----------------------------------------------------------------------------- the model


def _slice_like(t: torch.Tensor, shape: torch.Size, b: int, n: int) -> torch.Tensor | None:
    """Sample b's part of a batched module output `t` shaped like the same module's output for
    the sample alone: the batch axis is the one of size n here and 1 alone; every other axis
    that is longer here (time, strided time, both axes of an attention map) is cut to the
    alone length, its valid prefix. None where the two do not correspond."""
    if t.dim() != len(shape):
        return None
    axes = [d for d in range(t.dim()) if t.shape[d] == n and shape[d] == 1]
    if not axes:
        return None
    index = []
    for d in range(t.dim()):
        if d == axes[0]:
            index.append(slice(b, b + 1))
        elif shape[d] <= t.shape[d]:
            index.append(slice(0, shape[d]))
        else:
            return None
    return t[tuple(index)]


@dataclasses.dataclass
class _Call:
    """One module's completion in a pass, and how far its valid frames moved from the reference."""

    name: str
    call: int
    type: str
    kind: str
    has_children: bool
    out_diff: float = 0.0  # largest NaN-aware |difference| / scale over the judged samples' valid frames
    in_diff: float = 0.0  # the same for its first input
    fused: bool = False  # it has submodules and none of them ran: a fused fast path computed it


class _Pass:
    """A watch_modules callback comparing every module's valid frames in a batched pass with a
    reference: the samples alone (`alone` records, reference=None; the slices compared are
    stored), or the stored slices of an earlier batched pass."""

    def __init__(self, judged: int, batch: int, alone: list, reference: dict | None):
        self.judged, self.batch, self.alone, self.reference = judged, batch, alone, reference
        self.calls: list[_Call] = []
        self.stored: dict = {}
        self.completed: set = set()
        self.last: tuple = ()  # (name, type) of the last module to complete

    def __call__(self, name, call, module, inputs, output):
        try:
            self._compare(name, call, module, inputs, output)
        finally:
            self.completed.add(name)
            self.last = (name, type(module).__name__)

    def _compare(self, name, call, module, inputs, output):
        key = (name, call)
        parts = {"out": output_tensors(output, packed=False), "in": output_tensors(inputs, packed=False)[:1]}
        diffs = {"out": 0.0, "in": 0.0}
        seen = False
        for b in range(self.judged):
            rec = self.alone[b].get(key)
            if rec is None:
                continue
            for side in ("out", "in"):
                for j, (t, alone_t) in enumerate(zip(parts[side], rec[side])):
                    s = _slice_like(t, alone_t.shape, b, self.batch)
                    if s is None:
                        continue
                    ref = alone_t if self.reference is None else self.reference.get((key, b, side, j))
                    if ref is None:
                        continue
                    if self.reference is None:
                        self.stored[(key, b, side, j)] = s.detach().clone()
                    diffs[side] = max(diffs[side], nan_diff(s, ref) / finite_scale(ref))
                    seen = True
        if seen:
            has_children = any(True for _ in module.children())
            fused = has_children and not any(n.startswith(name + ".") for n in self.completed)
            self.calls.append(_Call(name, call, type(module).__name__, module_kind(module), has_children, diffs["out"], diffs["in"], fused))

    def first(self, tol: float) -> _Call | None:
        return next((c for c in self.calls if c.out_diff > tol), None)


def _record_alone(model, x, lengths) -> tuple[dict, torch.Tensor]:
    """Every module's outputs and first input for one sample alone: {(name, call): {"out", "in"}},
    and the model's log-probs over its output frames."""
    rec = {}

    def keep(name, call, module, inputs, output):
        rec[(name, call)] = {"out": [t.detach().clone() for t in output_tensors(output, packed=False)],
                             "in": [t.detach().clone() for t in output_tensors(inputs, packed=False)[:1]]}

    with watch_modules(model, keep):
        lp, ol = model(x, lengths)
    return rec, lp[0, : int(ol[0])].detach().clone()


def _batched(model, x, lengths, probe: _Pass):
    with watch_modules(model, probe):
        return model(x, lengths)


def _locate(probe: _Pass, tol: float) -> _Call | None:
    """The first module (completion order) whose valid frames moved; at a hundredth of the
    tolerance when none moved beyond it (a small difference the layers after it amplify)."""
    return probe.first(tol) or probe.first(tol / 100)


def alone_crash(model, sample, exc: BaseException) -> Finding:
    """A FAIL for a model whose forward raises on one sample alone (a batch of one, no padding)."""
    attention = any(module_kind(m) == "attention" for m in model.modules())
    hint = ("with an inverted key padding mask an unpadded sample masks every key, which torch's fused attention "
            "cannot run: True must mean padded (src_key_padding_mask = arange(T)[None] >= lengths[:, None])" if attention
            else "make forward run on a batch of one sample without padding (B = 1, T = its length)")
    return Finding(check="", status=status_from(True),
                   summary=f"the forward pass raises on sample {sample.id} alone (a batch of one, {sample.length} frames, no padding): {one_line(exc)}",
                   hint=hint, values={"born_in": "model", "alone_raises": True, "module": None, "module_type": None},
                   samples=[sample.id])


def _describe(model, call: _Call | None, last: tuple, tol: float) -> tuple[str, str, dict]:
    """(where the difference is born, what to do, values) for a located module call; `last` is
    (name, type) of the last module to complete, for a difference no module's output shows."""
    if call is None:
        where = "a functional op of forward after the last module" + (f" ('{last[0]}', {last[1]})" if last else "")
        return where, AFTER_HINT, {"module": None, "module_type": None, "after_last_module": True}
    name = call.name + (f" (call {call.call + 1})" if call.call else "")
    values = {"module": call.name, "module_type": call.type, "module_kind": call.kind}
    if call.in_diff > tol or call.kind in ("per_frame", "frame_norm"):  # a per-frame layer only passes a difference on
        values["born_before_module"] = True
        why = " (its input already differs on valid frames)" if call.in_diff > tol else f" (a {call.type} works frame by frame)"
        return f"'{name}' ({call.type}) or the functional op just before it{why}", BEFORE_HINT, values
    hint = PADDING_HINTS.get(call.kind, PADDING_HINTS["other"]).format(type=call.type)
    where = f"'{name}' ({call.type})"
    if call.fused:
        where += fused_note(model, call.name)
        values["fused"] = True
    elif call.has_children:  # its submodules ran and none of their outputs differs
        where += " (none of its submodules' outputs differ: it is born in its own forward, between them)"
        hint = PADDING_HINTS["other"]
    return where, hint, values


def _model(model, picks, judged, to_input, thresholds) -> Finding:
    atol = thresholds["padding_atol"]
    _, alone = _alone_inputs(picks, to_input)
    x0, lengths = repad([a.features[0] for a in alone])
    n = x0.shape[0]
    records, alone_out = [], []
    for b in range(judged):
        try:
            rec, lp = _record_alone(model, alone[b].features, alone[b].lengths)
        except Exception as exc:  # noqa: BLE001 - the user's model fails on a batch of one: that is the finding
            return alone_crash(model, picks[b], exc)
        records.append(rec)
        alone_out.append(lp)
    pad = ~(torch.arange(x0.shape[1], device=x0.device)[None, :] < lengths[:, None])
    g = torch.Generator().manual_seed(0)
    noise = (torch.randn(x0.shape, generator=g) * NOISE[1] + NOISE[0]).to(device=x0.device, dtype=x0.dtype)
    x_noise = torch.where(pad[..., None], noise, x0)

    zero = _Pass(judged, n, records, None)
    lp0, ol0 = _batched(model, x0, lengths, zero)
    noisy = _Pass(judged, n, records, zero.stored)
    lp1, _ = _batched(model, x_noise, lengths, noisy)

    rows, eff, lat, only_batch, alone_bad = [], [], [], [], []
    for b in range(judged):
        k = alone_out[b].shape[0]
        e = prefix_diff(lp0[b], alone_out[b], k)
        lt = prefix_diff(lp1[b], lp0[b], k)
        eff.append(e)
        lat.append(lt)
        finite_alone = bool(torch.isfinite(alone_out[b]).all())
        if not finite_alone:
            alone_bad.append(picks[b].id)
        elif lp0.shape[1] >= k and not torch.isfinite(lp0[b, :k]).all():
            only_batch.append(picks[b].id)
        rows.append([picks[b].id, picks[b].length, f"{e:.3g}", f"{lt:.3g}", "yes" if finite_alone else "NO"])
    worst_e, worst_l = max(eff), max(lat)
    b_e, b_l = int(np.argmax(eff)), int(np.argmax(lat))
    padded_to = int(x0.shape[1])
    values = {"born_in": "model", "effective_diff": worst_e, "latent_diff": worst_l, "padded_to": padded_to,
              "key": f"diff {worst_e:.1e} / {worst_l:.1e} latent"}
    tables = {"Model output alone vs padded": table(["id", "frames", "zero padding: max |diff|", "noise in padding: max |diff|", "finite alone"], rows)}
    notes = ""
    if only_batch:
        notes += f"; NaN/Inf in the batch only, for sample(s) {only_batch}"
    if alone_bad:
        notes += f"; the output of sample(s) {alone_bad} is not finite alone (see the forward check)"
    if worst_e > atol:
        call = _locate(zero, atol)
        where, hint, located = _describe(model, call, zero.last, atol)
        values.update(located, located_by="zero padding")
        return Finding(
            check="", status=status_from(True),
            summary=(f"the model mixes padded frames into valid ones: sample {picks[b_e].id}'s output ({picks[b_e].length} frames) "
                     f"differs by {worst_e:.3g} alone and zero-padded to {padded_to} frames in a batch with a longer sample; "
                     f"born in {where}{notes}"),
            hint=hint, values=values, samples=[picks[b].id for b in range(judged) if eff[b] > atol], tables=tables)
    if worst_l > atol:
        call = _locate(noisy, atol)
        where, hint, located = _describe(model, call, noisy.last, atol)
        values.update(located, located_by="noise in padded frames")
        return Finding(
            check="", status=status_from(False, True),
            summary=(f"no effect under the configured zero padding (max diff {worst_e:.1e}); with noise in the padded frames "
                     f"sample {picks[b_l].id}'s output changes by {worst_l:.3g}, first at {where}: it would bite with non-zero "
                     f"padding or a transform that shifts padded values{notes}"),
            hint=hint, values=values, samples=[picks[b].id for b in range(judged) if lat[b] > atol], tables=tables)
    values.update(module=None, module_type=None)
    return Finding(
        check="", status=status_from(False, bool(alone_bad)),
        summary=(f"{judged} probe samples ({', '.join(str(picks[b].length) for b in range(judged))} frames): output identical alone and "
                 f"zero-padded to {padded_to} frames (max diff {worst_e:.1e}), unchanged by noise in padded frames "
                 f"(max {worst_l:.1e}){notes}"),
        hint="the output is not finite: see the forward check" if alone_bad else "", values=values, samples=alone_bad, tables=tables)
