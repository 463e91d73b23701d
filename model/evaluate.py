"""Score a trained checkpoint on a corpus split: corpus WER, per-sample errors, confused glosses.

    python -m model.evaluate CHECKPOINT [--data_dir DIR] [--split test] [--beam_width N] [--out FILE.csv]

It needs only the checkpoint and the corpus. Everything else travels in the checkpoint that
train.py writes (model_name, model_args, weights, vocabulary, normalization statistics and the
whole training configuration: normalization, imputation, modalities, std floor, clip, a user
model / dataset / batch_transform; model/checkpoint.py reads it back), and the split is built
through model.training.build_data and scored by model.training.evaluate, the functions train.py
evaluates with. So for the same
checkpoint, split and decoder the WER is the number train.py printed:

    --beam_width 1 --split dev   the epoch lines (greedy); best.pt is the epoch of the lowest one
    default (the config's beam)  the closing "dev WER" / "test WER" lines of train.py (beam 5)

Before it scores, the split is compared with what the model was trained on (the checkpoint's
data_profile, data/drift.py): each named drift is one line with its fix ("drift: fps 50 vs 25
in training; fix: resample to 25 fps ..."), or one line saying there is none; nothing for a
checkpoint without a profile (saved before profiles were recorded, or trained on a user
dataset). A split of drift_min_samples samples or more is compared as a corpus (distributions
too), a smaller one on what few samples can show (fps, z units, hands detected, leading hand).
--no-drift turns it off.

The PHOENIX clean-up follows train.py's rule: the configuration's phoenix_cleanup, else on for
corpora whose corpus.json names a "phoenix..." dataset. References and hypotheses in the
per-sample CSV are the scored (cleaned-up, if on) gloss sequences.

Bad input (a missing, truncated or foreign file, a checkpoint whose vocabulary differs from the
corpus', a split the corpus lacks) is one line naming the file on stderr and exit code 2.
Checkpoints are read with torch.load(weights_only=True): a pickle holding anything but tensors
and plain containers is refused, never run.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from data.corpus import atomic_write_text
from data.drift import NONE, SKIPPED, Drift
from model.checkpoint import Trained, UsageError, build_eval_data, load_trained, resolve_device, set_threads
from model.config import TrainConfig
from model.decode import decoder_label


# ============================================================================ scoring


class _Recording:
    """Iterates a loader and keeps each batch's ids and reference glosses (in order)."""

    def __init__(self, loader):
        self.loader, self.refs = loader, []

    def __iter__(self):
        for batch in self.loader:
            self.refs.extend(zip(batch.ids, (list(g) for g in batch.glosses)))
            yield batch


@dataclass
class SampleScore:
    id: str
    reference: list
    hypothesis: list
    substitutions: int
    deletions: int
    insertions: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


@dataclass
class Evaluation:
    split: str
    beam_width: int
    phoenix_cleanup: bool
    wer: object  # model.metrics.WERResult, exactly model.training.evaluate's
    samples: list  # SampleScore, loader order
    confusions: Counter  # (reference gloss, hypothesis gloss) -> substitutions
    deleted: Counter
    inserted: Counter
    frames: int
    seconds: float
    oov: Counter = dataclasses.field(default_factory=Counter)  # reference glosses outside the checkpoint's vocabulary

    @property
    def decoder(self) -> str:
        return decoder_label(self.beam_width)

    def wer_line(self) -> str:
        """The line train.py prints for a split: '<split> WER x% (<decoder>; S sub, D del, I ins over N words)'."""
        w = self.wer
        return (f"{self.split} WER {w.wer:.2%} ({self.decoder}; {w.substitutions} sub, {w.deletions} del, "
                f"{w.insertions} ins over {w.n_ref_words} words)")


def score_samples(refs, hyps, phoenix: bool):
    """Per-sample S/D/I from jiwer's alignment (the one corpus WER sums), and the confusion counters."""
    import jiwer

    from model.metrics import phoenix_cleanup

    if phoenix:
        refs, hyps = [phoenix_cleanup(r) for r in refs], [phoenix_cleanup(h) for h in hyps]
    out = jiwer.process_words([" ".join(r) for r in refs], [" ".join(h) for h in hyps])
    per, confusions, deleted, inserted = [], Counter(), Counter(), Counter()
    for ref, hyp, chunks in zip(refs, hyps, out.alignments):
        s = d = i = 0
        for c in chunks:
            r, h = ref[c.ref_start_idx:c.ref_end_idx], hyp[c.hyp_start_idx:c.hyp_end_idx]
            if c.type == "substitute":
                s += len(r)
                confusions.update(zip(r, h))
            elif c.type == "delete":
                d += len(r)
                deleted.update(r)
            elif c.type == "insert":
                i += len(h)
                inserted.update(h)
        per.append((ref, hyp, s, d, i))
    return per, confusions, deleted, inserted


def evaluate_split(trained: Trained, data, cfg: TrainConfig, split: str, beam_width: int, device=None) -> Evaluation:
    """model.training.evaluate on one split, as train.py runs it (same batch size, decoder, clean-up)."""
    from model import training

    if split not in data.splits:
        have = sorted(data.splits)
        raise UsageError(f"{data.source}: no {split!r} split (it has {have}); pick one with --split")
    device = device or torch.device("cpu")
    model = trained.model.to(device)
    phoenix = cfg.phoenix_cleanup if cfg.phoenix_cleanup is not None else data.corpus_kind.startswith("phoenix")
    loader = _Recording(training.make_loader(data.splits[split], cfg.batch_size, shuffle=False, batches=data.batches))
    t0 = time.perf_counter()
    result = training.evaluate(model, loader, data.vocab, device, cfg, beam_width=beam_width, phoenix_cleanup=phoenix)
    seconds = time.perf_counter() - t0
    ids = [sid for sid, _ in loader.refs]
    per, confusions, deleted, inserted = score_samples([r for _, r in loader.refs], [result.hypotheses[i] for i in ids], phoenix)
    samples = [SampleScore(sid, ref, hyp, s, d, i) for sid, (ref, hyp, s, d, i) in zip(ids, per)]
    totals = (sum(x.substitutions for x in samples), sum(x.deletions for x in samples), sum(x.insertions for x in samples))
    w = result.wer
    if totals != (w.substitutions, w.deletions, w.insertions):  # one alignment for both: a mismatch is a bug here
        raise RuntimeError(f"per-sample errors {totals} do not add up to the corpus WER's {(w.substitutions, w.deletions, w.insertions)}")
    oov = Counter(g for _, ref in loader.refs for g in ref if g not in trained.vocab)
    return Evaluation(split, beam_width, phoenix, w, samples, confusions, deleted, inserted, result.frames, seconds, oov)


def samples_csv(ev: Evaluation) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "reference", "hypothesis", "errors", "substitutions", "deletions", "insertions", "ref_words", "wer"])
    for s in ev.samples:
        n = len(s.reference)
        writer.writerow([s.id, " ".join(s.reference), " ".join(s.hypothesis), s.errors, s.substitutions, s.deletions, s.insertions, n,
                         f"{s.errors / n:.4f}" if n else ""])
    return buf.getvalue()


def report(ev: Evaluation, top: int = 10) -> str:
    lines = [ev.wer_line()]
    wrong = [s for s in ev.samples if s.errors]
    lines.append(f"{len(wrong)} of {len(ev.samples)} sentences have errors; {ev.frames:,} frames in {ev.seconds:.2f} s "
                 f"({ev.frames / max(ev.seconds, 1e-9):,.0f} frames/s, decode {ev.decoder})")
    if ev.oov:
        lines.append(f"{sum(ev.oov.values())} reference gloss(es) outside the checkpoint's vocabulary, counted as errors: "
                     + ", ".join(f"{g} {n}" for g, n in ev.oov.most_common(top)))
    if ev.confusions:
        lines.append("most confused gloss pairs (reference -> hypothesis: substitutions):")
        lines += [f"  {r} -> {h}: {n}" for (r, h), n in ev.confusions.most_common(top)]
    else:
        lines.append("no substitutions")
    if ev.deleted:
        lines.append("most deleted: " + ", ".join(f"{g} {n}" for g, n in ev.deleted.most_common(top)))
    if ev.inserted:
        lines.append("most inserted: " + ", ".join(f"{g} {n}" for g, n in ev.inserted.most_common(top)))
    if wrong:
        lines.append("sentences with the most errors:")
        for s in sorted(wrong, key=lambda s: (-s.errors, s.id))[:5]:
            lines.append(f"  {s.id} ({s.errors} errors): ref {' '.join(s.reference) or '-'} | hyp {' '.join(s.hypothesis) or '-'}")
    return "\n".join(lines)


# ============================================================================ drift


def split_drift(trained: Trained, data, split: str) -> Drift | None:
    """The split against the checkpoint's data profile (data/drift.py: compare, corpus mode from
    drift_min_samples samples, else sample mode), thresholds overridden by the checkpoint's
    configuration; a user's dataset is profiled by what it yields (data/profile.py: profile_dataset).
    None when the checkpoint carries no profile; ValueError naming the checkpoint when its profile
    does not read."""
    from data.drift import compare, resolve
    from data.profile import HAND_LEAD, checkpoint_profile, profile_dataset, profile_records

    reference = checkpoint_profile(trained.path)
    if reference is None:
        return None
    if data.corpus is None:
        new = profile_dataset(data.splits[split], split)
    else:
        records = [r for r in data.corpus.records if r.split == split]
        new = profile_records(data.corpus, records, split, hand_lead=reference.get("lead", {}).get("hand_lead", HAND_LEAD))
    return compare(reference, new, resolve(trained.cfg.thresholds), mode="auto", normalize=trained.cfg.normalize)


def drift_lines(drift: Drift, split: str) -> list[str]:
    """What evaluate prints of a drift before the WER: one line a named drift with its fix, or one line."""
    if drift.status == SKIPPED:
        return [f"drift: not compared ({drift.reason})"]
    if drift.status == NONE:
        return [f"drift: none against the training data ({drift.samples['new']} {split} samples vs {drift.samples['reference']} in training)"]
    return drift.lines()


# ============================================================================ command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model.evaluate",
        description="Corpus WER (S/D/I) of a train.py checkpoint on a split, per-sample errors and the most confused glosses.",
    )
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="best.pt or last.pt written by train.py")
    p.add_argument("--data_dir", "--data-dir", dest="data_dir", help="corpus directory (default: the one the checkpoint was trained on)")
    p.add_argument("--split", default="test", choices=("train", "dev", "test"), help="split to score (default: test)")
    p.add_argument("--beam_width", "--beam-width", dest="beam_width", type=int,
                   help="1 = greedy (the epoch lines of train.py, how best.pt is picked); default: the checkpoint's beam_width (the closing lines)")
    p.add_argument("--out", type=Path, metavar="FILE.csv", help="write id, reference, hypothesis, errors (S, D, I) of every sample")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-drift", "--no_drift", dest="no_drift", action="store_true",
                   help="do not compare the split with the checkpoint's data profile before scoring")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.beam_width is not None and args.beam_width < 1:
            raise UsageError(f"--beam_width must be >= 1, got {args.beam_width}")
        set_threads(args.threads)
        device = resolve_device(args.device)
        trained = load_trained(args.checkpoint)
        print(f"checkpoint {trained.path}: {trained.describe()}")
        cfg, data = build_eval_data(trained, args.data_dir)
        beam = args.beam_width if args.beam_width is not None else cfg.beam_width
        if not args.no_drift and args.split in data.splits:
            try:
                drift = split_drift(trained, data, args.split)
            except ValueError as exc:  # an unreadable profile costs the comparison, not the evaluation
                print(f"drift: not compared ({exc})")
            else:
                for line in drift_lines(drift, args.split) if drift is not None else []:
                    print(line)
        ev = evaluate_split(trained, data, cfg, args.split, beam, device)
        source = data.source
        print(f"data {source}, split {args.split}: {ev.wer.n_sentences} sentences; PHOENIX clean-up {'on' if ev.phoenix_cleanup else 'off'}")
        print(report(ev))
        if args.out:
            atomic_write_text(args.out, samples_csv(ev))
            print(f"per-sample errors: {args.out}")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

