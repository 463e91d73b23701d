"""Checks that hold for any model and dataset: the components keep their contracts, and the
model input (the dataset's output after the user's batch_transform) is finite, bounded and
normalized once. Pure functions: samples, callables and thresholds in, a Finding out.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from data.dataset import collate
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


def _namer(width: int, columns=None):
    """Feature index -> name: the layout's names where the features follow it, else feature[j]."""
    if columns is not None:
        cols = np.asarray(columns)
        return lambda j: describe_column(int(cols[j]))
    return lambda j: f"feature[{j}]"


def zero_divisors(obj, width: int, depth: int = 2, prefix: str = "dataset") -> list[tuple[str, np.ndarray]]:
    """Attributes of a dataset object (and of the objects it holds, `depth` levels down) that look
    like per-channel divisors (a name with std/var/scale/sigma, F entries): (name, indices <= 1e-12)."""
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
                    zero = np.flatnonzero(np.abs(value) <= 1e-12)
                    if zero.size:
                        found.append((full, zero))
            elif hasattr(value, "__dict__") and not isinstance(value, type) and type(value).__module__ not in ("builtins",):
                visit(value, full, level + 1)

    visit(obj, prefix, 0)
    return found


def _affine_fit(x0: np.ndarray, x1: np.ndarray) -> tuple[float, float, float]:
    """x1 ~ a * x0 + b over the finite values of one sample: (a, b, max residual)."""
    ok = np.isfinite(x0) & np.isfinite(x1)
    e, g = x0[ok].astype(np.float64), x1[ok].astype(np.float64)
    if e.size < 2 or e.std() == 0:
        return 1.0, 0.0, float("inf")
    a, b = np.polyfit(e, g, 1)
    return float(a), float(b), float(np.abs(a * e + b - g).max())


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


def check_model_input(samples: list, to_input, thresholds: dict, model=None, dataset_obj=None, columns=None, transform_name: str | None = None,
                      n_train: int | None = None) -> Finding:
    """The model input of these samples (collated dataset output -> to_input, which moves it to
    the device and applies the batch_transform) is finite and bounded; a non-finite value is
    traced to where it is born (the dataset, or the transform) and, for a dataset-level division
    by a zero std, to the divisor and its channels; a second z-score in the transform is named,
    and whether it matters for this model is measured (model output with and without it).
    The first `n_train` samples (default all) are from the train split, whose statistics a
    dataset-level z-score uses: whether the output is already standardised is judged on them."""
    start = time.perf_counter()
    batch = collate(samples)
    out = to_input(batch)
    x0 = batch.features.numpy().astype(np.float64)
    x1 = out.features.detach().float().cpu().numpy().astype(np.float64)
    lengths = batch.lengths.numpy()
    valid = np.arange(x0.shape[1])[None, :] < lengths[:, None]
    ids = list(batch.ids)
    name0 = _namer(x0.shape[2], columns)
    same_width = x1.shape == x0.shape
    name1 = name0 if same_width else _namer(x1.shape[2])
    fails, warns, bad_samples, bad_features, locations = [], [], [], [], []
    values = {"probe_samples": len(ids)}

    nf0 = ~np.isfinite(x0) & valid[..., None]
    nf1 = ~np.isfinite(x1) & valid[..., None]
    n_valid0, n_valid1 = max(1, int(valid.sum()) * x0.shape[2]), max(1, int(valid.sum()) * x1.shape[2])
    values["nonfinite_fraction"] = float(nf1.sum() / n_valid1)
    if nf1.any():
        for b, f, j in np.argwhere(nf1)[:20]:
            locations.append({"sample": ids[b], "frame": int(f), "feature": name1(int(j))})
        if nf0.any():
            chans = np.flatnonzero(nf0.any(axis=(0, 1)))
            everywhere = np.flatnonzero(nf0.sum(axis=(0, 1)) == valid.sum())
            bad_samples += [ids[b] for b in np.flatnonzero(nf0.any(axis=(1, 2)))]
            bad_features += [name0(int(j)) for j in chans[:50]]
            kind = "NaN" if not np.isinf(x0[nf0]).any() else "NaN/Inf"
            if len(everywhere) == len(chans):
                cause = (
                    f"the dataset returns {kind} in {len(chans)} channel(s), in every frame of every probe sample: a per-channel "
                    "statistic divides by ~0 there, (x - mean) / std with std = 0 on channels that are constant over the data "
                    "its statistics come from" + (" ((0 - 0) / 0 = NaN)" if kind == "NaN" else "")
                )
                if dataset_obj is not None:
                    divisors = zero_divisors(dataset_obj, x0.shape[2])
                    for attr, zero in divisors:
                        overlap = len(np.intersect1d(zero, chans))
                        cause += f"; {attr} is 0 at {len(zero)} channel(s), {overlap} of them the non-finite ones"
                    values["zero_divisors"] = {attr: int(len(z)) for attr, z in divisors}
                values["division_by_zero_std"] = True
            else:
                first = np.argwhere(nf0)[0]
                cause = (
                    f"the dataset returns {kind} for {len(set(bad_samples))} of {len(ids)} probe samples "
                    f"({nf0.sum() / n_valid0:.1%} of their values), first at sample {ids[first[0]]} frame {int(first[1])} "
                    f"{name0(int(first[2]))}: the loader's output must be finite (missing landmarks left as NaN?)"
                )
            if transform_name and nf1.sum() / n_valid1 > 1.5 * nf0.sum() / n_valid0:
                cause += (
                    f"; batch_transform {transform_name!r} then spreads them from {nf0.sum() / n_valid0:.1%} to "
                    f"{nf1.sum() / n_valid1:.1%} of the input values (one statistic over each whole sample)"
                )
            values["born_in"] = "dataset"
        else:
            rows = np.flatnonzero(nf1.any(axis=(1, 2)))
            bad_samples += [ids[b] for b in rows]
            cause = f"batch_transform {transform_name!r} turns finite dataset output into NaN/Inf for {len(rows)} of {len(ids)} probe samples"
            if same_width:
                const = []
                for b in rows:
                    with np.errstate(all="ignore"):
                        std = x0[b, : lengths[b]].std(axis=0)
                    hit = np.flatnonzero((std < 1e-6) & nf1[b].any(axis=0))
                    const += hit.tolist()
                    if x0[b, : lengths[b]].std() < 1e-6:
                        cause += f"; sample {ids[b]} is constant over all its features (its std is 0)"
                if const:
                    chans = sorted(set(const))
                    bad_features += [name1(j) for j in chans[:50]]
                    cause += (
                        f": it divides by a ~0 std, the {len(chans)} channel(s) are constant within those samples "
                        "(e.g. a hand never seen in the sample, filled with zeros); floor the std"
                    )
            values["born_in"] = "batch_transform"
        fails.append(f"model input holds {int(nf1.sum())} non-finite value(s) ({nf1.sum() / n_valid1:.1%}): {cause}")
    finite1 = np.where(np.isfinite(x1), x1, 0.0) * valid[..., None]
    max_abs = float(np.abs(finite1).max()) if finite1.size else 0.0
    seen = x1[valid]  # (valid frames, F)
    if seen.size > 1 and np.isfinite(seen).all() and float(seen.std()) < 1e-6:
        had = x0[valid]
        where = (f"batch_transform {transform_name!r} makes it so: the dataset's output has std {float(np.nanstd(had)):.3g}"
                 if transform_name and had.size and np.isfinite(had).all() and float(had.std()) > 1e-6 else "the dataset yields it")
        fails.append(
            f"the model input carries no signal: every valid value of the {len(ids)} probe samples is {float(seen.flat[0]):.3g}; "
            f"{where}. A model can learn only the label prior from it (CTC's all-blank plateau)"
        )
        values["no_signal"] = True
        values["born_in"] = "batch_transform" if transform_name and "makes it so" in where else "dataset"
    values["max_abs"] = max_abs
    if max_abs > thresholds["max_abs_input"]:
        b, f, j = np.unravel_index(int(np.argmax(np.abs(finite1))), finite1.shape)
        bad_samples.append(ids[b])
        bad_features.append(name1(int(j)))
        locations.append({"sample": ids[b], "frame": int(f), "feature": name1(int(j))})
        fails.append(f"model input not bounded: |x| = {max_abs:.3g} > {thresholds['max_abs_input']:g} at sample {ids[b]} frame {int(f)} {name1(int(j))}")

    if transform_name and same_width and max_abs <= thresholds["max_abs_input"]:
        finite0 = np.where(np.isfinite(x0), x0, 0.0) * valid[..., None]
        raw_max = float(np.abs(finite0).max()) if finite0.size else 0.0
        if raw_max > thresholds["max_abs_input"]:
            b, f, j = np.unravel_index(int(np.argmax(np.abs(finite0))), finite0.shape)
            warns.append(
                f"the dataset's output is unbounded before batch_transform: |x| = {raw_max:.3g} at sample {ids[b]} frame {int(f)} "
                f"{name0(int(j))}; batch_transform {transform_name!r} scales it back, and every other channel of that sample with it"
            )
            values["unbounded_before_transform"] = raw_max
            bad_samples.append(ids[b])
            bad_features.append(name0(int(j)))
    if transform_name and same_width:
        # judged on finite input: where the dataset's output is non-finite, what a std floor would
        # give there ((0 - 0) / floor = 0); the transform of a NaN batch says nothing about itself
        x0f = np.where(np.isfinite(x0), x0, 0.0) * valid[..., None]
        x1f = to_input(_replace_all(batch, x0f)).features.detach().float().cpu().numpy().astype(np.float64)
        changed = not np.allclose(np.where(valid[..., None], x1f, 0), x0f, atol=1e-6)
        if changed:
            from_train = np.arange(len(ids))[:, None] < (len(ids) if n_train is None else n_train)
            std0, share0 = _standardised(x0f, valid & from_train)
            fits = [_affine_fit(x0f[b, : lengths[b]], x1f[b, : lengths[b]]) for b in range(len(ids))]
            affine = all(res < 1e-3 * max(1.0, abs(a)) for a, _, res in fits)
            z = []  # each sample z-scored: over its valid frames, or over its padded row (statistics that include padding)
            for b in range(len(ids)):
                rows = [v[np.isfinite(v)] for v in (x1f[b, : lengths[b]], x1f[b])]
                z.append(any(v.size > 1 and abs(v.mean()) < 0.1 and 0.8 < v.std() < 1.25 for v in rows))
            values["dataset_output_standardised_share"] = share0
            if std0 and affine and all(z):
                a, b_, _ = fits[0]
                text = (
                    f"normalized twice: the dataset's output is already standardised ({share0:.0%} of its channels have mean ~0, "
                    f"std ~1) and batch_transform {transform_name!r} z-scores each sample again (e.g. scale {a:.3g}, shift {b_:.3g})"
                )
                values["double_normalization"] = True
                if model is not None:
                    text += "; " + _does_it_matter(model, out, x0f, to_input, batch)
                warns.append(text)
            # padding: a sample's transform must not depend on what it is batched with
            pad_diff = 0.0
            for b in range(len(ids)):
                if lengths[b] < x0.shape[1]:
                    alone = to_input(_replace_features(batch, b, x0f)).features.detach().float().cpu().numpy()[0]
                    together = to_input(_replace_all(batch, x0f)).features.detach().float().cpu().numpy()[b, : lengths[b]]
                    pad_diff = max(pad_diff, float(np.abs(alone - together).max()))
            values["transform_padding_diff"] = pad_diff
            if pad_diff > 1e-4:
                warns.append(
                    f"batch_transform {transform_name!r} depends on the batch's padding: a sample's transformed features differ by up "
                    f"to {pad_diff:.3g} alone and in a padded batch (its statistics include padded frames)"
                )
    values["key"] = f"max|x| {max_abs:.1f}" + (f", {values['nonfinite_fraction']:.1%} non-finite" if nf1.any() else "")
    values["locations"] = locations
    hint = ""
    if values.get("no_signal"):
        hint = "look at what the dataset and batch_transform do to the features (a mask the wrong way round, a multiplication by 0)"
    elif values.get("division_by_zero_std"):
        hint = "floor every std the dataset divides by (std = max(std, 1e-3)) and zero the channels constant over the train split"
    elif values.get("born_in") == "dataset":
        hint = "impute missing landmarks in the dataset (forward-fill or zeros) before any statistic; its output must be finite"
    elif values.get("born_in") == "batch_transform":
        hint = "floor the std batch_transform divides by, and take its statistics over valid frames only"
    elif fails:
        hint = "find what scales the named feature (the dataset's normalization or batch_transform); keep the model input within a few units"
    elif "unbounded_before_transform" in values:
        hint = ("zero (or drop) the channels that are ~constant over the train split: a std floor alone divides a channel "
                "that never moves in train by the floor where it does move (dev/test)")
    elif warns:
        hint = "normalize in one place; a transform that must stay should mask padded frames"
    return Finding(
        check="model_input",
        status=status_from(bool(fails), bool(warns)),
        summary="; ".join(fails + warns) or f"{len(ids)} probe samples: finite, max |x| {max_abs:.2f}" + (f", batch_transform {transform_name!r} applied" if transform_name else ""),
        hint=hint,
        values=values,
        samples=list(dict.fromkeys(bad_samples)),
        features=list(dict.fromkeys(bad_features)),
        seconds=time.perf_counter() - start,
    )


def _replace_all(batch, x: np.ndarray):
    import dataclasses

    return dataclasses.replace(batch, features=torch.from_numpy(x.astype(np.float32)))


def _replace_features(batch, b: int, x: np.ndarray):
    """Sample b alone (no padding) with features x[b]."""
    import dataclasses

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
