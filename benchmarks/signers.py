"""Unseen-signer benchmark on real Kaggle landmarks: today's defaults vs augmentation vs a small BiGRU.

    python benchmarks/signers.py [--work DIR] [--stages build throughput table compare report]
                                 [--seeds 0] [--table-epochs 10] [--epochs 20] [--recipe default]

Stages (each resumable: a finished run's result is kept in WORK/results.json and not re-run):

  build       Kaggle ISLR sample -> corpus (python -m data.convert kaggle), then continuous
              sentences of 2-5 signs, 500/80/80, split by signer 13/4/4 (python -m data.convert sentences)
  throughput  loader batches/s of the augmenting train split (the recipe, in-process loader,
              raw-landmark cache) vs batches/s the default model's train step consumes, 1 thread
  table       recipe table: no augmentation, each augmentation alone, all of them; one
              `python train.py --threads 1` subprocess per row and seed, --table-epochs epochs
  compare     side by side at --epochs: `python train.py` defaults, the same with the augmentation
              recipe, and the BiGRU baseline below given the wall time of the defaults' run
  report      the tables, from results.json

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


def stage_build(work: Path, seed: int = 0) -> Path:
    kaggle, sentences = work / "kaggle", work / "sentences"
    if not KAGGLE.exists():
        raise SystemExit(f"real data not available: {KAGGLE.resolve()} (see ../shared/data/README.md)")
    for argv in (["kaggle", str(KAGGLE), "--out", str(kaggle)], ["sentences", str(kaggle), "--out", str(sentences), "--seed", str(seed)]):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "data.convert", *argv], cwd=REPO, capture_output=True, text=True)
        log(f"python -m data.convert {' '.join(argv)}: exit {done.returncode} in {time.perf_counter() - t0:.1f}s; {done.stdout.strip()} {done.stderr.strip()[-500:]}")
        if done.returncode != 0:
            raise SystemExit(done.returncode)
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
        key = f"compare/bigru/s{seed}/e{epochs}"
        if "test_wer" in load_results(work).get(key, {}):
            continue
        budget = base.get("wall_s") or 300
        log(f"{key}: BiGRU for {budget:.0f}s (the defaults' wall time)")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "bigru", "--data", str(data_dir), "--seconds", str(budget),
                               "--seed", str(seed)], cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        (work / "logs").mkdir(parents=True, exist_ok=True)
        (work / "logs" / f"{key.replace('/', '_')}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr[-20000:])
        if proc.returncode != 0 or not lines:
            log(f"{key}: FAILED exit {proc.returncode}: {proc.stderr[-1500:]}")
            continue
        res = {**json.loads(lines[-1][7:]), "wall_s": round(time.perf_counter() - t0, 1)}
        log(f"{key}: dev {res['dev_wer']:.2%} test {res['test_wer']:.2%}, {res['epochs_run']} epochs in {res['train_s']:.0f}s")
        save_result(work, key, res)


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
    def wer(split, beam):
        model.eval()
        refs, hyps = [], []
        items = splits[split]
        for k in range(0, len(items), batch_size):
            x, lengths, _, _, ref = batch(items[k : k + batch_size])
            lp, ol = model(x, lengths)
            refs += ref
            hyps += [vocab.decode(h.tokens) for h in decode(lp, ol, beam)]
        return word_error_rate(refs, hyps).wer

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
    result = {"dev_wer": wer("dev", 5), "test_wer": wer("test", 5), "best_dev_greedy": best, "epochs_run": epoch, "train_s": round(train_s, 1),
              "budget_s": seconds, "parameters": sum(p.numel() for p in model.parameters())}
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
                   choices=["build", "throughput", "table", "compare", "report"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--table-epochs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=20, help="epochs of the side-by-side runs (train.py's default)")
    p.add_argument("--recipe", default="default", help="augmentation of the 'recipe' runs: a data/augment.py recipe name or a JSON table")
    p.add_argument("--recipe-extra", default="{}", help="other TrainConfig fields of the 'recipe' runs, JSON")
    p.add_argument("--label", default="recipe", help="name of the recipe runs in results.json (one per recipe tried)")
    p.add_argument("--extra-rows", default="{}", help='more table rows, JSON: {"name": {"augment": {...}, "modalities": [...]}}')
    p.add_argument("--rows", nargs="*", default=None, help="run only these table rows")
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
    if "report" in a.stages:
        stage_report(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
