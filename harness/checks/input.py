"""Checks that hold for any model and dataset: the components keep their contracts, and the
model input (the dataset's output after the user's batch_transform) is finite, bounded and
normalized once, and the dataset's output on dev/test stays on the scale of train. Pure
functions: samples, callables and thresholds in, a Finding out.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from data.dataset import Batch, collate
from data.layout import describe_column
from harness.findings import Finding, status_from
from model.components import ComponentError
from model.ctc import ctc_loss_per_sample
from model.masking import pad_mask

STD_NAMES = ("std", "var", "scale", "sigma")  # attribute names that hold a divisor


# ----------------------------------------------------------------------------- contract


def check_contract(cfg, build_model, scan=None, load_transform=None) -> Finding:
    """The configured model, dataset and batch_transform load and keep their contracts
    (model/components.py). build_model() -> nn.Module may raise ComponentError; `scan` is the
    user dataset's item scan (its entries' errors are items that break the item contract)."""
    start = time.perf_counter()
    fails, parts, samples = [], [], []
    try:
        model = build_model()
        parts.append(f"model {cfg.model!r} keeps the CTC contract")
    except (ComponentError, TypeError, ValueError) as exc:
        model = None
        fails.append(str(exc))
    if scan is not None:
        bad = [f for f in scan.files if f.error]
        if bad:
            fails.append(f"{len(bad)} of {len(scan.files)} dataset item(s) break the item contract; first: {bad[0].error}")
            samples += [f.id for f in bad]
        widths = {f.width for f in scan.files if not f.error}
        parts.append(f"dataset {cfg.dataset!r}: {len(scan.files) - len(bad)} items, F={sorted(widths)}")
    if load_transform is not None and cfg.batch_transform is not None:
        try:
            load_transform()
            parts.append(f"batch_transform {cfg.batch_transform!r} loads")
        except ComponentError as exc:
            fails.append(str(exc))
    return Finding(
        check="contract",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or "; ".join(parts),
        hint="make each named component keep the contract written in model/components.py (CTCModel, DatasetItem, BatchTransform)" if fails else "",
        values={"key": "kept" if not fails else "broken", "parameters": sum(p.numel() for p in model.parameters()) if model is not None else None},
        samples=samples,
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------- model input
#
# check_model_input runs one small diagnosis after another on the same probe batch and merges
# what they found: each returns a Diagnosis (sentences that fail or warn, measured values, the
# offending samples, features and locations, and the hint that goes with it).


@dataclass
class Diagnosis:
    """What one diagnosis of the model input found."""

    fails: list[str] = field(default_factory=list)
    warns: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    locations: list[dict] = field(default_factory=list)
    hint: str = ""  # what to do, when this diagnosis fails or warns


@dataclass
class _Probe:
    """The probe batch as arrays: x0 the dataset's output (collated, zero-padded), x1 the model
    input (after to_input), both [B, T, F] float64; the first n_train samples are from train."""

    batch: Batch
    out: Batch
    x0: np.ndarray
    x1: np.ndarray
    lengths: np.ndarray  # [B]
    valid: np.ndarray  # [B, T] bool, True on frames within the sample
    ids: list[str]
    name0: Callable[[int], str]  # channel of x0 -> feature name
    name1: Callable[[int], str]  # channel of x1 -> feature name
    n_train: int
    transform: str | None  # the configured batch_transform's name

    @property
    def same_width(self) -> bool:
        return self.x1.shape == self.x0.shape

    @functools.cached_property
    def nonfinite0(self) -> np.ndarray:
        """[B, T, F] bool: NaN/Inf in x0 on valid frames."""
        return ~np.isfinite(self.x0) & self.valid[..., None]

    @functools.cached_property
    def nonfinite1(self) -> np.ndarray:
        """[B, T, F] bool: NaN/Inf in x1 on valid frames."""
        return ~np.isfinite(self.x1) & self.valid[..., None]

    def share(self, mask: np.ndarray) -> float:
        """Share of the valid values of a [B, T, F] array where mask holds."""
        return float(mask.sum() / max(1, int(self.valid.sum()) * mask.shape[2]))

    @functools.cached_property
    def finite0(self) -> np.ndarray:
        """x0 with NaN/Inf and padded frames set to 0."""
        return _finite_valid(self.x0, self.valid)

    @functools.cached_property
    def finite1(self) -> np.ndarray:
        """x1 with NaN/Inf and padded frames set to 0."""
        return _finite_valid(self.x1, self.valid)

    def where(self, b: int, f: int, j: int, name=None) -> dict:
        """A location: sample b, frame f, feature j (named by `name`, default the model input's names)."""
        return {"sample": self.ids[b], "frame": int(f), "feature": (name or self.name1)(int(j))}


def _finite_valid(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A copy of [B, T, F] x with NaN/Inf and the frames not valid ([B, T] bool) set to 0."""
    out = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    out[~valid] = 0.0
    return out


def _namer(width: int, columns=None):
    """Feature index -> name: the layout's names where the features follow it, else feature[j]."""
    if columns is not None:
        cols = np.asarray(columns)
        return lambda j: describe_column(int(cols[j]))
    return lambda j: f"feature[{j}]"


def _probe(samples: list, to_input, columns, transform_name: str | None, n_train: int | None) -> _Probe:
    """Collate the samples, apply to_input, and hold both as arrays."""
    batch = collate(samples)
    out = to_input(batch)
    x0 = batch.features.numpy().astype(np.float32, copy=False)  # float32 as the model sees it; fits cast to float64
    x1 = out.features.detach().float().cpu().numpy()
    lengths = batch.lengths.numpy()
    name0 = _namer(x0.shape[2], columns)
    return _Probe(
        batch=batch, out=out, x0=x0, x1=x1, lengths=lengths, valid=np.arange(x0.shape[1])[None, :] < lengths[:, None],
        ids=list(batch.ids), name0=name0, name1=name0 if x1.shape == x0.shape else _namer(x1.shape[2]),
        n_train=len(samples) if n_train is None else int(n_train), transform=transform_name,
    )


# ---------------------------------------------------------------- the divisor behind a division


def find_divisors(obj, width: int, depth: int = 2, prefix: str = "dataset") -> list[tuple[str, np.ndarray]]:
    """Attributes of a dataset object (and of the objects it holds, `depth` levels down) that look
    like per-channel divisors: a float torch tensor or numpy array of `width` entries whose name
    contains std/var/scale/sigma. [(dotted name, values as float64)]."""
    found, seen = [], set()

    def visit(o, name, level):
        if id(o) in seen or level > depth:
            return
        seen.add(id(o))
        for attr, value in list(getattr(o, "__dict__", {}).items()):
            full = f"{name}.{attr}"
            if torch.is_tensor(value):
                value = value.detach().cpu().numpy()
            if isinstance(value, np.ndarray):
                if value.ndim == 1 and value.shape[0] == width and value.dtype.kind == "f" and any(s in attr.lower() for s in STD_NAMES):
                    found.append((full, value.astype(np.float64)))
            elif hasattr(value, "__dict__") and not isinstance(value, type) and type(value).__module__ not in ("builtins",):
                visit(value, full, level + 1)

    visit(obj, prefix, 0)
    return found


def zero_divisors(obj, width: int, depth: int = 2, prefix: str = "dataset") -> list[tuple[str, np.ndarray]]:
    """The divisors of find_divisors that are 0 somewhere: (name, channel indices where |value| <= 1e-12)."""
    zeros = [(name, np.flatnonzero(np.abs(v) <= 1e-12)) for name, v in find_divisors(obj, width, depth, prefix)]
    return [(name, z) for name, z in zeros if z.size]


def _divisor_at(divisors: list[tuple[str, np.ndarray]], j: int) -> dict | None:
    """The smallest divisor at channel j, if below 1 (a division by it amplifies): {attribute, index, value}."""
    if not divisors:
        return None
    name, v = min(divisors, key=lambda d: abs(float(d[1][j])))
    if not abs(float(v[j])) < 1.0:
        return None
    return {"attribute": name, "index": int(j), "value": float(v[j])}


def _divisor_clause(divisor: dict | None, zero_std: float) -> str:
    """What a divisor at the offending channel says, e.g. `dataset.feature_std[5] = 1e-08: the
    channel is constant over the train split; x / 1e-08`."""
    if divisor is None:
        return ("no per-channel divisor below 1 at that channel on the dataset object (an attribute named "
                f"{'/'.join(STD_NAMES)} with one entry a channel): find what scales it")
    v = divisor["value"]
    what = "the channel is constant over the train split" if abs(v) <= zero_std else "the channel barely moves over the train split"
    if v == 0:  # a finite output: the division adds a token epsilon to the std (std + 1e-8)
        return f"{divisor['attribute']}[{divisor['index']}] = 0: {what}; a finite output there means x / (0 + a token epsilon)"
    return f"{divisor['attribute']}[{divisor['index']}] = {v:.3g}: {what}; x / {v:.3g}"


# ---------------------------------------------------------------- non-finite values, where born


def diagnose_nonfinite(p: _Probe, dataset_obj=None) -> Diagnosis:
    """NaN/Inf in the model input, traced to where it is born: the dataset's output (a per-channel
    division by a zero std, or missing values left as NaN) or the batch_transform."""
    nf0, nf1 = p.nonfinite0, p.nonfinite1
    d = Diagnosis(values={"nonfinite_fraction": p.share(nf1)})
    if not nf1.any():
        return d
    d.locations = [p.where(b, f, j) for b, f, j in np.argwhere(nf1)[:20]]
    cause, born = _born_in_dataset(p, nf0, dataset_obj) if nf0.any() else _born_in_transform(p, nf1)
    d.fails.append(f"model input holds {int(nf1.sum())} non-finite value(s) ({p.share(nf1):.1%}): {cause}")
    d.values.update(born.values)
    d.samples, d.features, d.hint = born.samples, born.features, born.hint
    return d


def _born_in_dataset(p: _Probe, nf0: np.ndarray, dataset_obj) -> tuple[str, Diagnosis]:
    """The dataset's output is already non-finite: in whole channels (a division by a zero std,
    with the dataset attribute that holds the zeros) or here and there (missing values)."""
    d = Diagnosis(values={"born_in": "dataset"})
    chans = np.flatnonzero(nf0.any(axis=(0, 1)))
    everywhere = np.flatnonzero(nf0.sum(axis=(0, 1)) == p.valid.sum())
    d.samples = [p.ids[b] for b in np.flatnonzero(nf0.any(axis=(1, 2)))]
    d.features = [p.name0(int(j)) for j in chans[:50]]
    kind = "NaN" if not np.isinf(p.x0[nf0]).any() else "NaN/Inf"
    if len(everywhere) == len(chans):
        cause = (
            f"the dataset returns {kind} in {len(chans)} channel(s), in every frame of every probe sample: a per-channel "
            "statistic divides by ~0 there, (x - mean) / std with std = 0 on channels that are constant over the data "
            "its statistics come from" + (" ((0 - 0) / 0 = NaN)" if kind == "NaN" else "")
        )
        if dataset_obj is not None:
            zeros = zero_divisors(dataset_obj, p.x0.shape[2])
            for attr, zero in zeros:
                cause += f"; {attr} is 0 at {len(zero)} channel(s), {len(np.intersect1d(zero, chans))} of them the non-finite ones"
            d.values["zero_divisors"] = {attr: int(len(z)) for attr, z in zeros}
        d.values["division_by_zero_std"] = True
        d.hint = "floor every std the dataset divides by (std = max(std, 1e-3)) and zero the channels constant over the train split"
    else:
        b, f, j = np.argwhere(nf0)[0]
        cause = (
            f"the dataset returns {kind} for {len(d.samples)} of {len(p.ids)} probe samples ({p.share(nf0):.1%} of their values), "
            f"first at sample {p.ids[b]} frame {int(f)} {p.name0(int(j))}: the loader's output must be finite (missing landmarks left as NaN?)"
        )
        d.hint = "impute missing landmarks in the dataset (forward-fill or zeros) before any statistic; its output must be finite"
    return cause, d


def _born_in_transform(p: _Probe, nf1: np.ndarray) -> tuple[str, Diagnosis]:
    """The dataset's output is finite and the batch_transform makes it non-finite: a per-sample
    std of 0, on channels (or whole samples) constant within the sample."""
    d = Diagnosis(values={"born_in": "batch_transform"},
                  hint="floor the std batch_transform divides by, and take its statistics over valid frames only")
    rows = np.flatnonzero(nf1.any(axis=(1, 2)))
    d.samples = [p.ids[b] for b in rows]
    cause = f"batch_transform {p.transform!r} turns finite dataset output into NaN/Inf for {len(rows)} of {len(p.ids)} probe samples"
    if p.same_width:
        const = []
        for b in rows:
            x = p.x0[b, : p.lengths[b]]
            with np.errstate(all="ignore"):
                const += np.flatnonzero((x.std(axis=0) < 1e-6) & nf1[b].any(axis=0)).tolist()
            if x.std() < 1e-6:
                cause += f"; sample {p.ids[b]} is constant over all its features (its std is 0)"
        if const:
            chans = sorted(set(const))
            d.features = [p.name1(j) for j in chans[:50]]
            cause += (
                f": it divides by a ~0 std, the {len(chans)} channel(s) are constant within those samples "
                "(e.g. a hand never seen in the sample, filled with zeros); floor the std"
            )
    return cause, d


# ---------------------------------------------------------------- spread by the transform


def diagnose_spread(p: _Probe) -> Diagnosis:
    """The dataset's NaN/Inf, spread by the batch_transform to more of the input (one statistic
    over a whole sample makes every value of that sample NaN)."""
    nf0, nf1 = p.nonfinite0, p.nonfinite1
    if not (p.transform and nf0.any() and nf1.any()):
        return Diagnosis()
    before, after = p.share(nf0), p.share(nf1)
    if after <= 1.5 * before:
        return Diagnosis()
    return Diagnosis(
        fails=[f"batch_transform {p.transform!r} then spreads them from {before:.1%} to {after:.1%} of the input values "
               "(one statistic over each whole sample)"],
        values={"nonfinite_spread": [before, after]},
    )


# ---------------------------------------------------------------- dev/test against the train scale


def _train_scale(p: _Probe, floor: float) -> np.ndarray:
    """[F] per channel: max |x| of the dataset's output over the train probe samples' valid frames
    (finite values), floored at `floor`."""
    train = p.valid.copy()
    train[p.n_train :] = False
    seen = np.abs(p.finite0[train])
    return np.maximum(seen.max(axis=0) if seen.size else np.zeros(p.x0.shape[2]), floor)


def _beyond_train_scale(p: _Probe, thresholds: dict) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each dev/test probe sample b: (|x| / its channel's train scale over its valid frames
    [T_b, F], [F] bool: channels at or above `unbounded_ratio` in some frame)."""
    scale = _train_scale(p, thresholds["train_scale_floor"])
    out = {}
    for b in range(p.n_train, len(p.ids)):
        r = np.abs(p.finite0[b, : p.lengths[b]]) / scale
        out[b] = (r, (r >= thresholds["unbounded_ratio"]).any(axis=0))
    return out


def diagnose_dataset_unbounded(p: _Probe, thresholds: dict, beyond: dict, dataset_obj=None) -> Diagnosis:
    """A dev/test sample whose dataset output is `unbounded_ratio` times its channel's train scale or
    more (`beyond`: _beyond_train_scale): a statistic of the train split (a std ~0 there) divides a
    value that moves on dev/test. Judged on the dataset's output, so a batch_transform or clamp
    that hides it later does not; the divisor is looked up on the dataset object, and what the
    transform does to the rest of the sample is measured."""
    limit, floor = thresholds["unbounded_ratio"], thresholds["train_scale_floor"]
    d = Diagnosis(values={"dev_test_ratio": float(max((r.max() for r, _ in beyond.values() if r.size), default=0.0))})
    worst = {}  # sample -> (ratio, frame, channel): its largest ratio, where at or above the limit
    for b, (r, hit) in beyond.items():
        if hit.any():
            f, j = np.unravel_index(int(np.argmax(r)), r.shape)
            worst[b] = (float(r[f, j]), int(f), int(j))
    if not worst:
        return d
    order = sorted(worst, key=lambda k: -worst[k][0])
    b = order[0]
    ratio, f, j = worst[b]
    chans = np.flatnonzero(np.any([beyond[k][1] for k in order], axis=0))
    scale = _train_scale(p, floor)
    divisor = _divisor_at(find_divisors(dataset_obj, p.x0.shape[2]), j) if dataset_obj is not None else None
    text = (
        f"the dataset's output on dev/test is unbounded: |x| = {abs(p.x0[b, f, j]):.3g} at sample {p.ids[b]} frame {f} {p.name0(j)}, "
        f"{ratio:.2g} times that channel's train scale (max |x| over the {p.n_train} train probe sample(s), floored at {floor:g}: "
        f"{scale[j]:.3g}); {len(order)} of {len(p.ids) - p.n_train} dev/test probe sample(s) reach >= {limit:g} times it, in "
        f"{len(chans)} channel(s). {_divisor_clause(divisor, thresholds['zero_std'])}"
    )
    effect, measured = _transform_effect(p, b, f, j, beyond[b][1], thresholds)
    d.fails.append(text + (f". {effect}" if effect else ""))
    d.values.update({"born_in": "dataset", "unbounded_ratio": ratio, "unbounded_channels": int(len(chans))})
    if divisor is not None:
        d.values["divisor"] = divisor
    if measured:
        d.values["transform_effect"] = measured
    d.samples = [p.ids[k] for k in order]
    d.features = [p.name0(int(c)) for c in chans[:50]]
    d.locations = [p.where(k, worst[k][1], worst[k][2], p.name0) for k in order[:20]]
    d.hint = ("floor every std the dataset divides by (std = max(std, 1e-3)) and zero (or drop) the channels constant over the "
              "train split; a token epsilon (std + 1e-8) only moves the division by zero to dev/test, where the channel moves")
    return d


def _transform_effect(p: _Probe, b: int, f: int, j: int, outliers: np.ndarray, thresholds: dict) -> tuple[str, dict]:
    """What the batch_transform does to sample b around its outlier (channel j, frame f; `outliers`
    [F] its channels beyond the limit): the spread (std over valid frames) of its other channels in
    the dataset's output and in the model input, their ratio, and the outlier's model-input value."""
    if not p.transform or not p.same_width:
        return "", {}
    n = int(p.lengths[b])
    rest = ~outliers
    before, after = p.x0[b, :n][:, rest], p.x1[b, :n][:, rest]
    if not (np.isfinite(before).all() and np.isfinite(after).all()):
        return "", {}
    s0, s1 = before.std(axis=0), after.std(axis=0)
    live = s0 > 1e-12
    if not live.any():
        return "", {}
    with np.errstate(divide="ignore"):
        factors = s0[live] / s1[live]
    factor = float(np.median(factors))
    lo, hi = np.percentile(factors, [10, 90])
    uniform = bool(np.isfinite(hi) and hi <= 1.1 * lo)
    if uniform and factor >= 1:
        verb = f"divides the whole sample by ~{factor:.2g}"
    elif uniform:
        verb = f"multiplies the whole sample by ~{1 / factor:.2g}"
    else:
        verb = f"rescales each channel of that sample on its own (dividing by {lo:.2g} to {hi:.2g}, median {factor:.2g})"
    after_std, before_std = float(np.median(s1[live])), float(np.median(s0[live]))
    text = (
        f"batch_transform {p.transform!r} then {verb}: its other {int(rest.sum())} channels have median std {after_std:.2g} "
        f"in the model input, {before_std:.2g} in the dataset's output" + (" (no signal left)" if after_std < thresholds["zero_std"] else "")
    )
    v1 = float(p.x1[b, f, j])
    text += f"; the outlier itself is {v1:.3g} in the model input"
    a, c, _ = _affine_fit(before.ravel(), after.ravel())
    expected = a * p.x0[b, f, j] + c  # what the transform's scale and shift alone give the outlier
    if uniform and abs(v1) < abs(expected) and abs(expected - v1) > 1e-3 * max(1.0, abs(expected)):
        text += f" (a clamp hides it: the transform's scale and shift alone give {expected:.3g})"
    elif abs(v1) <= thresholds["max_abs_input"]:
        text += " (bounded there: only the dataset's output shows it)"
    measured = {"factor": factor, "other_channels": int(rest.sum()), "std_before": before_std, "std_after": after_std, "outlier_in_model_input": v1}
    return text, measured


# ---------------------------------------------------------------- unbounded values


def diagnose_bounded(p: _Probe, thresholds: dict, beyond: dict | None = None) -> Diagnosis:
    """The model input within max_abs_input; with a batch_transform, the dataset's output before it
    too (warned: the transform scales it back, and the rest of that sample with it), except in the
    dev/test samples that diagnose_dataset_unbounded fails (`beyond`: _beyond_train_scale)."""
    limit = thresholds["max_abs_input"]
    finite1 = p.finite1
    max_abs = float(np.abs(finite1).max()) if finite1.size else 0.0
    d = Diagnosis(values={"max_abs": max_abs})
    if max_abs > limit:
        b, f, j = np.unravel_index(int(np.argmax(np.abs(finite1))), finite1.shape)
        d.samples, d.features, d.locations = [p.ids[b]], [p.name1(int(j))], [p.where(b, f, j)]
        d.fails.append(f"model input not bounded: |x| = {max_abs:.3g} > {limit:g} at sample {p.ids[b]} frame {int(f)} {p.name1(int(j))}")
        d.hint = "find what scales the named feature (the dataset's normalization or batch_transform); keep the model input within a few units"
        return d
    if not (p.transform and p.same_width):
        return d
    finite0 = np.abs(p.finite0)
    for b in beyond or {}:  # that sample's failure already names its unbounded values
        finite0[b] = 0.0
    raw_max = float(finite0.max()) if finite0.size else 0.0
    if raw_max > limit:
        b, f, j = np.unravel_index(int(np.argmax(finite0)), finite0.shape)
        d.warns.append(
            f"the dataset's output is unbounded before batch_transform: |x| = {raw_max:.3g} at sample {p.ids[b]} frame {int(f)} "
            f"{p.name0(int(j))}; batch_transform {p.transform!r} scales it back, and every other channel of that sample with it"
        )
        d.values["unbounded_before_transform"] = raw_max
        d.samples, d.features = [p.ids[b]], [p.name0(int(j))]
        d.hint = ("zero (or drop) the channels that are ~constant over the train split: a std floor alone divides a channel "
                  "that never moves in train by the floor where it does move (dev/test)")
    return d


# ---------------------------------------------------------------- no signal


def diagnose_no_signal(p: _Probe) -> Diagnosis:
    """Every valid value of the model input the same: nothing to learn but the label prior."""
    seen = p.x1[p.valid]  # (valid frames, F)
    if not (seen.size > 1 and np.isfinite(seen).all() and float(seen.std()) < 1e-6):
        return Diagnosis()
    had = p.x0[p.valid]
    by_transform = bool(p.transform and had.size and np.isfinite(had).all() and float(had.std()) > 1e-6)
    where = (f"batch_transform {p.transform!r} makes it so: the dataset's output has std {float(np.nanstd(had)):.3g}"
             if by_transform else "the dataset yields it")
    return Diagnosis(
        fails=[f"the model input carries no signal: every valid value of the {len(p.ids)} probe samples is {float(seen.flat[0]):.3g}; "
               f"{where}. A model can learn only the label prior from it (CTC's all-blank plateau)"],
        values={"no_signal": True, "born_in": "batch_transform" if by_transform else "dataset"},
        hint="look at what the dataset and batch_transform do to the features (a mask the wrong way round, a multiplication by 0)",
    )


# ---------------------------------------------------------------- double z-score


def _affine_fit(x0: np.ndarray, x1: np.ndarray) -> tuple[float, float, float]:
    """x1 ~ a * x0 + b over the finite values of one sample: (a, b, max residual)."""
    ok = np.isfinite(x0) & np.isfinite(x1)
    e, g = x0[ok].astype(np.float64), x1[ok].astype(np.float64)
    if e.size < 2 or e.std() == 0:
        return 1.0, 0.0, float("inf")
    de = e - e.mean()
    a = float(de @ (g - g.mean()) / (de @ de))  # least squares, closed form
    b = float(g.mean() - a * e.mean())
    return a, b, float(np.abs(a * e + b - g).max())


def _standardised(x: np.ndarray, valid: np.ndarray) -> tuple[bool, float]:
    """Whether per-channel values over the valid frames look z-scored: (verdict, share of
    non-constant channels with |mean| < 0.25 and std in 0.5..2)."""
    v = x[valid]  # (frames, F)
    v = np.where(np.isfinite(v), v, np.nan)
    with np.errstate(all="ignore"):
        mean, std = np.nanmean(v, axis=0), np.nanstd(v, axis=0)
    live = np.isfinite(std) & (std > 1e-6)
    if not live.any():
        return False, 0.0
    share = float(((np.abs(mean[live]) < 0.25) & (std[live] > 0.5) & (std[live] < 2.0)).mean())
    return share > 0.8, share


def diagnose_double_zscore(p: _Probe, to_input, model=None) -> Diagnosis:
    """A batch_transform that z-scores each sample again although the dataset's output (on the
    train samples) is already standardised: warned, with whether it changes this model's output
    measured on finite input (_does_it_matter)."""
    if not (p.transform and p.same_width):
        return Diagnosis()
    # judged on finite input: where the dataset's output is non-finite, what a std floor would
    # give there ((0 - 0) / floor = 0); the transform of a NaN batch says nothing about itself
    x0f = p.finite0
    x1f = to_input(_replace_all(p.batch, x0f)).features.detach().float().cpu().numpy()
    if np.allclose(np.where(p.valid[..., None], x1f, 0), x0f, atol=1e-6):
        return Diagnosis()
    from_train = np.arange(len(p.ids))[:, None] < p.n_train
    std0, share0 = _standardised(x0f, p.valid & from_train)
    d = Diagnosis(values={"dataset_output_standardised_share": share0})
    fits = [_affine_fit(x0f[b, :n], x1f[b, :n]) for b, n in enumerate(p.lengths)]
    affine = all(res < 1e-3 * max(1.0, abs(a)) for a, _, res in fits)
    z = []  # each sample z-scored: over its valid frames, or over its padded row (statistics that include padding)
    for b, n in enumerate(p.lengths):
        rows = [v[np.isfinite(v)] for v in (x1f[b, :n], x1f[b])]
        z.append(any(v.size > 1 and abs(v.mean()) < 0.1 and 0.8 < v.std() < 1.25 for v in rows))
    if std0 and affine and all(z):
        a, shift, _ = fits[0]
        text = (
            f"normalized twice: the dataset's output is already standardised ({share0:.0%} of its channels have mean ~0, "
            f"std ~1) and batch_transform {p.transform!r} z-scores each sample again (e.g. scale {a:.3g}, shift {shift:.3g})"
        )
        if model is not None:
            text += "; " + _does_it_matter(model, p.out, x0f, to_input, p.batch)
        d.warns.append(text)
        d.values["double_normalization"] = True
        d.hint = "normalize in one place: the dataset, or the batch_transform"
    return d


# ---------------------------------------------------------------- the check


def _merge(diagnoses: list[Diagnosis]) -> Diagnosis:
    """One Diagnosis from several, in order: sentences, samples, features and locations
    concatenated (samples and features without repeats); a value keeps the first diagnosis's;
    the hint is that of the first diagnosis that fails, else of the first that warns."""
    total = Diagnosis()
    for d in diagnoses:
        total.fails += d.fails
        total.warns += d.warns
        total.samples += d.samples
        total.features += d.features
        total.locations += [w for w in d.locations if w not in total.locations]
        for key, value in d.values.items():
            total.values.setdefault(key, value)
    total.samples = list(dict.fromkeys(total.samples))
    total.features = list(dict.fromkeys(total.features))
    total.hint = next((d.hint for d in diagnoses if d.fails), "") or next((d.hint for d in diagnoses if d.warns), "")
    return total


def check_model_input(samples: list, to_input, thresholds: dict, model=None, dataset_obj=None, columns=None, transform_name: str | None = None,
                      n_train: int | None = None) -> Finding:
    """The model input of these samples (collated dataset output -> to_input, which moves it to
    the device and applies the batch_transform) is finite, bounded, carries signal and is
    normalized once. The first `n_train` samples (default all) are from the train split, whose
    statistics a dataset-level z-score uses; the rest are dev/test extremes, whose dataset output
    is judged against the train samples' scale, channel by channel, before any transform."""
    start = time.perf_counter()
    p = _probe(samples, to_input, columns, transform_name, n_train)
    beyond = _beyond_train_scale(p, thresholds)
    found = _merge([
        diagnose_nonfinite(p, dataset_obj),
        diagnose_spread(p),
        diagnose_dataset_unbounded(p, thresholds, beyond, dataset_obj),
        diagnose_no_signal(p),
        diagnose_bounded(p, thresholds, beyond),
        diagnose_double_zscore(p, to_input, model),
    ])
    values = {"probe_samples": len(p.ids), **found.values}
    max_abs = values["max_abs"]
    values["key"] = (f"max|x| {max_abs:.1f}" + (f", {values['nonfinite_fraction']:.1%} non-finite" if values["nonfinite_fraction"] else "")
                     + (f", dev/test {values['unbounded_ratio']:.2g}x train scale" if "unbounded_ratio" in values else ""))
    values["locations"] = found.locations
    return Finding(
        check="model_input",
        status=status_from(bool(found.fails), bool(found.warns)),
        summary="; ".join(found.fails + found.warns)
        or f"{len(p.ids)} probe samples: finite, max |x| {max_abs:.2f}" + (f", batch_transform {transform_name!r} applied" if transform_name else ""),
        hint=found.hint,
        values=values,
        samples=found.samples,
        features=found.features,
        seconds=time.perf_counter() - start,
    )


def _replace_all(batch, x: np.ndarray):
    """The batch with features x ([B, T, F])."""
    return dataclasses.replace(batch, features=torch.from_numpy(x.astype(np.float32)))


def _replace_features(batch, b: int, x: np.ndarray):
    """Sample b alone (no padding) with features x[b]."""
    n = int(batch.lengths[b])
    return dataclasses.replace(
        batch, features=torch.from_numpy(x[b : b + 1, :n].astype(np.float32)), lengths=batch.lengths[b : b + 1],
        targets=batch.targets[int(batch.target_lengths[:b].sum()) : int(batch.target_lengths[: b + 1].sum())],
        target_lengths=batch.target_lengths[b : b + 1], ids=batch.ids[b : b + 1], glosses=batch.glosses[b : b + 1],
    )


@torch.no_grad()
def _does_it_matter(model, out, x0f: np.ndarray, to_input, batch) -> str:
    """Counterfactual on finite input: the model's log-probs and loss with the second z-score and without it."""
    model.eval()
    device = out.features.device
    plain = _replace_all(batch, x0f).to(device)
    twice = to_input(_replace_all(batch, x0f))
    lp1, ol1 = model(twice.features, twice.lengths)
    lp0, ol0 = model(plain.features, plain.lengths)
    valid = pad_mask(ol0, lp0.shape[1])
    diff = float((lp1 - lp0).abs()[valid].max())
    l1 = float(ctc_loss_per_sample(lp1, ol1, twice.targets, twice.target_lengths).mean())
    l0 = float(ctc_loss_per_sample(lp0, ol0, plain.targets, plain.target_lengths).mean())
    rel = abs(l1 - l0) / max(abs(l0), 1e-12)
    if diff < 1e-3 and rel < 0.02:
        return (
            f"by itself harmless for this model: on finite input its log-probs differ by at most {diff:.1e} with and without "
            f"the second z-score (loss {l1:.4f} vs {l0:.4f}), so it is not what breaks training"
        )
    return f"it changes this model's output: log-probs differ by up to {diff:.3g}, loss {l1:.4f} vs {l0:.4f} with and without it"
