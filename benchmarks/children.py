"""Measurements that need their own memory figures or a fresh interpreter: each runs as a child
`python benchmarks/bench.py --child JSON`, which prints one `BENCH_CHILD {...}` line."""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks" / "bench.py"
CHILD_TAG = "BENCH_CHILD "


def _status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Meter:
    """Wall time and peak resident memory of the part of a child after `start()`.

    On Linux the peak (VmHWM) is reset at start() through /proc/self/clear_refs, so imports and
    set-up before it do not count; elsewhere ru_maxrss (peak of the whole process) is used.
    """

    def __init__(self):
        self.t0 = time.perf_counter()
        self.rss_start_kb = 0
        self.reset = False

    def start(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.rss_start_kb = _status_kb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.t0 = time.perf_counter()

    def report(self) -> dict:
        seconds = time.perf_counter() - self.t0
        peak = (_status_kb("VmHWM") if self.reset else None) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        return {
            "seconds": round(seconds, 3),
            "rss_start_mb": round(self.rss_start_kb / 1024, 1),
            "peak_rss_mb": round(peak / 1024, 1),
            "peak_growth_mb": round((peak - self.rss_start_kb) / 1024, 1),
            "children_peak_rss_mb": round(children / 1024, 1),
            "peak_reset": self.reset,
        }


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its children that have ended."""
    own, ended = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime


def _child_scan(meter: Meter, corpus: str, workers: int = 0) -> dict:
    from data.corpus import Corpus
    from harness.scan import scan_corpus

    c = Corpus(corpus, validate=False)
    meter.start()
    scan = scan_corpus(c, workers=workers)
    return {"files": len(scan.files), "frames": sum(f.frames for f in scan.files), "errors": sum(bool(f.error) for f in scan.files)}


def _child_train_stats(meter: Meter, corpus: str) -> dict:
    from data.corpus import Corpus
    from data.dataset import compute_train_stats

    c = Corpus(corpus, validate=False)
    meter.start()
    stats = compute_train_stats(c)
    return {"train_samples": len(c.split("train")), "columns": int(np.asarray(stats.mean).shape[-1])}


def _child_iterate(meter: Meter, corpus: str, batch_size: int = 8, normalization: str = "per_sample") -> dict:
    from data.dataset import MediaPipeFeatureDataset
    from model import training

    ds = MediaPipeFeatureDataset(corpus, "train", normalization=normalization)
    loader = training.make_loader(ds, batch_size, shuffle=False)
    meter.start()
    frames = batches = 0
    for batch in loader:
        frames += int(batch.lengths.sum())
        batches += 1
    return {"batches": batches, "frames": frames, "samples": len(ds)}


def _child_scale_pass(meter: Meter, corpus: str, workers: int = 2) -> dict:
    """The streaming compat data pass: scan, then the data checks that read only its results."""
    from harness.context import HarnessContext
    from harness.suite import run_check
    from model.config import TrainConfig

    ctx = HarnessContext(TrainConfig(data_dir=corpus, device="cpu"), workers=workers)
    ctx.model()  # its output_lengths (the stride); built outside the timing
    meter.start()
    t = {}
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    scan = ctx.scan
    t["scan"] = time.perf_counter() - t0
    scan_cpu = _cpu_seconds() - cpu0  # the pool's workers have ended: their time is counted
    findings = {}
    for name in ("clean_features", "ctc_feasibility", "labels"):  # the data checks that read only the scan
        t0 = time.perf_counter()
        findings[name] = run_check(name, ctx).status
        t[name] = time.perf_counter() - t0
    return {
        "files": len(scan.files),
        "frames": sum(f.frames for f in scan.files),
        "errors": sum(bool(f.error) for f in scan.files),
        "findings": findings,
        "stage_seconds": {k: round(v, 2) for k, v in t.items()},
        "scan_cpu_seconds": round(scan_cpu, 2),
    }


def _child_gate(meter: Meter, out_dir: str, cache_dir: str) -> dict:
    from harness.gate import run_gate
    from model.config import TrainConfig

    cfg = TrainConfig(output_dir=out_dir)
    meter.start()
    first = run_gate(cfg, out_dir, cache_dir=cache_dir)
    t0 = time.perf_counter()
    second = run_gate(cfg, out_dir, cache_dir=cache_dir)
    cached_seconds = time.perf_counter() - t0
    return {
        "first_seconds": round(first.seconds, 2), "first_cached": first.cached, "passed": first.passed,
        "second_seconds": round(cached_seconds, 3), "second_cached": second.cached,
    }


def _child_bare_loop(meter: Meter, data_dir: str, config: str, epochs: int, threads: int, batch_size: int,
                     seed: int = 0, with_loader: bool = False, num_workers: int = 0) -> dict:
    """The bare training loop train.py is compared with: same data, model, batches and threads.

    Each epoch's batches (the order train.py's ShardedSampler gives, rank 0 of 1) are collated in
    memory before the clock starts; the step is forward, CTC, backward, AdamW and nothing else.
    with_loader also times an epoch read through the trainer's DataLoader with the same plain step,
    which separates data loading from the trainer's own overhead.
    """
    import torch
    import torch.nn.functional as F

    from data.dataset import collate
    from model import training
    from model.config import load_config

    torch.set_num_threads(threads)
    cfg = load_config(config, data_dir=data_dir, batch_size=batch_size, seed=seed, num_workers=num_workers)
    training.seed_everything(cfg.seed)
    data = training.build_data(cfg)
    ds = data.splits["train"]
    model = training.build_model(cfg, len(data.vocab))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = training.ShardedSampler(len(ds), 0, 1, seed=cfg.seed)
    loader = training.make_loader(ds, cfg.batch_size, shuffle=False, num_workers=cfg.num_workers, sampler=sampler)

    def step(batch) -> int:
        opt.zero_grad(set_to_none=True)
        log_probs, out_lengths = model(batch.features, batch.lengths)
        loss = F.ctc_loss(log_probs.transpose(0, 1), batch.targets, out_lengths, batch.target_lengths, blank=0, reduction="mean")
        loss.backward()
        opt.step()
        return int(batch.lengths.sum())

    meter.start()
    in_memory, through_loader = [], []
    for epoch in range(1, epochs + 1):
        sampler.set_epoch(epoch)
        order = list(sampler)
        batches = [collate([ds[i] for i in order[k : k + cfg.batch_size]]) for k in range(0, len(order), cfg.batch_size)]
        t0, frames = time.perf_counter(), 0
        for batch in batches:
            frames += step(batch)
        in_memory.append(frames / (time.perf_counter() - t0))
        del batches
        if with_loader:
            t0, frames = time.perf_counter(), 0
            for batch in loader:
                frames += step(batch)
            through_loader.append(frames / (time.perf_counter() - t0))
    return {"frames_per_s": [round(x, 1) for x in in_memory], "loader_frames_per_s": [round(x, 1) for x in through_loader]}


CHILD_TASKS = {
    "scan": _child_scan,
    "train_stats": _child_train_stats,
    "iterate": _child_iterate,
    "scale_pass": _child_scale_pass,
    "gate": _child_gate,
    "bare_loop": _child_bare_loop,
}


def run_child(task: str, timeout: float | None = None, **kwargs) -> dict:
    """Run CHILD_TASKS[task](**kwargs) in a fresh interpreter; its result plus Meter figures."""
    if task not in CHILD_TASKS:
        raise ValueError(f"unknown child task {task!r}; known: {sorted(CHILD_TASKS)}")
    spec = json.dumps({"task": task, "kwargs": kwargs})
    done = subprocess.run([sys.executable, str(BENCH), "--child", spec], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(CHILD_TAG)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"child task {task} {kwargs} failed (exit {done.returncode}):\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(CHILD_TAG):])


def child_main(spec_text: str) -> int:
    spec = json.loads(spec_text)
    meter = Meter()
    result = CHILD_TASKS[spec["task"]](meter, **spec.get("kwargs", {}))
    print(CHILD_TAG + json.dumps({**result, **meter.report()}), flush=True)
    return 0
