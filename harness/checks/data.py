"""Checks of the corpus itself: clean features, labels, CTC feasibility, normalization.

Pure functions: measurements in (a CorpusScan, records, a vocabulary, a dataset), a Finding out.
"""
from __future__ import annotations

import re
import time
from collections import Counter, defaultdict

import numpy as np

from data.convert import gloss_statistics, records_statistics
from data.corpus import CORPUS_INFO, manifest_problems
from data.dataset import Vocabulary, collate, model_features
from data.layout import describe_column, modality_of_column, modality_widths
from data.normalize import Normalizer
from model.ctc import min_ctc_length
from model.masking import pad_mask
from harness.diagnostics import modality_summary
from harness.findings import FAIL, PASS, SKIP, Finding, status_from, table
from harness.plots import histogram_png
from harness.scan import BLOCKS, CorpusScan


# ----------------------------------------------------------------------------- 1. clean features


class _Located:
    """The sample / frame / feature locations a finding names, gathered while its messages are written."""

    def __init__(self):
        self.locations, self.features = [], []

    def at(self, f, where) -> str:
        """'sample S frame F feature' for a (frame, column) location of file scan f, recorded."""
        frame, col = where
        self.locations.append({"sample": f.id, "frame": frame, "feature": describe_column(col)})
        self.features.append(describe_column(col))
        return f"sample {f.id} frame {frame} {describe_column(col)}"


def _file_problems(files, thresholds: dict, located: _Located) -> tuple[list, list, list]:
    """The failures of clean_features, file by file: unreadable, Inf, NaN that is not a whole
    landmark, pixel coordinates, z in other units. Returns (problems, sample ids, hints)."""
    unreadable = [f for f in files if f.error]
    inf = [f for f in files if f.n_inf]
    partial = [f for f in files if f.partial_nan_landmarks]
    pixels = [f for f in files if f.pixel_fraction > thresholds["pixel_fraction"]]
    z_out = [f for f in files if f.z_fraction > thresholds["pixel_fraction"]]
    at = located.at
    problems, samples, hints = [], [], []
    if unreadable:
        problems.append(f"{len(unreadable)} file(s) unreadable or of wrong width/dtype: {unreadable[0].error}")
        samples += [f.id for f in unreadable]
    if inf:
        first = "; ".join(at(f, w) for f in inf[:3] for w in f.inf_at[:2])
        problems.append(f"Inf values in {len(inf)} file(s) ({sum(f.n_inf for f in inf)} values), at {first} ({inf[0].path})")
        samples += [f.id for f in inf]
    if partial:
        problems.append(
            f"NaN that is not a whole missing landmark in {len(partial)} file(s) "
            f"({sum(f.partial_nan_landmarks for f in partial)} landmarks), e.g. at {at(partial[0], partial[0].partial_at)} ({partial[0].path})"
        )
        samples += [f.id for f in partial]
    if pixels:
        worst = max(pixels, key=lambda f: f.max_abs)
        problems.append(
            f"x/y far outside the normalised image range (max |x,y| {worst.max_abs:.1f} > {thresholds['max_abs_coordinate']}) "
            f"in {len(pixels)} file(s): pixel coordinates stored instead of 0..1, e.g. at {at(worst, worst.max_at)} ({worst.path})"
        )
        samples += [f.id for f in pixels]
    if z_out:
        worst = max(z_out, key=lambda f: f.z_max_abs)
        problems.append(
            f"z far outside MediaPipe's relative depth scale (max |z| {worst.z_max_abs:.3g} > {thresholds['max_abs_z']:g}, "
            f"{worst.z_fraction:.0%} of its z values) in {len(z_out)} file(s): z stored in other units, e.g. at "
            f"{at(worst, worst.z_at)} ({worst.path})"
        )
        samples += [f.id for f in z_out]
    if unreadable or inf or partial:
        hints.append("re-extract or drop the named files")
    if pixels:
        hints.append("divide x by the frame width and y by its height (pixel -> 0..1)")
    if z_out:
        hints.append("store MediaPipe's z as it comes (relative depth on the scale of x): re-import the raw landmarks, or undo the importer's scaling of z")
    return problems, samples, hints


def _corpus_warnings(ok_files, constant_cols, modality: str, missing: dict, thresholds: dict) -> tuple[list, list, list]:
    """The warnings of clean_features over the readable files: hands stored as zeros, channels
    constant over train (mostly of `modality`), parts missing in most frames, very short samples.
    Returns (warnings, sample ids, hints)."""
    zero_filled_files = [f for f in ok_files if max(f.zero_filled[b] for b in ("left_hand", "right_hand")) > thresholds["zero_filled_hands"]]
    short = [f for f in ok_files if f.frames < thresholds["min_frames"]]
    warnings, samples, hints = [], [], []
    if zero_filled_files:
        warnings.append(
            f"{len(zero_filled_files)} file(s) store undetected hands as exact zeros instead of NaN "
            "(derivatives spike where the hand appears; zero channels have ~0 variance)"
        )
    if len(constant_cols):
        warnings.append(
            f"{len(constant_cols)} channel(s) constant over the train split (std < {thresholds['min_channel_std']:g}), "
            f"mostly {modality}: a z-score divides by ~0 there unless its std floor holds"
        )
    for b in BLOCKS:
        if missing[b] > thresholds["missing_warn_fraction"]:
            warnings.append(f"{b} missing in {missing[b]:.0%} of frames")
    if short:
        warnings.append(f"{len(short)} sample(s) shorter than {thresholds['min_frames']} frames")
        samples += [f.id for f in short]
    if zero_filled_files:
        hints.append("store undetected landmarks as NaN; imputation then happens in one place")
    if len(constant_cols):
        hints.append("keep the normalization's std_floor > 0 (see the normalization check)")
    return warnings, samples, hints


def check_clean_features(scan: CorpusScan, thresholds: dict) -> Finding:
    """Inf anywhere; NaN that is not a whole landmark; pixel coordinates; unreadable/wrong-shape
    files; zero-filled landmarks; constant train channels; missing share per modality; lengths."""
    start = time.perf_counter()
    files = scan.files
    ok_files = [f for f in files if not f.error]
    lengths = np.array([f.frames for f in ok_files]) if ok_files else np.zeros(1)
    missing = {b: float(np.mean([f.missing[b] for f in ok_files])) if ok_files else 0.0 for b in BLOCKS}
    zero = {b: float(np.mean([f.zero_filled[b] for f in ok_files])) if ok_files else 0.0 for b in BLOCKS}
    constant_cols = np.zeros(0, dtype=int)
    if scan.train_stats is not None:
        constant_cols = np.flatnonzero(scan.train_stats.std < thresholds["min_channel_std"])

    located = _Located()
    problems, samples, hints = _file_problems(files, thresholds, located)
    features, modality = located.features, ""
    if len(constant_cols) and not problems:  # the features named are those of the failure when there is one
        modality = Counter(modality_of_column(int(c)) for c in constant_cols).most_common(1)[0][0]
        features = [describe_column(int(c)) for c in constant_cols]
    warnings, short, warn_hints = _corpus_warnings(ok_files, constant_cols, modality, missing, thresholds)

    missing_rows = [[b, f"{missing[b]:.3f}", f"{zero[b]:.3f}"] for b in BLOCKS]
    by_split = defaultdict(list)
    for f in ok_files:
        by_split[f.split].append(f.frames)
    length_rows = [[s, len(v), int(np.min(v)), int(np.median(v)), int(np.max(v))] for s, v in sorted(by_split.items())]
    return Finding(
        check="clean_features",
        status=status_from(bool(problems), bool(warnings)),
        summary="; ".join(problems + warnings) or f"{len(files)} files clean: finite, NaN only as whole landmarks, coordinates normalised",
        hint="; ".join(hints + warn_hints),
        values={
            "key": f"{len(files)} files, {int(lengths.sum())} frames",
            "files": len(files),
            "frames": int(lengths.sum()),
            "missing_fraction": missing,
            "zero_filled_fraction": zero,
            "constant_train_channels": int(len(constant_cols)),
            "max_abs_z": max((f.z_max_abs for f in ok_files), default=0.0),
            "locations": located.locations[:20],
            "length_min": int(lengths.min()),
            "length_median": float(np.median(lengths)),
            "length_max": int(lengths.max()),
        },
        samples=list(dict.fromkeys(samples + short)),
        modality=modality,
        features=list(dict.fromkeys(features)),
        tables={
            "Missing landmarks by part (share of frames x landmarks)": table(["part", "missing (NaN)", "stored as 0"], missing_rows),
            "Length distribution (frames)": table(["split", "samples", "min", "median", "max"], length_rows),
        },
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------- 2. labels


def _label_id_problems(records, user_vocab) -> tuple[list[str], list[str]]:
    """The label ids of a user's vocabulary that name no gloss (model.components.LabelId marks in
    the records' glosses), every split: a gloss on the blank index, ids outside the vocabulary.
    Returns (failure sentences, sample ids)."""
    from model.components import LabelId

    found = defaultdict(list)  # problem -> [(sample id, split, user id)]
    for r in records:
        for g in r.glosses:
            if isinstance(g, LabelId):
                found[g.problem].append((r.id, r.split, g.uid))
    fails, samples = [], []

    def listed(hits) -> str:
        ids = list(dict.fromkeys(f"{sid} ({split})" for sid, split, _ in hits))
        return ", ".join(ids[:6]) + (f" ... ({len(ids)} samples)" if len(ids) > 6 else "")

    source = user_vocab.source if user_vocab is not None else "the configured vocabulary"
    if found["blank"]:
        hits = found["blank"]
        blank = hits[0][2]
        name = f"{user_vocab.blank_name!r} in {user_vocab.source}, V = {len(user_vocab)}; " if user_vocab is not None else ""
        unused = ""
        if user_vocab is not None:
            used = {g.uid if isinstance(g, LabelId) else user_vocab.stoi.get(g) for r in records for g in r.glosses}
            lowest = next((u for u in range(len(user_vocab)) if u != user_vocab.blank), None)
            if lowest is not None and lowest not in used:
                unused = f"; no sample uses id {lowest}: the label ids look shifted by one against the vocabulary"
        fails.append(f"a gloss on the blank index: {len({h[0] for h in hits})} sample(s) hold label id {blank}, the blank's index "
                     f"({name}blank = {blank}), which CTC never emits as a gloss: {listed(hits)}{unused}")
        samples += [h[0] for h in hits]
    if found["outside"]:
        hits = found["outside"]
        size = len(user_vocab) if user_vocab is not None else None
        shown = sorted({h[2] for h in hits})
        fails.append(f"label ids outside the vocabulary: {len({h[0] for h in hits})} sample(s) hold ids {shown[:6]}"
                     f"{'' if size is None else f' ({source} has ids 0..{size - 1})'}: {listed(hits)}")
        samples += [h[0] for h in hits]
    return fails, samples


def check_labels(corpus_dir, records, vocab: Vocabulary, scan: CorpusScan | None = None, user_vocab=None) -> Finding:
    """Empty sequences, unknown glosses, blank id in targets, duplicate ids, a sample in two splits;
    with a user's vocabulary (model.components.UserVocabulary), label ids on its blank index or
    outside it, in every split."""
    import dataclasses

    from model.components import LabelId

    start = time.perf_counter()
    fails, warns, samples = [], [], []
    if corpus_dir is None:  # a user dataset: its records come from its items; unreadable ones are the contract check's
        unreadable = {f.id for f in scan.files if f.error} if scan is not None else set()
        records = [r for r in records if r.id not in unreadable]
        if not records:
            why = f"none of the dataset's {len(unreadable)} item(s) could be read (see the contract check)" if unreadable else "the dataset yields no items"
            return Finding(check="labels", status=SKIP, summary=f"nothing to judge: {why}", seconds=time.perf_counter() - start)
        seen, problems = set(), []
        for r in records:
            if r.id in seen:
                problems.append(f"duplicate id {r.id!r} (split {r.split}); ids must be unique across splits")
            seen.add(r.id)
    else:
        problems = manifest_problems(corpus_dir, records)
    if problems:
        fails.append(f"{len(problems)} manifest problem(s): {problems[0]}")
        samples += [r.id for r in records if any(f"(id {r.id!r})" in p for p in problems)]
    empty = [r.id for r in records if not r.glosses]
    if empty:
        fails.append(f"{len(empty)} empty gloss sequence(s)")
        samples += empty
    marked, marked_samples = _label_id_problems(records, user_vocab)
    fails += marked
    samples += marked_samples
    # the rest judges the glosses the ids name
    records = [r if not any(isinstance(g, LabelId) for g in r.glosses) else
               dataclasses.replace(r, glosses=tuple(g for g in r.glosses if not isinstance(g, LabelId))) for r in records]
    # blank / out-of-range ids, encoded exactly as the dataset encodes them
    bad_ids = []
    for r in records:
        if r.split != "train":
            continue
        known = [g for g in r.glosses if g in vocab]
        ids = vocab.encode(known, r.id)
        if any(i == vocab.blank_id or not 0 < i < len(vocab) for i in ids):
            bad_ids.append(r.id)
    if bad_ids:
        fails.append(f"blank id {vocab.blank_id} or an id >= vocab size inside the targets of {len(bad_ids)} sample(s) (vocabulary off by one)")
        samples += bad_ids
    train_unknown = [r.id for r in records if r.split == "train" and any(g not in vocab for g in r.glosses)]
    if train_unknown:
        fails.append(f"{len(train_unknown)} train sample(s) use glosses missing from the vocabulary")
        samples += train_unknown
    stats = gloss_statistics(corpus_dir) if corpus_dir is not None else records_statistics(records)
    train_glosses = {g for r in records if r.split == "train" for g in r.glosses}
    for s in ("dev", "test"):
        rate = stats["oov_rate"][s]
        if rate:
            oov = [r.id for r in records if r.split == s and any(g not in train_glosses for g in r.glosses)]
            shown = ", ".join(oov[:5]) + (" ..." if len(oov) > 5 else "")
            warns.append(
                f"{s}: {rate:.1%} of gloss tokens ({stats['oov_glosses'][s]} distinct glosses) never occur in train, in "
                f"{len(oov)} sample(s) ({shown}); they count as errors in WER"
            )
            samples += oov
    declared = _corpus_info(corpus_dir).get("signer_split") == "dependent"
    shared = _shared_signers(records)
    if shared and not declared:
        pairs = ", ".join(f"{a}/{b}: {n}" for (a, b), n in shared.items())
        warns.append(
            f"the same signers appear in more than one split ({pairs} signers): dev/test WER measures signers seen in "
            "training, not new ones (declare \"signer_split\": \"dependent\" in corpus.json if that is the design)"
        )
    if scan is not None:
        by_digest = defaultdict(list)
        for f in scan.files:
            if f.digest:
                by_digest[f.digest].append(f)
        leaks = [fs for fs in by_digest.values() if len({f.split for f in fs}) > 1]
        if leaks:
            pairs = [f"{'/'.join(f.id + '@' + f.split for f in fs)}" for fs in leaks]
            fails.append(f"{len(leaks)} sample(s) appear in two splits with identical features: {pairs[:3]}")
            samples += [f.id for fs in leaks for f in fs]
    by_path = defaultdict(set)
    for r in records:
        if r.path:  # a user dataset's records have none
            by_path[r.path].add(r.split)
    shared = [p for p, sp in by_path.items() if len(sp) > 1]
    if shared:
        fails.append(f"{len(shared)} feature file(s) listed in two splits, e.g. {shared[0]}")
        samples += [r.id for r in records if r.path in shared]
    hint = ""
    if marked:
        hint = ("encode every label with the vocabulary the configuration names (line i + 1 of the file = id i) and keep glosses off "
                f"the blank's index (blank = {user_vocab.blank if user_vocab is not None else '?'}); then fix the other rows named")
    elif fails:
        hint = "fix the manifest rows named; build the vocabulary from the train split with blank = 0; keep each recording in one split"
    elif warns:
        hint = "expected for real corpora (PHOENIX dev/test have a few unseen glosses); nothing to do unless the rate is high"
    return Finding(
        check="labels",
        status=status_from(bool(fails), bool(warns)),
        summary="; ".join(fails + warns) or f"{len(records)} samples, {len(vocab) - 1} glosses + blank, labels consistent",
        hint=hint,
        values={
            "key": f"vocab {len(vocab) - 1}+blank",
            "vocab_size": len(vocab),
            "oov_rate": stats["oov_rate"],
            "gloss_statistics": stats,
        },
        samples=list(dict.fromkeys(samples)),
        tables={"Gloss statistics": table(
            ["split", "samples", "signers", "tokens", "glosses/sentence min", "median", "max", "OOV rate"],
            [[s, stats["samples"][s], stats["signers"][s], stats["tokens"][s],
              *((stats["sentence_length"][s] or {}).get(k, "-") for k in ("min", "median", "max")),
              "-" if stats["oov_rate"].get(s) is None else f"{stats['oov_rate'][s]:.2%}"] for s in ("train", "dev", "test")],
        )},
        seconds=time.perf_counter() - start,
    )


def _corpus_info(corpus_dir) -> dict:
    """corpus.json of a corpus (written by the importers), {} if there is none."""
    import json
    from pathlib import Path

    path = Path(corpus_dir) / CORPUS_INFO if corpus_dir is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}


def _shared_signers(records) -> dict:
    """(split, split) -> number of signers in both, for the pairs that share any."""
    by_split = defaultdict(set)
    for r in records:
        if getattr(r, "signer", ""):
            by_split[r.split].add(r.signer)
    splits = [s for s in ("train", "dev", "test") if by_split[s]]
    return {(a, b): len(by_split[a] & by_split[b]) for i, a in enumerate(splits) for b in splits[i + 1:] if by_split[a] & by_split[b]}


# ----------------------------------------------------------------------------- 6. CTC feasibility


def check_ctc_feasibility(scan: CorpusScan, records, vocab: Vocabulary, output_lengths) -> Finding:
    """Each sample's output length (after the model's temporal stride) >= its CTC minimum.

    `output_lengths` maps a LongTensor of input lengths to output lengths (the model's own).
    """
    import torch

    start = time.perf_counter()
    frames = {f.id: f.frames for f in scan.files if not f.error}
    rows, violators = [], []
    recs = [r for r in records if r.id in frames]
    if not recs:
        return Finding(check="ctc_feasibility", status=SKIP, summary="nothing to judge: no sample could be read (see the contract and clean_features checks)",
                       seconds=time.perf_counter() - start)
    out = output_lengths(torch.tensor([frames[r.id] for r in recs], dtype=torch.long)).tolist()
    margins = []
    for r, o in zip(recs, out):
        need = min_ctc_length(vocab.encode(r.glosses, r.id, unknown="skip"))
        margins.append(o - need)
        if o < need:
            violators.append(r.id)
            rows.append([r.id, r.split, frames[r.id], o, len(r.glosses), need])
    return Finding(
        check="ctc_feasibility",
        status=FAIL if violators else PASS,
        summary=(
            f"{len(violators)} sample(s) too short for their gloss sequence after the temporal stride "
            f"(output frames < targets + repeats): CTC loss is +inf for them"
            if violators
            else f"all {len(recs)} samples feasible (smallest margin {min(margins) if margins else 0} output frames)"
        ),
        hint="drop or re-segment these samples, or use a model with a smaller temporal stride" if violators else "",
        values={"key": f"{len(violators)} infeasible", "infeasible": len(violators), "min_margin": int(min(margins)) if margins else 0},
        samples=violators,
        tables={"CTC-infeasible samples": table(["id", "split", "frames", "output frames", "glosses", "needed"], rows)} if rows else {},
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------- 3. normalization


def _second_transform(expected: np.ndarray, got: np.ndarray, method: str) -> str:
    """Name what was done to one correctly normalized sample on its way to the model."""
    if not np.isfinite(got).all():
        return f"model input differs from one application of {method!r} and is not finite"
    e, g = expected.ravel().astype(np.float64), got.ravel().astype(np.float64)
    if g.std() < 1e-6 < e.std():
        return (f"the model input carries no signal: something between dataset and model sets every value of the sample to "
                f"{g[0]:.3g} (a mask the wrong way round?)")
    # one scalar affine map for the whole sample: a per-sample z-score over (time, features)
    a, b = np.polyfit(e, g, 1) if e.std() > 0 else (1.0, 0.0)
    if np.abs(a * e + b - g).max() < 1e-3 * max(1.0, np.abs(g).max()):
        return (
            f"normalized twice: after the dataset's {method!r}, a per-sample z-score over the whole sample "
            f"(scale {a:.3g}, shift {b:.3g}) was applied between loader and model"
        )
    # a separate affine map per column: a per-column z-score
    ec, gc = expected - expected.mean(0), got - got.mean(0)
    scale = (ec * gc).sum(0) / np.maximum((ec * ec).sum(0), 1e-12)
    if np.abs(ec * scale - gc).max() < 1e-3 * max(1.0, np.abs(gc).max()):
        return f"normalized twice: after the dataset's {method!r}, a per-column z-score was applied between loader and model"
    diff = float(np.abs(got - expected).max())
    return f"model input differs from one application of {method!r} (max diff {diff:.3g}): something between dataset and model transforms the features"


def _short(x: float) -> str:
    """A number as %g without the exponent's leading zero (1e-6, not 1e-06)."""
    return re.sub(r"e([+-])0(\d)", r"e\1\2", f"{x:g}")


def _global_stats_problems(dataset, norm: Normalizer, train_frames: int | None, thresholds: dict) -> tuple[list, list, int]:
    """Global z-scores: the statistics cover exactly the train split, and the std floor is in
    effect where a train channel's std is ~0. Returns (failures, feature names, channels the floor covers)."""
    fails, features = [], []
    if train_frames is not None and dataset.stats.n_frames != train_frames:
        fails.append(
            f"global statistics cover {dataset.stats.n_frames} frames, the train split has {train_frames}: statistics not from "
            "the train split, or train files left out of them (the scan leaves out files holding Inf; see clean_features)"
        )
    low = np.flatnonzero(dataset.stats.std < thresholds["zero_std"])
    if len(low) and norm.std_floor < thresholds["zero_std"]:
        fails.append(
            f"std floor {norm.std_floor:g} not in effect: {len(low)} channel(s) have train std < {_short(thresholds['zero_std'])} and are divided by ~0"
        )
        features += [describe_column(int(c)) for c in low]
    return fails, features, int(len(low))


def _nonfinite_input(dataset, samples_idx, batch, x: np.ndarray) -> tuple[str, list, list, list]:
    """The model input holds NaN/Inf: the failure naming the stage where it is born, its sample
    ids and feature names there, and the first locations (sample, frame, feature) in the input."""
    cols = dataset.columns
    nonfinite = ~np.isfinite(x)
    locations = [{"sample": batch.ids[b], "frame": int(f), "feature": describe_column(int(cols[j]))} for b, f, j in np.argwhere(nonfinite)[:20]]
    b_idx, _, f_idx = np.nonzero(nonfinite)
    feats = sorted(set(int(cols[i]) for i in f_idx))
    cause, origin_ids, origin_cols = _trace_nonfinite(dataset, samples_idx)
    samples = origin_ids or sorted({batch.ids[i] for i in b_idx})
    features = [describe_column(c) for c in (origin_cols or feats)[:50]]
    return f"model input has {int(nonfinite.sum())} non-finite values in {len(feats)} channel(s): {cause}", samples, features, locations


def _input_bounds(x: np.ndarray, valid: np.ndarray, norm: Normalizer, cols, thresholds: dict, batch) -> tuple[list, list, list, float, float | None]:
    """The model input's valid values within max_abs_input, and few of them at the clip bound.
    Returns (failures, sample ids, feature names, max |x|, share at the clip bound or None without a clip)."""
    fails, samples, features, clipped = [], [], [], None
    finite = np.where(np.isfinite(x), x, 0)
    xv = finite[valid]
    max_abs = float(np.abs(xv).max()) if xv.size else 0.0
    if max_abs > thresholds["max_abs_input"]:
        worst = np.abs(np.where(valid[..., None], finite, 0)).max(axis=(1, 2))
        samples.append(batch.ids[int(np.argmax(worst))])
        fails.append(f"model input not bounded: max |x| = {max_abs:.3g} > {thresholds['max_abs_input']}")
    if norm.clip and xv.size:
        clipped = float((np.abs(xv) >= norm.clip * (1 - 1e-6)).mean())
        if clipped > thresholds["max_clipped_fraction"]:
            x_at = np.abs(np.where(valid[..., None], finite, 0)) >= norm.clip * (1 - 1e-6)
            per_col = x_at.sum(axis=(0, 1))
            top = np.argsort(per_col)[::-1][:5]
            names = [describe_column(int(cols[j])) for j in top if per_col[j]]
            features += names
            fails.append(
                f"{clipped:.2%} of input values sit at the clip bound ±{norm.clip:g} (limit {thresholds['max_clipped_fraction']:.2%}): the clip "
                f"is hiding values far out of scale, most in {names}"
            )
    return fails, samples, features, max_abs, clipped


def _applied_once(dataset, samples_idx, batch, x: np.ndarray, method: str, thresholds: dict) -> tuple[list, list, bool | None]:
    """Each probe sample's model input against one independent application of the dataset's
    Normalizer to its raw file. Returns (failures, sample ids, whether the input carries no
    signal: None when every sample matches)."""
    fails, no_signal = [], None
    if batch.normalization != method:
        fails.append(f"batch says normalization {batch.normalization!r}, the dataset is configured for {method!r}")
    mismatched = []
    for i, (idx, sid) in enumerate(zip(samples_idx, batch.ids)):
        feats, raw = model_features(dataset.source(idx), dataset.impute_method)
        expected = dataset.normalizer(feats, raw=raw)[:, dataset.columns]
        got = x[i, : batch.lengths[i]]
        if not np.allclose(got, expected, rtol=thresholds["normalize_once_rtol"], atol=thresholds["normalize_once_atol"], equal_nan=True):
            mismatched.append((sid, expected, got))
    if mismatched:
        sid, expected, got = mismatched[0]
        what = _second_transform(expected, got, method)
        no_signal = "carries no signal" in what
        fails.append(f"{what} ({len(mismatched)}/{len(samples_idx)} samples, e.g. {sid})")
    return fails, [m[0] for m in mismatched], no_signal


def _normalization_hint(fails: list) -> str:
    hint = ""
    if fails:
        hint = "normalize in one place: the dataset's `normalize` setting; remove any z-score in the training loop; keep std_floor > 0"
        if any("missing landmarks reach the model" in f for f in fails):
            hint = "impute missing landmarks (the dataset's impute_method) before statistics and normalization; " + hint
    if any("clip bound" in f for f in fails):
        hint = "find why those features are far out of scale (clean_features names out-of-range coordinates) before raising the clip"
    return hint


def check_normalization(dataset, samples_idx, to_model_input, thresholds: dict, train_frames: int | None = None) -> Finding:
    """The model input is finite, bounded, and the configured normalization applied exactly once.

    `to_model_input` is the exact function training applies between the loader and the model
    (batch -> batch). The expected input is recomputed independently from the raw file with
    one application of the dataset's Normalizer; any difference is a second normalization (or
    another transform) somewhere in the pipeline.
    """
    start = time.perf_counter()
    method = dataset.normalization
    norm: Normalizer = dataset.normalizer
    batch = to_model_input(collate([dataset[i] for i in samples_idx]))
    x = batch.features.detach().float().cpu().numpy()
    fails, bad_samples, bad_features = [], [], []
    values = {"method": method}
    cols = dataset.columns

    # 1. std floors: which channels would divide by ~0 without them (global stats from train only)
    floored = 0
    if method == "global":
        values["stats_frames"] = int(dataset.stats.n_frames)
        more, features, floored = _global_stats_problems(dataset, norm, train_frames, thresholds)
        fails += more
        bad_features += features
    values["std_floor"] = norm.std_floor
    values["floored_channels"] = floored

    # 2. finite: where a NaN/Inf is born, not every channel it later spread to
    if not np.isfinite(x).all():
        fail, samples, features, values["locations"] = _nonfinite_input(dataset, samples_idx, batch, x)
        fails.append(fail)
        bad_samples += samples
        bad_features += features

    # 3. bounded, and not piled up at the clip bound
    valid = pad_mask(batch.lengths.cpu(), x.shape[1]).numpy()
    more, samples, features, max_abs, clipped = _input_bounds(x, valid, norm, cols, thresholds, batch)
    values["max_abs"] = max_abs
    values["key"] = f"{method}: max|x| {max_abs:.1f}"
    if clipped is not None:
        values["clipped_fraction"] = clipped
    fails += more
    bad_samples += samples
    bad_features += features

    # 4. exactly once: compared with an independent single application
    more, samples, no_signal = _applied_once(dataset, samples_idx, batch, x, method, thresholds)
    if no_signal is not None:
        values["no_signal"] = no_signal
    fails += more
    bad_samples += samples

    breakdown = modality_summary(batch, dataset.modalities)
    widths = modality_widths(dataset.modalities)
    offsets = np.cumsum([0] + list(widths.values()))
    by_modality = {m: x[:, :, offsets[i] : offsets[i + 1]][valid].ravel() for i, m in enumerate(widths)}
    return Finding(
        check=f"normalization[{method}]",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or f"{method}: finite, max |x| {max_abs:.2f}, applied exactly once, std floor {norm.std_floor:g}",
        hint=_normalization_hint(fails),
        values=values,
        samples=list(dict.fromkeys(bad_samples)),
        features=list(dict.fromkeys(bad_features)),
        # the landmark part (left_hand, face, ...), also for temporal channels of that part
        modality=Counter(f.split("/")[-1].split("[")[0] for f in bad_features).most_common(1)[0][0] if bad_features else "",
        tables={f"Modality breakdown of the model input ({method})": table(
            ["modality", "width", "mean", "std", "min", "max"], [[m, w, *(f"{v:.3f}" for v in rest)] for m, w, *rest in breakdown]
        )},
        plots={f"Value distribution by modality ({method})": histogram_png(by_modality, "model input value")},
        seconds=time.perf_counter() - start,
    )


def _trace_nonfinite(dataset, samples_idx) -> tuple[str, list[str], list[int]]:
    """Replay the probe samples stage by stage (imputation, then the dataset's normalization)
    and name the first stage that produces NaN/Inf: (cause, sample ids, feature columns there)."""
    norm: Normalizer = dataset.normalizer
    cols = np.asarray(dataset.columns)
    imputed_ids, imputed_cols, norm_ids, norm_cols, divisors, inf_ids = [], set(), [], set(), [], []
    for idx in samples_idx:
        rec = dataset.records[idx]
        feats, raw = model_features(dataset.source(idx), dataset.impute_method)
        bad = ~np.isfinite(feats[:, cols]).all(axis=0)  # [len(cols)] columns holding NaN/Inf
        if bad.any():
            imputed_ids.append(rec.id)
            imputed_cols.update(int(c) for c in cols[bad])
            if np.isinf(feats[:, cols]).any():
                inf_ids.append(rec.id)
            continue
        bad = ~np.isfinite(norm(feats, raw=raw)[:, cols]).all(axis=0)
        if bad.any():
            norm_ids.append(rec.id)
            norm_cols.update(int(c) for c in cols[bad])
            # the std each bad column was divided by (global: the train split's; per_sample: this sample's)
            if norm.method in ("global", "per_sample"):
                std = np.maximum(dataset.stats.std, norm.std_floor) if norm.method == "global" else feats.std(axis=0)
                divisors += [float(std[c]) for c in cols[bad]]
    if inf_ids:
        return (
            f"{len(inf_ids)} sample(s) hold Inf in their feature file (imputation fills only NaN; see clean_features)",
            inf_ids, sorted(imputed_cols),
        )
    if imputed_ids:
        return (
            f"missing landmarks reach the model as NaN: after imputation ({dataset.impute_method!r}) {len(imputed_ids)} "
            f"sample(s) still hold NaN in {len(imputed_cols)} channel(s) (imputation skipped or not filling them)",
            imputed_ids, sorted(imputed_cols),
        )
    if norm_ids:
        scope = {"global": "train-split std", "per_sample": "std within the sample"}.get(norm.method, "divisor")
        size = f"{scope} <= {max(divisors):.2g}" if divisors else f"a {scope} of ~0"
        return (
            f"the {norm.method!r} normalization divides by ~0: {len(norm_cols)} channel(s) have {size} "
            f"and the std floor is {norm.std_floor:g}, so (x - mean) / std is 0/0 = NaN or x/0 = Inf there",
            norm_ids, sorted(norm_cols),
        )
    return "the dataset's output is finite; the step between loader and model (to_model_input) makes it non-finite", [], []
