"""Unseen-signer benchmark on real Kaggle landmarks: today's defaults vs augmentation vs a small BiGRU.

    python benchmarks/signers.py [--work DIR] [--stages build throughput table compare folds onehand report]
                                 [--seeds 0] [--table-epochs 10] [--epochs 20] [--recipe default]
                                 [--folds 5] [--fold-epochs 10] [--fold-ids 0 2 4] [--rows defaults lead bigru]

Stages (each resumable: a finished run's result is kept in WORK/results.json and not re-run):

  build       Kaggle ISLR sample -> corpus (python -m data.convert kaggle), then continuous
              sentences of 2-5 signs, 500/80/80, split by signer 13/4/4 (python -m data.convert sentences)
  throughput  loader batches/s of the augmenting train split (the recipe, in-process loader,
              raw-landmark cache) vs batches/s the default model's train step consumes, 1 thread
  table       recipe table: no augmentation, each augmentation alone, all of them; one
              `python train.py --threads 1` subprocess per row and seed, --table-epochs epochs
  compare     side by side at --epochs: `python train.py` defaults, the same with the augmentation
              recipe, and the BiGRU baseline below given the wall time of the defaults' run
  folds       signer-fold cross-validation: --folds folds over the 21 signers (each in test exactly
              once, dev 4 other signers, train the rest), one sentence corpus a fold made by
              `python -m data.convert sentences --keep-splits` (500/80/80); on each fold every row of
              FOLD_RECIPES (the mirror on all 6516 features, leading-hand canonicalisation, ...) at --fold-epochs and
              the BiGRU given the defaults' wall time; per-signer test errors (python -m model.evaluate)
              and the named shifts (data/drift.py) of each test signer against the fold's train split
  onehand     a one-handed task: sentences of the signers whose clips only the right hand leads,
              train.py without augmentation and with today's default (random mirror)
  report      the tables, from results.json (folds: mean, worst fold, pooled WER with a 95%
              bootstrap interval over signers, the worst signers beside their shifts)

WER is unseen-signer WER: dev and test signers never appear in train. train.py rows give the
closing dev/test WER of best.pt (best dev greedy WER over the epochs, decoded with beam 5); the
BiGRU keeps its best dev epoch the same way and is decoded with the same beam search.

The BiGRU baseline lives here on purpose (it is a yardstick, not part of the library): upper-body
pose (landmarks 0-24) and both hands, x and y only, centred on the shoulder midpoint and divided by
the shoulder width, missing landmarks 0, no augmentation; 2-layer bidirectional GRU (128 a
direction), CTC.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

KAGGLE = REPO / ".." / "shared" / "data" / "kaggle_asl_signs"
AUG_NAMES = ("speed", "frame_drop", "mirror", "affine", "jitter", "hand_dropout")


# ============================================================================ results file


def load_results(work: Path) -> dict:
    path = work / "results.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save_result(work: Path, key: str, value: dict) -> None:
    """Add one result; several benchmark processes may share WORK (an exclusive lock around
    read-modify-write keeps every process's results)."""
    import fcntl

    from data.corpus import atomic_write_text

    with open(work / "results.json.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = load_results(work)
        results[key] = value
        atomic_write_text(work / "results.json", json.dumps(results, indent=1, sort_keys=True) + "\n")


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ============================================================================ build


def convert(argv: list[str]) -> None:
    """python -m data.convert ARGV, logged; exits with its status when it fails."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "data.convert", *argv], cwd=REPO, capture_output=True, text=True)
    log(f"python -m data.convert {' '.join(argv)}: exit {done.returncode} in {time.perf_counter() - t0:.1f}s; {done.stdout.strip()} {done.stderr.strip()[-500:]}")
    if done.returncode != 0:
        raise SystemExit(done.returncode)


def stage_build(work: Path, seed: int = 0) -> Path:
    kaggle, sentences = work / "kaggle", work / "sentences"
    if not KAGGLE.exists():
        raise SystemExit(f"real data not available: {KAGGLE.resolve()} (see ../shared/data/README.md)")
    convert(["kaggle", str(KAGGLE), "--out", str(kaggle)])
    convert(["sentences", str(kaggle), "--out", str(sentences), "--seed", str(seed)])
    info = json.loads((sentences / "corpus.json").read_text())
    log(f"sentences: {info['sentences']}, signers { {s: len(v) for s, v in info['signers'].items()} }, {info['frames']} frames, content {info['content']}")
    return sentences


# ============================================================================ train.py runs


def write_config(work: Path, name: str, augment: dict, extra: dict | None = None) -> Path:
    from data.corpus import atomic_write_text

    path = work / "configs" / f"{name}.json"
    atomic_write_text(path, json.dumps({"augment": augment, **(extra or {})}, indent=1) + "\n")
    return path


def parse_train_log(text: str) -> dict:
    out = {"epochs": []}
    for line in text.splitlines():
        parts = line.split()
        if line.startswith("epoch ") and "WER" in parts:
            i = parts.index("WER")
            out["epochs"].append({"epoch": int(parts[1]), "loss": float(parts[3]), "dev_wer_greedy": float(parts[i + 1].rstrip("%")) / 100,
                                  "seconds": float(next(p for p in parts if p.endswith("s") and p[:-1].replace(".", "").isdigit())[:-1])})
        for split in ("dev", "test"):
            if line.startswith(f"{split} WER "):
                out[f"{split}_wer"] = float(parts[2].rstrip("%")) / 100
                out[f"{split}_detail"] = line
        if line.startswith("compatibility gate:"):
            out["gate"] = line
    return out


def train_run(work: Path, key: str, data_dir: Path, config: Path | None, epochs: int, seed: int, threads: int = 1) -> dict:
    done = load_results(work).get(key)
    if done and "test_wer" in done:
        log(f"{key}: done before (dev {done['dev_wer']:.2%}, test {done['test_wer']:.2%}), kept")
        return done
    out = work / "runs" / key
    if out.exists():  # an interrupted run: start it again from scratch (train.py appends to metrics.jsonl)
        import shutil

        shutil.rmtree(out)
    argv = [sys.executable, "train.py", "--data_dir", str(data_dir), "--output_dir", str(out), "--epochs", str(epochs),
            "--seed", str(seed), "--threads", str(threads)]
    if config is not None:
        argv += ["--config", str(config)]
    log(f"{key}: {' '.join(argv[1:])}")
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - t0
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "logs" / f"{key.replace('/', '_')}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr[-20000:])
    res = {**parse_train_log(proc.stdout), "wall_s": round(wall, 1), "exit": proc.returncode, "argv": argv[1:], "seed": seed, "epochs_asked": epochs}
    if proc.returncode != 0 or "test_wer" not in res:
        log(f"{key}: FAILED exit {proc.returncode}: {proc.stdout[-800:]} {proc.stderr[-1500:]}")
        save_result(work, key, res)
        return res
    res["train_s"] = round(sum(e["seconds"] for e in res["epochs"]), 1)
    log(f"{key}: dev {res['dev_wer']:.2%} test {res['test_wer']:.2%} (best dev greedy {min(e['dev_wer_greedy'] for e in res['epochs']):.2%}), {wall:.0f}s")
    save_result(work, key, res)
    return res


def recipe_rows() -> dict[str, dict]:
    from data.augment import RECIPES

    rows = {"none": {}}
    for name in AUG_NAMES:
        rows[name] = {name: RECIPES["all"][name]}
    rows["all"] = {"recipe": "all"}
    return rows


def stage_table(work: Path, data_dir: Path, seeds, epochs: int, extra_rows: dict | None = None, rows: list | None = None) -> None:
    """One train.py run per row and seed. extra_rows: name -> {"augment": {...}, other TrainConfig fields}."""
    table = {name: {"augment": aug} for name, aug in recipe_rows().items()}
    table.update(extra_rows or {})
    for seed in seeds:
        for row, fields in table.items():
            if rows and row not in rows:
                continue
            fields = dict(fields)
            cfg = write_config(work, f"table-{row}", fields.pop("augment", {}), fields)
            train_run(work, f"table/{row}/s{seed}/e{epochs}", data_dir, cfg, epochs, seed)


def chosen_recipe(name: str) -> dict:
    from data.augment import RECIPES

    if name in RECIPES:
        return {"recipe": name}
    return json.loads(name)  # a JSON table


def stage_compare(work: Path, data_dir: Path, seeds, epochs: int, recipe: str, recipe_extra: dict, label: str) -> None:
    for seed in seeds:
        base = train_run(work, f"compare/defaults/s{seed}/e{epochs}", data_dir, None, epochs, seed)
        cfg = write_config(work, f"compare-{label}", chosen_recipe(recipe), recipe_extra)
        train_run(work, f"compare/{label}/s{seed}/e{epochs}", data_dir, cfg, epochs, seed)
        bigru_run(work, f"compare/bigru/s{seed}/e{epochs}", data_dir, base.get("wall_s") or 300, seed)


def bigru_run(work: Path, key: str, data_dir: Path, budget: float, seed: int) -> dict:
    """The BiGRU baseline for `budget` seconds (a subprocess, one thread), kept in results.json."""
    done = load_results(work).get(key, {})
    if "test_wer" in done:
        return done
    log(f"{key}: BiGRU for {budget:.0f}s (the defaults' wall time)")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "bigru", "--data", str(data_dir), "--seconds", str(budget),
                           "--seed", str(seed)], cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "logs" / f"{key.replace('/', '_')}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr[-20000:])
    if proc.returncode != 0 or not lines:
        log(f"{key}: FAILED exit {proc.returncode}: {proc.stderr[-1500:]}")
        return {}
    res = {**json.loads(lines[-1][7:]), "wall_s": round(time.perf_counter() - t0, 1)}
    log(f"{key}: dev {res['dev_wer']:.2%} test {res['test_wer']:.2%}, {res['epochs_run']} epochs in {res['train_s']:.0f}s")
    save_result(work, key, res)
    return res


# ============================================================================ signer folds

# The rows of the fold grid besides the BiGRU: name -> TrainConfig fields (None: train.py as it
# is). "defaults": the recipe the folds were first measured with and the BiGRU's time budget
# comes from, train.py's defaults until they dropped the temporal block: the mirror recipe on all
# four modalities (6516 features a frame). "lead": leading-hand canonicalisation instead of
# random mirroring; "lead_noface": the same without the face mesh (1404 of the 1629 raw values);
# "lead_handdrop": with hand dropout (a signer whose hand MediaPipe loses more often than in
# training makes the model insert signs where the hand comes back).
# every row names its inputs: the rows measured before the default inputs changed keep all 6516 features
FOLD_RECIPES = {
    "defaults": {"augment": {"recipe": "default"}, "modalities": "all"},
    "lead": {"augment": {}, "lead_hand": "right_hand", "modalities": "all"},
    "lead_noface": {"augment": {}, "lead_hand": "right_hand", "modalities": ["pose", "hands", "temporal"]},
    "lead_handdrop": {"augment": {"hand_dropout": {"p": 0.5, "max_fraction": 0.3}}, "lead_hand": "right_hand", "modalities": "all"},
    "notemporal": {"augment": {"recipe": "default"}, "modalities": ["pose", "hands", "face"]},  # train.py's defaults
    # the same with a weight average (TrainConfig.ema_decay; ~100 steps' horizon, 63 steps an epoch here)
    "notemporal_ema": {"augment": {"recipe": "default"}, "modalities": ["pose", "hands", "face"], "ema_decay": 0.99},
    # the temporal block of the pose and hands alone (data/layout.py: "motion"), the face mesh's left out
    "motion": {"augment": {"recipe": "default"}, "modalities": ["pose", "hands", "face", "motion"]},
    # the mirror with small rotations, shears and aspect changes (p 0.8) and speed changes (p 0.5)
    "geometric": {"augment": {"mirror": 0.5, "affine": {"p": 0.8}, "speed": 0.5}, "modalities": ["pose", "hands", "face"]},
    # the same with more dropout (0.3, default 0.1) and weight decay (0.05, default 0.01)
    "geometric_reg": {"augment": {"mirror": 0.5, "affine": {"p": 0.8}, "speed": 0.5}, "modalities": ["pose", "hands", "face"],
                      "model_overrides": {"dropout": 0.3}, "weight_decay": 0.05},
}


def fold_assignment(signers, k: int, seed: int = 0, n_dev: int = 4) -> list[dict[str, str]]:
    """K folds over signers, each signer -> train/dev/test. The signers, shuffled by `seed`, are dealt
    into k groups whose sizes differ by at most one; fold i tests group i (so each signer is in test
    exactly once), takes the first n_dev signers of group i+1 as dev and trains on the rest."""
    order = sorted({str(s) for s in signers})
    order = [order[j] for j in np.random.default_rng(seed).permutation(len(order))]
    groups = [order[j::k] for j in range(k)]
    if k < 2 or len(order) < k:
        raise ValueError(f"{len(order)} signers cannot make {k} folds (need k >= 2 and a signer a fold)")
    folds = []
    for i in range(k):
        test, dev = set(groups[i]), set(groups[(i + 1) % k][:n_dev])
        folds.append({s: "test" if s in test else "dev" if s in dev else "train" for s in order})
        if "train" not in folds[-1].values():
            raise ValueError(f"fold {i}: no signer left to train on ({len(order)} signers, {len(test)} test, {len(dev)} dev)")
    return folds


def fold_name(k: int, fold_seed: int) -> str:
    """The name of a fold set in WORK/folds and in results.json: k5, or k5f1 for fold seed 1."""
    return f"k{k}" if fold_seed == 0 else f"k{k}f{fold_seed}"


def build_folds(work: Path, k: int, seed: int = 0, sizes: tuple | None = None) -> list[Path]:
    """One sentence corpus a fold, made by the sentence builder itself: the clip corpus (WORK/kaggle)
    copied with the fold's signer split in its manifest, then `python -m data.convert sentences
    --keep-splits` (its default 500/80/80 sentences unless `sizes`, the lengths and transitions of
    the build stage)."""
    import dataclasses

    from data.corpus import Corpus, atomic_copy, write_manifest

    source = Corpus(work / "kaggle")
    out = []
    for i, split_of in enumerate(fold_assignment([r.signer for r in source.records], k, seed)):
        root = work / "folds" / fold_name(k, seed) / f"fold{i}"
        clips = root / "clips"
        records = [dataclasses.replace(r, split=split_of[r.signer]) for r in source.records]
        for rec in records:
            if not (clips / rec.path).is_file():
                atomic_copy(source.file(rec), clips / rec.path)
        write_manifest(clips, records)
        convert(["sentences", str(clips), "--out", str(root / "sentences"), "--keep-splits", "--seed", str(seed),
                 *(["--sizes", *map(str, sizes)] if sizes else [])])
        out.append(root / "sentences")
    return out


def fold_shifts(data_dir: Path) -> dict:
    """Each test signer's sentences against the fold's train split: the named shifts of data/drift.py
    (the check `python -m harness drift` and model.evaluate print), {signer: [{"group", "text"}]}."""
    from data.corpus import Corpus
    from data.drift import compare
    from data.profile import profile_records

    corpus = Corpus(data_dir)
    reference = profile_records(corpus, corpus.split("train"), "train")
    out = {}
    for signer in sorted({r.signer for r in corpus.split("test")}):
        new = profile_records(corpus, [r for r in corpus.split("test") if r.signer == signer], "test")
        drift = compare(reference, new, normalize="body")
        out[signer] = [{"group": f["group"], "text": f["text"]} for f in drift.fired]
    return out


def per_signer(data_dir: Path, samples: dict) -> dict:
    """{sample id: [errors, reference words]} of a test split -> {signer: [errors, words]}."""
    from data.corpus import Corpus

    signer_of = {r.id: r.signer for r in Corpus(data_dir).split("test")}
    out: dict = {}
    for sid, (errors, words) in samples.items():
        e, w = out.get(signer_of[sid], (0, 0))
        out[signer_of[sid]] = [e + int(errors), w + int(words)]
    return out


def evaluated_samples(work: Path, key: str, checkpoint: Path, beam_width: int | None = None) -> dict:
    """{sample id: [errors, reference words]} of the test split, by `python -m model.evaluate` (the
    checkpoint's own configuration: what a user's evaluation of it gives; beam_width: another decoder)."""
    import csv

    out_csv = work / "evals" / f"{key.replace('/', '_')}.csv"
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    decoder = ["--beam_width", str(beam_width)] if beam_width else []
    proc = subprocess.run([sys.executable, "-m", "model.evaluate", str(checkpoint), "--split", "test", "--out", str(out_csv), "--threads", "1", *decoder],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        log(f"{key}: model.evaluate failed (exit {proc.returncode}): {proc.stderr[-800:]}")
        return {}
    with open(out_csv, newline="") as f:
        return {row["id"]: [int(row["errors"]), int(row["ref_words"])] for row in csv.DictReader(f)}


def samples_wer(samples: dict) -> float:
    """WER over {sample id: [errors, reference words]}."""
    return sum(v[0] for v in samples.values()) / sum(v[1] for v in samples.values())


def greedy_run(work: Path, key: str, greedy: str, res: dict, data_dir: Path) -> None:
    """The checkpoint of run `key` decoded greedily (train.py's epoch lines; its closing lines use
    the configured beam), kept as a row of its own under `greedy`: dev WER of the best epoch, test
    WER and per-signer errors by `python -m model.evaluate --beam_width 1`."""
    if not res.get("epochs") or greedy in load_results(work):
        return
    samples = evaluated_samples(work, greedy, work / "runs" / key / "best.pt", beam_width=1)
    if samples:
        save_result(work, greedy, {"decoder": "greedy", "checkpoint": key, "dev_wer": min(e["dev_wer_greedy"] for e in res["epochs"]),
                                   "test_wer": samples_wer(samples), "test_signers": per_signer(data_dir, samples)})


def signer_bootstrap(signers: dict, draws: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Pooled WER over signers ({signer: [errors, words]}) and its 95% bootstrap interval, signers
    drawn with replacement (seeded)."""
    e = np.array([v[0] for v in signers.values()], dtype=np.float64)
    w = np.array([v[1] for v in signers.values()], dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(e), size=(draws, len(e)))
    wer = e[idx].sum(axis=1) / w[idx].sum(axis=1)
    lo, hi = np.percentile(wer, [2.5, 97.5])
    return float(e.sum() / w.sum()), float(lo), float(hi)


def stage_folds(work: Path, k: int, fold_seed: int, seeds, epochs: int, rows: list | None = None, fold_ids: list | None = None,
                extra_rows: dict | None = None) -> None:
    """Every row of FOLD_RECIPES (and extra_rows) and the BiGRU on each fold, fold by fold, for each
    training seed (the folds and their sentences come from `fold_seed`); a finished fold-run is kept
    in results.json (with its per-signer test errors) and not run again."""
    recipes = {**FOLD_RECIPES, **(extra_rows or {})}
    name = fold_name(k, fold_seed)
    for i, data_dir in enumerate(build_folds(work, k, fold_seed)):
        if fold_ids is not None and i not in fold_ids:
            continue
        shift_key = f"folds/{name}/shifts/fold{i}"
        if shift_key not in load_results(work):
            save_result(work, shift_key, fold_shifts(data_dir))
        for seed in seeds:
            fold_runs(work, name, i, data_dir, recipes, rows, seed, epochs)


def fold_runs(work: Path, name: str, i: int, data_dir: Path, recipes: dict, rows: list | None, seed: int, epochs: int) -> None:
    """The rows and the BiGRU on fold i with one training seed."""
    for row, fields in recipes.items():
        if rows and row not in rows:
            continue
        key = f"folds/{name}/{row}/fold{i}/s{seed}/e{epochs}"
        cfg = write_config(work, f"fold-{row}", dict(fields).pop("augment", {}), {f: v for f, v in fields.items() if f != "augment"}) if fields is not None else None
        res = train_run(work, key, data_dir, cfg, epochs, seed)
        if "test_wer" in res and "test_signers" not in res:
            samples = evaluated_samples(work, key, work / "runs" / key / "best.pt")
            if samples:
                save_result(work, key, {**res, "test_signers": per_signer(data_dir, samples), "evaluate_test_wer": samples_wer(samples)})
        greedy_run(work, key, f"folds/{name}/{row}_greedy/fold{i}/s{seed}/e{epochs}", res, data_dir)
    if rows and "bigru" not in rows:
        return
    key = f"folds/{name}/bigru/fold{i}/s{seed}/e{epochs}"
    base = load_results(work).get(f"folds/{name}/defaults/fold{i}/s{seed}/e{epochs}", {})
    res = bigru_run(work, key, data_dir, base.get("wall_s") or 300, seed)
    if "test_samples" in res and "test_signers" not in res:
        save_result(work, key, {**res, "test_signers": per_signer(data_dir, res["test_samples"])})


def stage_onehand(work: Path, seed: int, epochs: int, hand: str = "right_hand", only: list | None = None, corpus_seed: int = 0) -> Path:
    """A one-handed task from the real clips: the signers none of whose clips the other hand leads
    (data/profile.py: sample_leading_hand), made into sentences by the sentence builder (its default
    signer split); train.py with no augmentation and with the random mirror, on all 6516 features
    and on pose, hands and face, --table-epochs epochs each (--rows: only these)."""
    from data.corpus import Corpus, atomic_copy, write_manifest
    from data.profile import sample_leading_hand

    source = Corpus(work / "kaggle")
    lead = {r.id: sample_leading_hand(source.load(r)) for r in source.records}
    other = {r.signer for r in source.records if lead[r.id] not in (None, hand)}
    records = [r for r in source.records if r.signer not in other]
    root = work / "onehand" / hand
    for rec in records:
        if not (root / "clips" / rec.path).is_file():
            atomic_copy(source.file(rec), root / "clips" / rec.path)
    write_manifest(root / "clips", records)
    log(f"one-handed ({hand}): {len(records)} clips of {len({r.signer for r in records})} signers "
        f"({sum(lead[r.id] == hand for r in records)} led by it, {sum(lead[r.id] is None for r in records)} by neither)")
    data_dir = root / "sentences"
    convert(["sentences", str(root / "clips"), "--out", str(data_dir), "--seed", str(corpus_seed)])  # one corpus for every training seed
    # canonicalisation mirrors the sentences the other hand leads: none here, so its row is the
    # unaugmented one by construction (counted, not trained)
    sentences = Corpus(data_dir)
    mirrored = sum(sample_leading_hand(sentences.load(r)) not in (None, hand) for r in sentences.records)
    save_result(work, f"onehand/{hand}/lead_mirrors", {"sentences": len(sentences.records), "mirrored": mirrored})
    log(f"one-handed ({hand}): lead_hand={hand} mirrors {mirrored} of {len(sentences.records)} sentences")
    # none / defaults: without augmentation and with the mirror, on all 6516 features (train.py's
    # defaults when the task was first measured); the same two on pose, hands and face (today's
    # default inputs: "notemporal" is train.py's defaults); the same two with the pose and hands'
    # motion; the mirror on pose, hands and face with a weight average (the fold row notemporal_ema)
    no_temporal = {"modalities": ["pose", "hands", "face"]}
    motion = {"modalities": ["pose", "hands", "face", "motion"]}
    rows = (("none", {"augment": {}, "modalities": "all"}), ("defaults", {"augment": {"recipe": "default"}, "modalities": "all"}),
            ("notemporal_none", {"augment": {}, **no_temporal}), ("notemporal", {"augment": {"recipe": "default"}, **no_temporal}),
            ("motion_none", {"augment": {}, **motion}), ("motion", {"augment": {"recipe": "default"}, **motion}),
            ("notemporal_ema", {"augment": {"recipe": "default"}, **no_temporal, "ema_decay": 0.99}))
    for row, fields in rows:
        if only and row not in only:
            continue
        cfg = write_config(work, f"onehand-{row}", fields["augment"], {k: v for k, v in fields.items() if k != "augment"})
        res = train_run(work, f"onehand/{hand}/{row}/s{seed}/e{epochs}", data_dir, cfg, epochs, seed)
        greedy_run(work, f"onehand/{hand}/{row}/s{seed}/e{epochs}", f"onehand/{hand}/{row}_greedy/s{seed}/e{epochs}", res, data_dir)
    return data_dir


def fold_report(res: dict) -> list[str]:
    """The fold table (dev/test WER a fold, mean, worst, pooled WER with its signer bootstrap), and
    the worst signers' WER beside the shifts that fire for them."""
    runs: dict = {}  # (k, seed, epochs) -> row -> fold -> result
    shifts: dict = {}
    for key, v in res.items():
        parts = key.split("/")
        if parts[0] != "folds":
            continue
        if parts[2] == "shifts":
            shifts.setdefault(parts[1], {}).update({signer: (parts[3], fired) for signer, fired in v.items()})
            continue
        _, kk, row, fold, seed, ep = parts
        if "test_wer" in v:
            runs.setdefault((kk, seed, ep), {}).setdefault(row, {})[int(fold[4:])] = v
    lines = []
    for (kk, seed, ep), table in sorted(runs.items()):
        folds = sorted({f for row in table.values() for f in row})
        lines += [f"## signer folds ({kk[1:]} folds, seed {seed[1:]}, {ep[1:]} epochs; dev / test WER, beam 5, best dev epoch)", "",
                  "| row | " + " | ".join(f"fold {f}" for f in folds) + " | mean test | worst test | pooled test [95% signer bootstrap] | beats BiGRU on every fold |",
                  "|---|" + "---|" * (len(folds) + 4)]
        baseline = table.get("bigru", {})
        order = [r for r in (*FOLD_RECIPES, "bigru") if r in table] + sorted(r for r in table if r not in FOLD_RECIPES and r != "bigru")
        for row in order:
            got = table[row]
            cells = [f"{got[f]['dev_wer']:.1%} / {got[f]['test_wer']:.1%}" if f in got else "-" for f in folds]
            tests = [got[f]["test_wer"] for f in folds if f in got]
            signers = {s: v for f in folds if f in got for s, v in got[f].get("test_signers", {}).items()}
            pooled = "-"
            if signers:
                p, lo, hi = signer_bootstrap(signers)
                pooled = f"{p:.1%} [{lo:.1%}, {hi:.1%}] ({len(signers)} signers)"
            beats = "-" if row == "bigru" or not baseline else (
                "yes" if all(f in baseline and got[f]["test_wer"] < baseline[f]["test_wer"] for f in got) else "no")
            lines.append(f"| {row} | " + " | ".join(cells) + f" | {np.mean(tests):.1%} ({len(tests)} folds) | {max(tests):.1%} | {pooled} | {beats} |")
        lines.append("")
        # the worst signers of today's defaults (else the first row), each row's WER, the shifts that fire
        ref_row = "defaults" if "defaults" in table else order[0]
        per: dict = {}
        for row in order:
            for f, v in table[row].items():
                for signer, (e, w) in v.get("test_signers", {}).items():
                    per.setdefault(signer, {"fold": f})[row] = e / w
        worst = sorted((s for s in per if ref_row in per[s]), key=lambda s: -per[s][ref_row])
        if worst:
            lines += ["| signer | fold | " + " | ".join(order) + " | shifts that fire (data/drift.py, signer's test sentences vs the fold's train split) |",
                      "|---|---|" + "---|" * (len(order) + 1)]
            for signer in worst:
                fired = shifts.get(kk, {}).get(signer, (None, []))[1]
                named = "; ".join(f"{x['group']}: {x['text']}" for x in fired) or "none"
                lines.append(f"| {signer} | {per[signer]['fold']} | " + " | ".join(f"{per[signer][r]:.1%}" if r in per[signer] else "-" for r in order)
                             + f" | {named} |")
            lines.append("")
            # what each named shift has cost: the WER of the signers it fires for against the others'
            def kind(x):  # the group and the finding's first words: "presence (hands detected)", "presence (left hand)"
                return f"{x['group']} ({' '.join(x['text'].split()[:2])})"

            groups = sorted({kind(x) for _, fired in shifts.get(kk, {}).values() for x in fired})
            if groups:
                lines += ["| shift | signers it fires for | " + " | ".join(f"{r} WER: fires / does not" for r in order) + " |",
                          "|---|---|" + "---|" * len(order)]
                for group in groups:
                    fires = {sg for sg, (_, fired) in shifts[kk].items() if any(kind(x) == group for x in fired)}
                    cells = []
                    for r in order:
                        on = [per[sg][r] for sg in per if r in per[sg] and sg in fires]
                        off = [per[sg][r] for sg in per if r in per[sg] and sg not in fires]
                        cells.append(f"{np.mean(on):.1%} / {np.mean(off):.1%}" if on and off else "-")
                    lines.append(f"| {group} | {len(fires & set(per))} of {len(per)} | " + " | ".join(cells) + " |")
                lines.append("(mean of per-signer test WER; every signer is tested once)")
                lines.append("")
    lines += seeds_summary(runs)
    return lines


def seeds_summary(runs: dict) -> list[str]:
    """Over training seeds (fold sets with more than one): each row's test WER a fold (mean over
    seeds), mean, worst fold, pooled WER over signers (both seeds' errors) with its bootstrap, and
    on how many (fold, seed) runs it beats the BiGRU of the same fold and seed."""
    lines = []
    for kk, ep in sorted({(kk, ep) for kk, _, ep in runs}):
        seeds = sorted(seed for k2, seed, e2 in runs if (k2, e2) == (kk, ep))
        if len(seeds) < 2:
            continue
        rows = sorted({r for seed in seeds for r in runs[(kk, seed, ep)]}, key=lambda r: (*FOLD_RECIPES, "bigru", r).index(r))
        folds = sorted({f for seed in seeds for row in runs[(kk, seed, ep)].values() for f in row})
        lines += [f"## signer folds ({kk[1:]} folds, {ep[1:]} epochs) over seeds {', '.join(s[1:] for s in seeds)}: test WER, mean over seeds", "",
                  "| row | " + " | ".join(f"fold {f}" for f in folds) + " | mean | worst fold | pooled [95% signer bootstrap] | runs beating the BiGRU |",
                  "|---|" + "---|" * (len(folds) + 4)]
        for row in rows:
            by_fold = {f: [runs[(kk, s, ep)][row][f]["test_wer"] for s in seeds if f in runs[(kk, s, ep)].get(row, {})] for f in folds}
            signers: dict = {}
            wins = []
            for s in seeds:
                for f, v in runs[(kk, s, ep)].get(row, {}).items():
                    for sg, (e, w) in v.get("test_signers", {}).items():
                        signers[sg] = [signers.get(sg, [0, 0])[0] + e, signers.get(sg, [0, 0])[1] + w]
                    base = runs[(kk, s, ep)].get("bigru", {}).get(f)
                    if base is not None and row != "bigru":
                        wins.append(v["test_wer"] < base["test_wer"])
            means = [np.mean(v) for v in by_fold.values() if v]
            pooled = "-"
            if signers:
                pw, lo, hi = signer_bootstrap(signers)
                pooled = f"{pw:.1%} [{lo:.1%}, {hi:.1%}]"
            cells = [f"{np.mean(v):.1%} ({len(v)})" if v else "-" for v in by_fold.values()]
            lines.append(f"| {row} | " + " | ".join(cells) + f" | {np.mean(means):.1%} | {max(means):.1%} | {pooled} | "
                         + (f"{sum(wins)} of {len(wins)}" if wins else "-") + " |")
        lines.append("")
    return lines


# ============================================================================ throughput


def stage_throughput(work: Path, data_dir: Path, recipe: str, batches: int = 30, threads: int = 1) -> dict:
    """Loader batches/s with augmentation vs the default model's train-step batches/s, side by side."""
    import torch

    from data.dataset import collate
    from model import training
    from model.config import TrainConfig

    torch.set_num_threads(threads)
    figures = {}
    base = TrainConfig(data_dir=str(data_dir))
    for name, cfg in (("recipe", base.replace(augment=chosen_recipe(recipe))), ("recipe_no_cache", base.replace(augment=chosen_recipe(recipe), cache_mb=0)),
                      ("none", base)):
        training.seed_everything(0)
        ds = training.build_data(cfg).splits["train"]
        sampler = training.ShardedSampler(len(ds), 0, 1, seed=0)
        loader = training.make_loader(ds, cfg.batch_size, shuffle=False, sampler=sampler)
        for _ in zip(range(batches), loader):  # warm: the first epoch fills the cache
            pass
        rates = []
        for epoch in (1, 2):
            sampler.set_epoch(epoch)
            t0, n = time.perf_counter(), 0
            for _, batch in zip(range(batches), loader):
                n += 1
            rates.append(n / (time.perf_counter() - t0))
        figures[f"loader_{name}_batches_per_s"] = round(max(rates), 2)
    # the consumer: train_step of the default model on augmented batches collated beforehand
    cfg = base.replace(augment=chosen_recipe(recipe))
    training.seed_everything(0)
    data = training.build_data(cfg)
    ds = data.splits["train"]
    model = training.build_model(cfg, len(data.vocab), data.input_dim)
    opt = training.build_optimizer(cfg, model)
    scaler = training.make_scaler(torch.device("cpu"), cfg)
    order = list(training.ShardedSampler(len(ds), 0, 1, seed=0))
    pre = [collate([ds[i] for i in order[k : k + cfg.batch_size]]) for k in range(0, cfg.batch_size * (batches // 3 + 2), cfg.batch_size)]
    training.train_step(model, pre[0], opt, scaler, cfg, torch.device("cpu"))  # warm-up
    t0 = time.perf_counter()
    for b in pre[1:]:
        training.train_step(model, b, opt, scaler, cfg, torch.device("cpu"))
    figures["train_step_batches_per_s"] = round((len(pre) - 1) / (time.perf_counter() - t0), 2)
    for name in ("recipe", "recipe_no_cache", "none"):
        figures[f"ratio_{name}"] = round(figures[f"loader_{name}_batches_per_s"] / figures["train_step_batches_per_s"], 1)
    figures["load_avg_1min"] = round(os.getloadavg()[0], 2)
    figures["threads"] = threads
    log(f"throughput: {figures}")
    save_result(work, "throughput", figures)
    return figures


# ============================================================================ the BiGRU baseline


def bigru_features(raw: np.ndarray) -> np.ndarray:
    """[T, 1629] raw -> [T, 134]: pose 0-24 and both hands, x/y, body-centred, missing -> 0."""
    from data.layout import COORDS, LAYOUT, N_HAND
    from data.normalize import _body_frame

    pts = raw.reshape(raw.shape[0], -1, COORDS)
    hand0 = LAYOUT.left_hand.start // COORDS
    keep = np.concatenate([np.arange(25), np.arange(hand0, hand0 + 2 * N_HAND)])
    centre, width = _body_frame(raw)
    xy = (pts[:, keep, :2] - centre) / max(width, 1e-3)
    return np.nan_to_num(xy.reshape(raw.shape[0], -1), nan=0.0).astype(np.float32)


def bigru_main(data: str, seconds: float, seed: int, hidden: int = 128, batch_size: int = 8, lr: float = 1e-3) -> int:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from data.corpus import Corpus
    from data.dataset import Vocabulary
    from model.metrics import word_error_rate
    from model.training import decode

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    corpus = Corpus(data)
    vocab = Vocabulary.from_records(corpus.records)
    splits = {s: [(r, torch.from_numpy(bigru_features(np.asarray(corpus.load(r))))) for r in corpus.split(s)] for s in ("train", "dev", "test")}

    class BiGRU(nn.Module):
        def __init__(self, d_in, vocab_size):
            super().__init__()
            self.proj = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU())
            self.gru = nn.GRU(hidden, hidden, num_layers=2, batch_first=True, bidirectional=True, dropout=0.1)
            self.head = nn.Linear(2 * hidden, vocab_size)

        def forward(self, x, lengths):  # x (B, T, 134)
            packed = nn.utils.rnn.pack_padded_sequence(self.proj(x), lengths, batch_first=True, enforce_sorted=False)
            y, _ = self.gru(packed)
            y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])  # (B, T, 2H)
            return self.head(y).log_softmax(-1), lengths

    def batch(items):
        lengths = torch.tensor([len(x) for _, x in items])
        x = nn.utils.rnn.pad_sequence([x for _, x in items], batch_first=True)
        targets = [torch.tensor(vocab.encode(r.glosses, r.id, "skip")) for r, _ in items]
        return x, lengths, torch.cat(targets), torch.tensor([len(t) for t in targets]), [list(r.glosses) for r, _ in items]

    model = BiGRU(splits["train"][0][1].shape[1], len(vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)

    @torch.no_grad()
    def hypotheses(split, beam):
        model.eval()
        refs, hyps = [], []
        items = splits[split]
        for k in range(0, len(items), batch_size):
            x, lengths, _, _, ref = batch(items[k : k + batch_size])
            lp, ol = model(x, lengths)
            refs += ref
            hyps += [vocab.decode(h.tokens) for h in decode(lp, ol, beam)]
        return refs, hyps

    def wer(split, beam):
        return word_error_rate(*hypotheses(split, beam)).wer

    best, best_state, epoch, train_s = float("inf"), None, 0, 0.0
    budget_end = t_start + seconds
    while time.perf_counter() < budget_end:
        epoch += 1
        model.train()
        t0 = time.perf_counter()
        order = rng.permutation(len(splits["train"]))
        losses = []
        for k in range(0, len(order), batch_size):
            x, lengths, targets, tlen, _ = batch([splits["train"][i] for i in order[k : k + batch_size]])
            lp, ol = model(x, lengths)
            loss = F.ctc_loss(lp.transpose(0, 1), targets, ol, tlen, blank=0, reduction="mean", zero_infinity=False)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            losses.append(loss.item())
            if time.perf_counter() >= budget_end:
                break
        train_s += time.perf_counter() - t0
        dev = wer("dev", 1)
        print(f"epoch {epoch} loss {np.mean(losses):.4f} dev WER {dev:.2%} (greedy) {time.perf_counter() - t0:.1f}s", flush=True)
        if dev < best:
            best, best_state = dev, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    refs, hyps = hypotheses("test", 5)
    scored = [word_error_rate([r], [h]) for r, h in zip(refs, hyps)]
    result = {"dev_wer": wer("dev", 5), "test_wer": word_error_rate(refs, hyps).wer, "best_dev_greedy": best, "epochs_run": epoch,
              "train_s": round(train_s, 1), "budget_s": seconds, "parameters": sum(p.numel() for p in model.parameters()),
              "test_samples": {r.id: [w.substitutions + w.deletions + w.insertions, w.n_ref_words] for (r, _), w in zip(splits["test"], scored)}}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# ============================================================================ report


def stage_report(work: Path) -> str:
    res = load_results(work)
    lines = []
    tp = res.get("throughput")
    if tp:
        lines += ["## loader vs train step (batches/s, 1 thread)", "",
                  "| loader | batches/s | x train step |", "|---|---|---|"]
        for name in ("recipe", "recipe_no_cache", "none"):
            lines.append(f"| {name} | {tp[f'loader_{name}_batches_per_s']} | {tp[f'ratio_{name}']}x |")
        lines += [f"| train step (default model) | {tp['train_step_batches_per_s']} | 1x |", f"(1-min load average {tp['load_avg_1min']})", ""]
    table = {k: v for k, v in res.items() if k.startswith("table/")}
    if table:
        lines += ["## recipe table (unseen-signer WER, beam 5, best dev epoch)", "", "| augmentation | seed | epochs | dev WER | test WER | best dev greedy | wall |", "|---|---|---|---|---|---|---|"]
        for key in sorted(table, key=lambda k: (k.split("/")[2], k.split("/")[3], list(recipe_rows()).index(k.split("/")[1]) if k.split("/")[1] in recipe_rows() else 99)):
            v = table[key]
            _, row, seed, ep = key.split("/")
            if "test_wer" not in v:
                lines.append(f"| {row} | {seed} | {ep} | failed (exit {v.get('exit')}) | | | |")
                continue
            lines.append(f"| {row} | {seed[1:]} | {ep[1:]} | {v['dev_wer']:.2%} | {v['test_wer']:.2%} | {min(e['dev_wer_greedy'] for e in v['epochs']):.2%} | {v['wall_s']:.0f}s |")
        by_row: dict = {}
        for key, v in table.items():
            if "test_wer" in v:
                by_row.setdefault((key.split("/")[1], key.split("/")[3]), []).append(v)
        if any(len(v) > 1 for v in by_row.values()):
            lines += ["", "| augmentation | epochs | seeds | dev WER mean (min-max) | test WER mean (min-max) |", "|---|---|---|---|---|"]
            for (row, ep), vs in sorted(by_row.items(), key=lambda kv: (kv[0][1], np.mean([v["dev_wer"] for v in kv[1]]))):
                d, t = [v["dev_wer"] for v in vs], [v["test_wer"] for v in vs]
                lines.append(f"| {row} | {ep[1:]} | {len(vs)} | {np.mean(d):.2%} ({min(d):.1%}-{max(d):.1%}) | {np.mean(t):.2%} ({min(t):.1%}-{max(t):.1%}) |")
        lines.append("")
    comp = {k: v for k, v in res.items() if k.startswith("compare/")}
    if comp:
        lines += ["## side by side", "", "| run | seed | epochs | dev WER | test WER | wall | train |", "|---|---|---|---|---|---|---|"]
        for key in sorted(comp):
            v = comp[key]
            _, run, seed, ep = key.split("/")
            if "test_wer" not in v:
                lines.append(f"| {run} | {seed[1:]} | {ep[1:]} | failed | | | |")
                continue
            extra = f"{v['epochs_run']} epochs, " if "epochs_run" in v else ""
            lines.append(f"| {run} | {seed[1:]} | {ep[1:]} | {v['dev_wer']:.2%} | {v['test_wer']:.2%} | {v['wall_s']:.0f}s | {extra}{v.get('train_s', 0):.0f}s |")
    lines += fold_report(res)
    one = {k: v for k, v in res.items() if k.startswith("onehand/") and "test_wer" in v}
    if one:
        lines += ["## one-handed task (sentences of right-handed real clips)", "", "| run | dev WER | test WER | wall |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['dev_wer']:.2%} | {v['test_wer']:.2%} | " + (f"{v['wall_s']:.0f}s |" if "wall_s" in v else f"{v['decoder']} |")
                  for k, v in sorted(one.items())]
        lines += [f"({k}: {v['mirrored']} of {v['sentences']} sentences mirrored by canonicalisation)" for k, v in res.items() if k.endswith("/lead_mirrors")]
        lines.append("")
    text = "\n".join(lines)
    print(text)
    return text


# ============================================================================ CLI


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bigru"]:
        p = argparse.ArgumentParser(prog="signers.py bigru")
        p.add_argument("--data", required=True)
        p.add_argument("--seconds", type=float, required=True)
        p.add_argument("--seed", type=int, default=0)
        a = p.parse_args(argv[1:])
        return bigru_main(a.data, a.seconds, a.seed)
    p = argparse.ArgumentParser(prog="python benchmarks/signers.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=str(REPO / "runs" / "signers"), help="where corpora, runs and results.json go")
    p.add_argument("--stages", nargs="+", default=["build", "throughput", "table", "compare", "report"],
                   choices=["build", "throughput", "table", "compare", "folds", "onehand", "report"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--table-epochs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=20, help="epochs of the side-by-side runs (train.py's default)")
    p.add_argument("--recipe", default="default", help="augmentation of the 'recipe' runs: a data/augment.py recipe name or a JSON table")
    p.add_argument("--recipe-extra", default="{}", help="other TrainConfig fields of the 'recipe' runs, JSON")
    p.add_argument("--label", default="recipe", help="name of the recipe runs in results.json (one per recipe tried)")
    p.add_argument("--extra-rows", default="{}", help='more table rows, JSON: {"name": {"augment": {...}, "modalities": [...]}}')
    p.add_argument("--rows", nargs="*", default=None, help="run only these table rows (folds: these fold rows, 'bigru' included; onehand: these of none, defaults, notemporal_none, notemporal, motion_none, motion, notemporal_ema)")
    p.add_argument("--folds", type=int, default=5, help="signer folds of the folds stage")
    p.add_argument("--fold-epochs", type=int, default=10, help="epochs of each fold run")
    p.add_argument("--fold-seed", type=int, default=0, help="seed of the signer folds and their sentences, and of the one-handed sentences (--seeds: training seeds)")
    p.add_argument("--fold-ids", type=int, nargs="*", default=None, help="run only these folds (e.g. one process a half of them)")
    p.add_argument("--fold-rows", default="{}", help='more fold rows, JSON: {"name": {"augment": {...}, "lead_hand": "right_hand"}}')
    a = p.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "sentences"
    if "build" in a.stages:
        data_dir = stage_build(work)
    if "throughput" in a.stages:
        stage_throughput(work, data_dir, a.recipe)
    if "table" in a.stages:
        stage_table(work, data_dir, a.seeds, a.table_epochs, json.loads(a.extra_rows), a.rows)
    if "compare" in a.stages:
        stage_compare(work, data_dir, a.seeds, a.epochs, a.recipe, json.loads(a.recipe_extra), a.label)
    if "folds" in a.stages:
        stage_folds(work, a.folds, a.fold_seed, a.seeds, a.fold_epochs, a.rows, a.fold_ids, json.loads(a.fold_rows))
    if "onehand" in a.stages:
        stage_onehand(work, a.seeds[0], a.table_epochs, only=a.rows, corpus_seed=a.fold_seed)
    if "report" in a.stages:
        stage_report(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
