"""The benchmark's sections: each measures one part of the project against its baseline, side by
side, and returns a SectionResult (rows of ratios, every figure JSON-ready)."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.against import section_against
from benchmarks.children import REPO, run_child
from benchmarks.corpora import training_corpus, write_synthetic_corpus
from benchmarks.measure import Row, SectionResult, best_of_alternating, load_average
from data.corpus import atomic_save_npy, atomic_write_text
from data.layout import FEATURE_DIM, RAW_DIM

VIDEOS = REPO / ".." / "shared" / "data" / "videos"
# the model of the --quick trainer comparison
QUICK_MODEL = "i3d_small"
MB = 1024 * 1024


def section_extraction(tmp: Path, quick: bool, rounds: int) -> SectionResult:
    res = SectionResult("extraction")
    videos = sorted(VIDEOS.glob("*.mp4"))
    if quick:  # one short clip: MediaPipe runs ~20-45 frames/s here
        videos = [v for v in videos if v.name == "test_video.mp4"] or videos[:1]
    if not videos:
        res.skipped = f"no videos in {VIDEOS.resolve()} (the shared data is absent)"
        return res
    import cv2

    from data.extract import new_holistic, read_frames
    from benchmarks.extract_bench import bench_bare, bench_ours, bench_workers

    decoded = [[cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in read_frames(v)] for v in videos]
    n_frames = sum(len(v) for v in decoded)
    new_holistic().close()  # the first start reads the graph files from disk: keep it out of both sides
    single = best_of_alternating({"bare": lambda: bench_bare(decoded), "ours": lambda: bench_ours(videos)}, rounds)

    copies = 4 if quick else 3
    inputs = tmp / "extract_inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    for v in videos:
        for c in range(copies):  # distinct ids, same content: a job list long enough for two workers
            link = inputs / f"{v.stem}_c{c}{v.suffix}"
            if not link.exists():
                link.symlink_to(v.resolve())
    runs = {1: 0, 2: 0}

    def workers(w: int) -> float:  # wall seconds of the CLI in a fresh interpreter, start-up included
        runs[w] += 1
        return bench_workers(inputs, w, tmp / f"extract_out{w}_{runs[w]}")

    parallel = best_of_alternating({1: lambda: workers(1), 2: lambda: workers(2)}, rounds, better=min)
    outs1, outs2 = sorted((tmp / "extract_out1_1" / "features").glob("*.npy")), sorted((tmp / "extract_out2_1" / "features").glob("*.npy"))
    match = len(outs1) == len(outs2) == len(videos) * copies and all(
        np.allclose(np.load(a), np.load(b), atol=1e-4, equal_nan=True) for a, b in zip(outs1, outs2)
    )
    bare, ours = single["bare"]["best"], single["ours"]["best"]
    w1, w2 = parallel[1]["best"], parallel[2]["best"]
    pf = n_frames * copies
    res.figures = {
        "videos": [v.name for v in videos], "frames": n_frames, "bare_fps": bare, "ours_fps": ours,
        "copies": copies, "workers1_seconds": w1, "workers2_seconds": w2, "outputs_match": match,
        "runs": {"bare": single["bare"]["all"], "ours": single["ours"]["all"], "workers1": parallel[1]["all"], "workers2": parallel[2]["all"]},
    }
    res.rows = [
        Row("extraction", "extract_vs_bare", "extract_sample / bare Holistic loop", ours / bare, f"{ours:.1f} fr/s", f"{bare:.1f} fr/s", f"{n_frames} frames"),
        Row("extraction", "workers2_vs_workers1", "extract CLI: 2 workers vs 1 (speed-up)", w1 / w2, f"{pf / w2:.1f} fr/s", f"{pf / w1:.1f} fr/s",
            f"{len(videos) * copies} samples, start-up included; outputs match: {match}"),
    ]
    return res


def section_loader(tmp: Path, quick: bool, rounds: int) -> SectionResult:
    import torch

    from data.dataset import collate
    from model import training
    from model.config import TrainConfig

    res = SectionResult("loader")
    # the default model and data pipeline (the default augmentation included), without the
    # in-memory cache: every batch is loaded from disk, as on a corpus larger than the cache
    cfg = TrainConfig(data_dir=str(training_corpus(tmp, quick)), cache_mb=0)
    data = training.build_data(cfg)
    ds = data.splits["train"]
    loaders = {w: training.make_loader(ds, cfg.batch_size, shuffle=True, seed=cfg.seed, num_workers=w) for w in (0, 2)}
    for _ in loaders[2]:  # starts the persistent workers; later epochs measure the steady state
        pass
    device = torch.device("cpu")
    model = training.build_model(cfg, len(data.vocab))
    optimizer = training.build_optimizer(cfg, model)
    scaler = training.make_scaler(device, cfg)
    n_steps = 3 if quick else 8
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    batches = [collate([ds[i] for i in order[k * cfg.batch_size : (k + 1) * cfg.batch_size]]) for k in range(n_steps + 1)]
    training.train_step(model, batches[-1], optimizer, scaler, cfg, device)  # warm-up (allocator, kernels)

    def epoch_rate(loader):
        t0, n = time.perf_counter(), 0
        for _ in loader:
            n += 1
        return n / (time.perf_counter() - t0)

    def step_rate():
        t0 = time.perf_counter()
        for b in batches[:n_steps]:
            training.train_step(model, b, optimizer, scaler, cfg, device)
        return n_steps / (time.perf_counter() - t0)

    best = best_of_alternating({"w0": lambda: epoch_rate(loaders[0]), "step": step_rate, "w2": lambda: epoch_rate(loaders[2])}, rounds)
    loaders.clear()  # ends the persistent workers before the other sections run
    w0, w2, step = best["w0"]["best"], best["w2"]["best"], best["step"]["best"]
    mean_t = float(np.mean(ds.lengths()))
    res.figures = {"batch_size": cfg.batch_size, "train_samples": len(ds), "mean_frames": round(mean_t, 1), "threads": torch.get_num_threads(),
                   "loader_w0_batches_per_s": w0, "loader_w2_batches_per_s": w2, "step_batches_per_s": step,
                   "runs": {k: v["all"] for k, v in best.items()}}
    res.rows = [
        Row("loader", "loader_w0_vs_step", "DataLoader num_workers=0 / train_step", w0 / step, f"{w0:.2f} b/s", f"{step:.2f} b/s", f"batch {cfg.batch_size}, default model"),
        Row("loader", "loader_w2_vs_step", "DataLoader num_workers=2 / train_step", w2 / step, f"{w2:.2f} b/s", f"{step:.2f} b/s", f"{torch.get_num_threads()} torch threads"),
    ]
    return res


def section_trainer(tmp: Path, quick: bool, rounds: int, threads: int | None = None, num_workers: int = 0) -> SectionResult:
    res = SectionResult("trainer")
    corpus = training_corpus(tmp, quick)
    threads = threads or os.cpu_count() or 1
    epochs, batch_size = 3, 8
    config = tmp / "trainer_config.json"
    # augmentation off on both sides: this figure is the trainer's own overhead over the same
    # batches (the bare loop collates them before its clock starts); the loader section measures
    # the default augmenting loader against the step
    atomic_write_text(config, json.dumps({"augment": {}, **({"model": QUICK_MODEL} if quick else {})}))
    runs = {"trainer": 0}

    def trainer() -> float:
        runs["trainer"] += 1
        out = tmp / f"trainer_run{runs['trainer']}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "train.py", "--skip-gate", "--epochs", str(epochs), "--output_dir", str(out), "--data_dir", str(corpus),
               "--config", str(config), "--threads", str(threads), "--batch_size", str(batch_size), "--seed", "0",
               "--num_workers", str(num_workers), "--beam_width", "1"]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-1500:]}\n{done.stderr[-2000:]}")
        rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if ln.strip()]
        res.figures.setdefault("trainer_epochs", []).append([r["frames_per_s"] for r in rows])
        return max(r["frames_per_s"] for r in rows[1:])  # epoch 1 carries the warm-up on both sides

    def bare() -> float:
        r = run_child("bare_loop", data_dir=str(corpus), config=str(config), epochs=epochs, threads=threads, batch_size=batch_size,
                      with_loader=not quick, num_workers=num_workers)
        res.figures.setdefault("bare_epochs", []).append(r["frames_per_s"])
        if r["loader_frames_per_s"]:
            res.figures.setdefault("bare_loader_epochs", []).append(r["loader_frames_per_s"])
        return max(r["frames_per_s"][1:])

    best = best_of_alternating({"trainer": trainer, "bare": bare}, rounds)
    t, b = best["trainer"]["best"], best["bare"]["best"]
    model = "small model (--quick)" if quick else "default model"
    res.figures.update({"threads": threads, "epochs": epochs, "batch_size": batch_size, "num_workers": num_workers, "model": model,
                        "trainer_fps": t, "bare_fps": b})
    res.rows = [Row("trainer", "trainer_vs_bare", "train.py / bare loop (frames/s)", t / b, f"{t:.0f} fr/s", f"{b:.0f} fr/s",
                    f"{model}, {threads} threads, batch {batch_size}, num_workers {num_workers}, best epoch >= 2")]
    if res.figures.get("bare_loader_epochs"):
        bl = max(max(e[1:]) for e in res.figures["bare_loader_epochs"])
        res.figures["bare_loader_fps"] = bl
        res.rows.append(Row("trainer", "trainer_vs_bare_with_loader", "train.py / bare loop reading the DataLoader", t / bl,
                            f"{t:.0f} fr/s", f"{bl:.0f} fr/s", "trainer overhead without the cost of loading"))
    return res


def section_compat(tmp: Path, quick: bool, rounds: int) -> SectionResult:
    from data.synthetic import demo_corpus

    res = SectionResult("compat")
    demo_corpus()  # generated once, outside the timing
    base = [sys.executable, "-m", "pytest", "-m", "compat or smoke", "tests/compat", "-p", "no:cacheprovider", "-q"]
    status = {}

    def suite(extra: list, name: str, command=None, cwd=REPO):
        def run() -> float:
            t0 = time.perf_counter()
            done = subprocess.run((command or base) + extra, cwd=cwd, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            status[name] = done.returncode
            if done.returncode != 0:
                status[name + "_tail"] = done.stdout[-800:]
            return seconds
        return run

    # the command-line form, from a directory outside the repository: compat + smoke of the configured method
    check = [sys.executable, "-m", "harness", "check"]
    sides = {"serial": suite([], "serial"), "n2": suite(["-n", "2"], "n2"), "check": suite([], "check", check, tmp)}
    best = best_of_alternating(sides, rounds, better=min)
    gate = run_child("gate", out_dir=str(tmp / "gate_out"), cache_dir=str(tmp / "gate_cache"))
    serial, n2, cli = best["serial"]["best"], best["n2"]["best"], best["check"]["best"]
    res.figures = {"serial_seconds": serial, "n2_seconds": n2, "check_seconds": cli, "exit_status": status, "gate": gate,
                   "runs": {k: v["all"] for k, v in best.items()}}
    ok = "passed" if all(v == 0 for k, v in status.items() if not k.endswith("_tail")) else f"FAILED (exit {status})"
    res.rows = [
        Row("compat", "compat_n2_vs_serial", "compat suite: -n 2 vs serial (speed-up)", serial / n2, f"{n2:.1f} s", f"{serial:.1f} s", f"demo corpus; suite {ok}"),
        Row("compat", "harness_check_vs_compat", "python -m harness check vs pytest -m compat (wall time)", cli / serial, f"{cli:.1f} s",
            f"{serial:.1f} s", "check: the configured normalization; pytest -m compat: all five"),
        Row("compat", "gate_cached_seconds", "gate: cached re-run (seconds)", gate["second_seconds"], f"{gate['second_seconds']:.2f} s",
            f"{gate['first_seconds']:.1f} s cold", f"cached: {gate['second_cached']}, verdict passed: {gate['passed']}"),
    ]
    return res


def section_memory(tmp: Path, quick: bool, rounds: int, n: int | None = None, frames: int = 200) -> SectionResult:
    res = SectionResult("memory")
    n = n or (8 if quick else 40)
    small = write_synthetic_corpus(tmp / f"mem_{n}", n, frames, seed=1)
    big = write_synthetic_corpus(tmp / f"mem_{10 * n}", 10 * n, frames, seed=2)
    tasks = [("scan", "scan_corpus"), ("train_stats", "compute_train_stats")] + ([] if quick else [("iterate", "iterate the train DataLoader")])
    for task, label in tasks:
        got = {"n": [], "10n": []}

        def measure(size: str, corpus: Path) -> float:
            r = run_child(task, corpus=str(corpus))
            got[size].append(r)
            return r["peak_rss_mb"]

        best = best_of_alternating({"n": lambda: measure("n", small), "10n": lambda: measure("10n", big)}, rounds, better=min)
        pn, p10 = best["n"]["best"], best["10n"]["best"]
        growth = {k: min(r["peak_growth_mb"] for r in v) for k, v in got.items()}
        res.figures[task] = {"peak_rss_mb": {"n": pn, "10n": p10}, "peak_growth_mb": growth,
                             "seconds": {k: min(r["seconds"] for r in v) for k, v in got.items()}}
        res.rows.append(Row("memory", f"{task}_peak_10n_vs_n", f"{label}: peak RSS {10 * n} vs {n} samples", p10 / pn,
                            f"{p10:.0f} MB", f"{pn:.0f} MB", f"growth over start {growth['10n']:.0f} vs {growth['n']:.0f} MB; {frames} frames a sample"))
    res.figures.update({"n": n, "frames": frames, "dtype": "float16"})
    return res


def section_disk(tmp: Path, quick: bool, rounds: int, frames: int = 200) -> SectionResult:
    res = SectionResult("disk")
    rng = np.random.default_rng(0)
    sizes = {}
    for name, width, dtype in (("raw32", RAW_DIM, "float32"), ("raw16", RAW_DIM, "float16"), ("full32", FEATURE_DIM, "float32")):
        path = tmp / f"disk_{name}.npy"
        atomic_save_npy(path, rng.random((frames, width), dtype=np.float32).astype(dtype))
        sizes[name] = path.stat().st_size / frames
    res.figures = {"frames": frames, "bytes_per_frame": sizes}
    for name, what in (("raw32", "[T,1629] float32"), ("raw16", "[T,1629] float16")):
        res.rows.append(Row("disk", f"{name}_vs_full32_bytes", f"bytes a frame: {what} / [T,6516] float32", sizes[name] / sizes["full32"],
                            f"{sizes[name]:.0f} B", f"{sizes['full32']:.0f} B", f"{frames}-frame file, .npy header included"))
    return res


def section_use(tmp: Path, quick: bool, rounds: int) -> SectionResult:
    """model.recognize / model.evaluate / model.export on a default-size model saved as train.py saves it."""
    import torch

    from data.dataset import collate
    from model import training
    from model.config import TrainConfig
    from model.checkpoint import build_eval_data, load_trained
    from model.evaluate import evaluate_split
    from model.export import Runner, check_parity, export, parity_batches
    from model.recognize import read_input, recognize_landmarks

    res = SectionResult("use")
    video = VIDEOS / "test_video.mp4"
    # the checkpoint: the default model and data pipeline on the training corpus, untrained weights
    cfg = TrainConfig(data_dir=str(training_corpus(tmp, quick)), cache_mb=0)
    data = training.build_data(cfg)
    model = training.build_model(cfg, len(data.vocab))
    ckpt_path = tmp / "use_checkpoint.pt"
    torch.save({"model_name": cfg.model, "model_args": training.model_args(cfg, model, len(data.vocab), data.input_dim),
                "model": model.state_dict(), "vocab": data.vocab.to_list(), "norm_stats": None, "config": cfg.to_dict(),
                "epoch": 0, "best_wer": float("inf"), "skipped_gate": True}, ckpt_path)
    trained = load_trained(ckpt_path)
    threads = torch.get_num_threads()
    res.figures = {"threads": threads, "model_parameters": sum(p.numel() for p in model.parameters())}

    # recognize: extraction (a fresh MediaPipe Holistic a sample, as recognize runs it) and model apart
    if video.is_file():
        marks = read_input(video)
        seconds_of_video = marks.raw.shape[0] / marks.fps
        recognize_landmarks(trained, marks, str(video))  # warm-up (allocator, kernels)
        best = best_of_alternating({
            "extract": lambda: read_input(video).extract_seconds,
            "model": lambda: recognize_landmarks(trained, marks, str(video)).model_seconds,
        }, max(rounds, 2 if quick else 3), better=min)
        ext, mod = best["extract"]["best"], best["model"]["best"]
        res.figures["recognize"] = {"video": video.name, "frames": int(marks.raw.shape[0]), "fps": marks.fps, "video_seconds": seconds_of_video,
                                    "extract_seconds": ext, "model_seconds": mod, "runs": {k: v["all"] for k, v in best.items()}}
        res.rows += [
            Row("use", "recognize_rtf", "recognize real-time factor, end to end (video s / processing s)", seconds_of_video / (ext + mod),
                f"{ext + mod:.2f} s", f"{seconds_of_video:.2f} s video", f"{video.name}, {marks.raw.shape[0]} frames at {marks.fps:.1f} fps"),
            Row("use", "recognize_rtf_extraction", "  extraction alone (MediaPipe Holistic, start-up included)", seconds_of_video / ext,
                f"{ext:.2f} s", f"{seconds_of_video:.2f} s video", f"{marks.raw.shape[0] / ext:.1f} frames/s"),
            Row("use", "recognize_rtf_model", "  model alone (features, forward, greedy spans)", seconds_of_video / mod,
                f"{mod * 1000:.0f} ms", f"{seconds_of_video:.2f} s video", f"{threads} torch threads"),
        ]
    else:
        res.figures["recognize"] = f"skipped: {video} absent"

    # evaluate: frames/s of model.evaluate's split scoring vs a bare forward pass over the same batches
    ecfg, edata = build_eval_data(trained)
    split = "dev" if "dev" in edata.splits else "test"
    batches = [collate([edata.splits[split][i] for i in range(k, min(k + ecfg.batch_size, len(edata.splits[split])))])
               for k in range(0, len(edata.splits[split]), ecfg.batch_size)]
    frames = sum(int(b.lengths.sum()) for b in batches)

    @torch.no_grad()
    def bare_forward() -> float:
        t0 = time.perf_counter()
        for b in batches:
            trained.model(b.features, b.lengths)
        return frames / (time.perf_counter() - t0)

    def scored(beam: int) -> float:
        ev = evaluate_split(trained, edata, ecfg, split, beam)
        return ev.frames / ev.seconds

    bare_forward()
    best = best_of_alternating({"greedy": lambda: scored(1), "beam": lambda: scored(ecfg.beam_width), "bare": bare_forward}, rounds)
    greedy, beam, bare = best["greedy"]["best"], best["beam"]["best"], best["bare"]["best"]
    res.figures["evaluate"] = {"split": split, "sentences": len(edata.splits[split]), "frames": frames, "greedy_fps": greedy, "beam_fps": beam,
                               "bare_forward_fps": bare, "runs": {k: v["all"] for k, v in best.items()}}
    res.rows += [
        Row("use", "evaluate_greedy_vs_forward", "evaluate frames/s (greedy) / bare forward", greedy / bare, f"{greedy:.0f} fr/s", f"{bare:.0f} fr/s",
            f"{len(edata.splits[split])} {split} sentences, loading + normalization + decoding included"),
        Row("use", "evaluate_beam_vs_forward", f"evaluate frames/s (beam {ecfg.beam_width}) / bare forward", beam / bare, f"{beam:.0f} fr/s", f"{bare:.0f} fr/s",
            "prefix beam search in Python, per sample; untrained weights"),
    ]

    # export: ONNX Runtime vs PyTorch latency for one sentence, same threads
    pb, _ = parity_batches(trained)
    onnx_path = tmp / "use_model.onnx"
    export(trained, "onnx", onnx_path, pb)
    runner = Runner("onnx", onnx_path, threads)
    parity = max(r.max_abs_diff for r in check_parity(trained, runner, pb))
    sentence = edata.splits[split][len(edata.splits[split]) // 2]
    one = collate([sentence])
    reps = 5 if quick else 20

    def latency(fn) -> float:
        fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    with torch.no_grad():
        best = best_of_alternating({"torch": lambda: latency(lambda: trained.model(one.features, one.lengths)),
                                    "ort": lambda: latency(lambda: runner.run(one.features, one.lengths))}, rounds, better=min)
    pt, ort_s = best["torch"]["best"], best["ort"]["best"]
    res.figures["export"] = {"onnx_bytes": onnx_path.stat().st_size, "sentence_frames": sentence.length, "torch_seconds": pt, "ort_seconds": ort_s,
                             "parity_max_abs": parity, "runs": {k: v["all"] for k, v in best.items()}}
    res.rows += [
        Row("use", "onnx_vs_torch_latency", "one sentence: PyTorch / ONNX Runtime latency (speed-up)", pt / ort_s, f"{ort_s * 1000:.1f} ms ORT",
            f"{pt * 1000:.1f} ms torch", f"{sentence.length} frames, {threads} threads each, best of {reps}"),
        Row("use", "export_parity_max_abs", "ONNX vs PyTorch max |diff| of log-probs (padded batches)", parity, f"{parity:.1e}", "",
            f"{len(pb)} batches of real {split} samples"),
    ]
    return res


def section_distill(tmp: Path, quick: bool, rounds: int, threads: int = 1) -> SectionResult:
    """The student (model/student.py) against the I3D teacher, both at their default sizes with the
    PHOENIX-2014 vocabulary (1296) over every modality: parameters, and CPU inference frames/s of an
    eval-mode forward pass on one threads-limited core, one 200-frame sentence (the app case) and a
    batch of 8, alternated best of `rounds`. The WER figures come from train.py runs (README)."""
    import torch

    from model.i3d import count_parameters
    from model.registry import create_model

    res = SectionResult("distill")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        models = {"teacher": create_model("i3d_teacher").eval(), "student": create_model("student").eval()}
        params = {k: count_parameters(m) for k, m in models.items()}
        shapes = {"sentence": (1, 200), "batch8": (8, 150)}
        inputs = {k: (torch.randn(b, t, models["teacher"].input_dim), torch.full((b,), t, dtype=torch.long)) for k, (b, t) in shapes.items()}
        repeats = 2 if quick else 5

        def rate(name: str, shape: str):
            def run() -> float:
                x, lengths = inputs[shape]
                with torch.no_grad():
                    models[name](x, lengths)  # warm-up
                    best = float("inf")
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        models[name](x, lengths)
                        best = min(best, time.perf_counter() - t0)
                return int(lengths.sum()) / best
            return run

        fps = {}
        for shape in shapes:
            best = best_of_alternating({"teacher": rate("teacher", shape), "student": rate("student", shape)}, rounds)
            fps[shape] = {k: v["best"] for k, v in best.items()}
    finally:
        torch.set_num_threads(before)
    res.figures = {"parameters": params, "frames_per_s": fps, "threads": threads}
    ratio = params["student"] / params["teacher"]
    res.rows = [Row("distill", "student_vs_teacher_params", "student / teacher parameters", ratio, f"{params['student']:,}",
                    f"{params['teacher']:,}", "default sizes, vocabulary 1296, all modalities", goal="<= 0.2", met=ratio <= 0.2)]
    for shape, label in (("sentence", "one 200-frame sentence"), ("batch8", "batch of 8 x 150 frames")):
        r = fps[shape]["student"] / fps[shape]["teacher"]
        res.rows.append(Row("distill", f"student_vs_teacher_fps_{shape}", f"student / teacher CPU inference frames/s, {label}", r,
                            f"{fps[shape]['student']:.0f} fr/s", f"{fps[shape]['teacher']:.0f} fr/s", f"eval forward, {threads} thread(s)",
                            goal=">= 5", met=r >= 5))
    return res


def section_scale(tmp: Path, total_frames: int, frames: int = 200, dtype: str = "float16", workers: int = 2) -> SectionResult:
    res = SectionResult("scale")
    n = max(1, math.ceil(total_frames / frames))
    need = n * frames * RAW_DIM * np.dtype(dtype).itemsize
    free = shutil.disk_usage(tmp).free
    if need * 1.05 > free:
        raise SystemExit(f"--scale {total_frames}: needs {need / 1e9:.1f} GB in {tmp}, only {free / 1e9:.1f} GB free; pass --tmp DIR on a bigger disk")
    t0 = time.perf_counter()
    corpus = write_synthetic_corpus(tmp / f"scale_{n}", n, frames, dtype=dtype, seed=3)
    gen = time.perf_counter() - t0
    r = run_child("scale_pass", corpus=str(corpus), workers=workers)
    peak = max(r["peak_rss_mb"], r["children_peak_rss_mb"])
    res.figures = {"samples": n, "frames": r["frames"], "corpus_bytes": need, "generate_seconds": round(gen, 1), "workers": workers, **r}
    res.rows = [
        Row("scale", "scale_frames_per_s", f"compat data pass, {r['frames']:,} frames (frames/s)", r["frames"] / r["seconds"],
            f"{r['seconds']:.1f} s", "", f"scan {r['stage_seconds']['scan']:.1f} s with {workers} workers ({r['scan_cpu_seconds']:.1f} CPU s); "
            f"findings {r['findings']}"),
        Row("scale", "scale_peak_vs_corpus", "peak RSS (largest process) / corpus bytes", peak * MB / need,
            f"{peak:.0f} MB", f"{need / MB:.0f} MB", f"main {r['peak_rss_mb']:.0f} MB (+{r['peak_growth_mb']:.0f}), workers {r['children_peak_rss_mb']:.0f} MB"),
    ]
    return res


def _conv_bilstm(input_dim: int, vocab: int, hidden: int):
    """The guard section's model: a small conv + BiLSTM CTC model, as a user writes one."""
    import torch
    from torch import nn

    class ConvBiLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(input_dim, hidden, kernel_size=5, stride=2, padding=2)
            self.lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
            self.head = nn.Linear(2 * hidden, vocab)

        def output_lengths(self, lengths):
            return (lengths + 1) // 2

        def forward(self, x, lengths):
            h = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
            h, _ = self.lstm(h)
            return self.head(h).log_softmax(-1), self.output_lengths(lengths)

    return ConvBiLSTM()


def section_guard(tmp: Path, quick: bool, rounds: int, threads: int = 1) -> SectionResult:
    """harness.guard on healthy steps: seconds a step of a bare training loop (forward, CTC,
    backward, AdamW) of a small conv + BiLSTM model vs the same loop checking every step with
    `g.step(batch, loss)`, and with `with g.watch(batch):`. Same batches, same initial weights (a
    copy each side), one torch thread. The sides alternate step by step, their order rotating
    each step (no side ever runs twice in a row: the one that did would find its weights still in
    cache), each batch's best time of the rounds is kept, and a side's figure is the mean of its
    batches' best times: a step is ~10 ms, so slower alternation measures the machine's load."""
    import copy

    import torch
    import torch.nn.functional as F

    from harness.guard import Guard

    res = SectionResult("guard")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        batch_size, frames, input_dim, vocab, hidden = 8, 120, 150, 60, 64
        n_batches, rounds = (8, max(rounds, 5)) if quick else (16, max(rounds, 10))
        base = _conv_bilstm(input_dim, vocab, hidden)
        batches = []
        for _ in range(n_batches):
            lengths = torch.randint(frames // 2, frames + 1, (batch_size,))
            lengths[0] = frames
            batches.append({"features": torch.randn(batch_size, frames, input_dim), "lengths": lengths,
                            "targets": torch.randint(1, vocab, (batch_size, 12)), "target_lengths": torch.randint(4, 13, (batch_size,)),
                            "ids": [f"s{i}" for i in range(batch_size)]})
        sides = {}
        for name in ("bare", "step", "watch"):
            model = copy.deepcopy(base)
            sides[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4), Guard(model, quiet=True) if name != "bare" else None)

        def loss_of(model, b):
            log_probs, out_lengths = model(b["features"], b["lengths"])
            return F.ctc_loss(log_probs.transpose(0, 1), b["targets"], out_lengths, b["target_lengths"], zero_infinity=True)

        def one_step(name: str, b) -> float:
            model, optimizer, guard = sides[name]
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            if name == "watch":
                with guard.watch(b):
                    loss_of(model, b).backward()
                    optimizer.step()
            else:
                loss = loss_of(model, b)
                loss.backward()
                if name == "bare" or guard.step(b, loss):
                    optimizer.step()
            return time.perf_counter() - t0

        names = list(sides)
        for name in names:  # warm-up: allocator, kernels, AdamW state
            one_step(name, batches[0])
        best = {name: [float("inf")] * n_batches for name in names}
        k = 0
        for _ in range(rounds):
            for i, b in enumerate(batches):
                for name in names[k % 3:] + names[:k % 3]:
                    best[name][i] = min(best[name][i], one_step(name, b))
                k += 1
        guard = sides["step"][2]
        loss = loss_of(sides["step"][0], batches[0])
        loss.backward()
        t0, n = time.perf_counter(), 200
        for _ in range(n):
            guard.healthy(loss)
        check_us = (time.perf_counter() - t0) / n * 1e6
        checked = {name: sides[name][2].steps for name in ("step", "watch")}
    finally:
        torch.set_num_threads(before)
    bare, step, watch = (sum(best[k]) / n_batches for k in ("bare", "step", "watch"))
    n_params = sum(p.numel() for p in base.parameters())
    res.figures = {"seconds_per_step": {"bare": bare, "step": step, "watch": watch}, "check_us": check_us, "batches": n_batches,
                   "rounds": rounds, "threads": threads, "batch": [batch_size, frames, input_dim], "parameters": n_params,
                   "steps_checked": checked, "best_per_batch": best}
    shape = f"conv+BiLSTM {n_params:,} params, batch {batch_size}x{frames}x{input_dim}, {threads} thread(s), best of {rounds} a batch"
    res.rows = [
        Row("guard", "guard_overhead", "loop with g.step(batch, loss) / bare loop (seconds a step)", step / bare,
            f"{step * 1e3:.2f} ms", f"{bare * 1e3:.2f} ms", shape),
        Row("guard", "guard_watch_overhead", "loop with `with g.watch(batch)` / bare loop (seconds a step)", watch / bare,
            f"{watch * 1e3:.2f} ms", f"{bare * 1e3:.2f} ms", "gradients checked in an optimizer step pre-hook"),
        Row("guard", "guard_check_vs_step", "one healthy check (Guard.healthy) / a bare step", check_us * 1e-6 / bare,
            f"{check_us:.0f} us", f"{bare * 1e3:.2f} ms", "the guard's own cost, without the loop around it"),
    ]
    return res

RUNNERS = {
    "extraction": section_extraction,
    "loader": section_loader,
    "trainer": section_trainer,
    "compat": section_compat,
    "memory": section_memory,
    "disk": section_disk,
    "use": section_use,
    "distill": section_distill,
    "guard": section_guard,
    "against": section_against,
}


def run_section(name: str, fn, *args, **kwargs) -> SectionResult:
    load0, t0 = load_average(), time.perf_counter()
    res = fn(*args, **kwargs)
    res.load, res.seconds = (load0, load_average()), round(time.perf_counter() - t0, 1)
    return res
