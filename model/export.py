"""Export a trained checkpoint for deployment: ONNX (run by ONNX Runtime) or TorchScript.

    python -m model.export CHECKPOINT --format onnx|torchscript --out FILE [--data_dir DIR] [--split dev] [--samples N]

The exported graph takes `features` float32 [batch, time, F] (the dataset's model-ready
features, as model.recognize.model_input computes them) and `lengths` int64 [batch], and returns
`log_probs` float32 [batch, time', V] (log-softmax, blank 0) and `out_lengths` int64 [batch];
batch and time are dynamic. A configured batch_transform is part of the graph (it runs between
the loader and the model in evaluation too). Frames of a sample at or beyond its out_length
are padding, as in PyTorch. The vocabulary (index -> gloss, 0 = blank) is written next to the
file as FILE.vocab.json.

After writing, the file is loaded back (onnxruntime.InferenceSession for ONNX, torch.jit.load
for TorchScript) and run on real samples of the checkpoint's corpus, alone and in padded batches
of different lengths and sizes; the largest absolute difference of the log-probabilities on
valid frames against the PyTorch model, and whether the output lengths agree, are printed
(goal <= 1e-4). Exit 0 when both hold, 1 when not (the file is kept for inspection), 2 on bad input.

What exports, measured with torch 2.13 and the I3D teacher (packed BiLSTM, masked batch norm,
masked max pooling):
  - ONNX, torch.onnx.export(dynamo=False), what --format onnx uses: the model as it is.
    pack_padded_sequence / pad_packed_sequence become the ONNX LSTM's `sequence_lens` input,
    so each sample's reverse direction starts at its own last frame, as packing does; masked
    batch norm (eval: running statistics) and masked max pooling (masked_fill -inf) are plain
    ops. Dynamic batch and time hold (checked at other lengths and batch sizes than exported with).
    This exporter is deprecated since torch 2.9 (a DeprecationWarning; still present in 2.13).
  - ONNX, torch.onnx.export(dynamo=True) (torch.export): does not give a usable graph.
    (1) The packed LSTM does not trace: a PackedSequence's batch_sizes is data-dependent
    (nn.LSTM.forward: torch.zeros(size=FakeTensor)), and model.i3d.check_inputs'
    int(lengths.min()) is a data-dependent guard. (2) Without packing and the checks (an export
    wrapper running the BiLSTM as two masked unidirectional LSTMs, the reverse one over each
    sample reversed within its length), torch.export still specializes the time axis: F.max_pool1d
    guards time' == its example value, and nn.LSTM's decomposition unrolls over time
    ("Constraints violated (time)"); torch.onnx then falls back to a graph whose time axis is
    fixed at the example length (ONNX Runtime: "Got 55 Expected 110"). Not offered here.
  - TorchScript: torch.jit.script fails (ModalityFusion keeps a dict of slice objects, which
    TorchScript cannot type); torch.jit.trace of the model as it is works, packing included
    (lengths flow through the traced sort / pack / pad ops), and is what --format torchscript writes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data.corpus import atomic_write_text
from data.dataset import collate
from model.checkpoint import Trained, UsageError, build_eval_data, load_trained, set_threads

TOLERANCE = 1e-4
INPUT_NAMES = ["features", "lengths"]
OUTPUT_NAMES = ["log_probs", "out_lengths"]
ONNX_OPSET = 17


class WithTransform(nn.Module):
    """model(batch_transform(features, lengths), lengths): what evaluation runs after the loader."""

    def __init__(self, model: nn.Module, fn):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, x, lengths):
        return self.model(self.fn(x, lengths), lengths)


def _configured_transform(trained: Trained):
    if not trained.cfg.batch_transform:
        return None
    from model.training import transform_function

    return transform_function(trained.cfg.batch_transform, trained.cfg.config_dir)


def export_module(trained: Trained) -> tuple[nn.Module, str]:
    """The module the exporter gets (the model, after the batch_transform if one is configured) and its description."""
    model = trained.model.eval()
    what = f"{type(model).__name__} as it is"
    fn = _configured_transform(trained)
    if fn is not None:
        return WithTransform(model, fn).eval(), what + f", after batch_transform {trained.cfg.batch_transform}"
    return model, what


# ============================================================================ parity inputs


@dataclass
class ParityBatch:
    features: torch.Tensor  # [B, T, F] model-ready features before the batch_transform (what the exported graph takes)
    lengths: torch.Tensor  # [B] long

    def describe(self) -> str:
        return f"batch {len(self.lengths)} x {self.features.shape[1]} frames (lengths {' '.join(map(str, self.lengths.tolist()))})"


def parity_batches(trained: Trained, data_dir=None, split: str | None = None, samples: int = 6) -> tuple[list, str]:
    """Real samples of the checkpoint's corpus, spread over the split's lengths: the longest and the
    shortest alone, padded batches of other sizes and lengths, and all of them in one batch.
    Returns (batches, where they come from)."""
    _, data = build_eval_data(trained, data_dir)
    if split is None:
        split = next(s for s in ("dev", "test", "train") if s in data.splits)
    elif split not in data.splits:
        raise UsageError(f"{data.source}: no {split!r} split (it has {sorted(data.splits)})")
    ds = data.splits[split]
    lengths = ds.lengths() if hasattr(ds, "lengths") else [ds[i].length for i in range(len(ds))]
    by_length = sorted(range(len(ds)), key=lambda i: (lengths[i], i))
    n = min(samples, len(ds))  # spread over the split's lengths, its shortest and longest included
    chosen = sorted({by_length[round(k * (len(ds) - 1) / max(n - 1, 1))] for k in range(n)})
    picked = sorted((ds[i] for i in chosen), key=lambda s: -s.length)
    groups = [picked[:1], picked[-1:]]
    if len(picked) >= 2:
        groups.append(picked[: max(2, len(picked) // 2)])  # the longer half, padded
        groups.append(picked[1::2] if len(picked) > 2 else picked[::-1])  # other lengths, other batch size
        groups.append(picked)
    batches = [ParityBatch(b.features, b.lengths) for b in map(collate, groups)]
    return batches, f"{len(picked)} {split} samples of {data.source}"


@torch.no_grad()
def reference_outputs(trained: Trained, batch: ParityBatch):
    """PyTorch: the loader batch through the configured batch_transform into the model, as evaluation runs it."""
    x = batch.features
    fn = _configured_transform(trained)
    if fn is not None:
        x = fn(x, batch.lengths)
    log_probs, out_lengths = trained.model.eval()(x, batch.lengths)
    return log_probs.float(), out_lengths.long()


def max_valid_difference(a: torch.Tensor, b: torch.Tensor, lengths: torch.Tensor) -> float:
    """Largest |a - b| over each sample's valid output frames (padded frames are meaningless by the model contract)."""
    worst = 0.0
    for i, n in enumerate(lengths.tolist()):
        if n:
            worst = max(worst, float((a[i, :n] - b[i, :n]).abs().max()))
    return worst


# ============================================================================ exporters


def example_inputs(batches: list) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of two different lengths to trace / export with."""
    for b in batches:
        if len(b.lengths) >= 2 and len(set(b.lengths.tolist())) >= 2:
            return b.features[:2, : int(b.lengths[:2].max())].contiguous(), b.lengths[:2].contiguous()
    return batches[0].features, batches[0].lengths


@contextlib.contextmanager
def native_output_captured():
    """Send the C++ side's stdout/stderr (exporter shape-inference chatter) to a temporary file;
    yields a function returning what was captured."""
    captured = tempfile.TemporaryFile(mode="w+b")
    saved = [os.dup(1), os.dup(2)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(captured.fileno(), 1)
    os.dup2(captured.fileno(), 2)

    def text() -> str:
        captured.seek(0)
        return captured.read().decode(errors="replace")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer / deprecation warnings: the parity run judges the file
            yield text
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        captured.close()


def export_onnx(module: nn.Module, example, out: Path, opset: int = ONNX_OPSET) -> str:
    torch.onnx.export(
        module, example, str(out), dynamo=False, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
        dynamic_axes={"features": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                      "log_probs": {0: "batch", 1: "out_time"}, "out_lengths": {0: "batch"}},
        opset_version=opset,
    )
    return f"torch.onnx.export(dynamo=False, opset {opset})"


def export_torchscript(module: nn.Module, example, out: Path) -> str:
    traced = torch.jit.trace(module, example, check_trace=False)
    torch.jit.save(traced, str(out))
    return "torch.jit.trace"


def export(trained: Trained, fmt: str, out: Path, batches: list, opset: int = ONNX_OPSET) -> tuple[str, str]:
    """Write the file; returns (what was exported, how)."""
    module, what = export_module(trained)
    example = example_inputs(batches)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = ""
    try:
        with native_output_captured() as captured:
            try:
                how = export_onnx(module, example, out, opset) if fmt == "onnx" else export_torchscript(module, example, out)
            finally:
                log = captured()
    except Exception as exc:  # noqa: BLE001 - an exporter's failure on this model: say which and why, no deep traceback
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        tail = f"; exporter output: {log.strip().splitlines()[-1][:300]}" if log.strip() else ""
        raise UsageError(f"{trained.path}: {fmt} export of {what} failed ({type(exc).__name__}: {first[:400]}){tail}") from None
    return what, how


class Runner:
    """Runs an exported file: run(features [B, T, F], lengths [B]) -> (log_probs, out_lengths) tensors."""

    def __init__(self, fmt: str, path: Path, threads: int | None = None):
        self.fmt = fmt
        try:
            if fmt == "onnx":
                import onnxruntime as ort

                opts = ort.SessionOptions()
                if threads:
                    opts.intra_op_num_threads = threads
                    opts.inter_op_num_threads = 1
                self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                self.engine = f"onnxruntime {ort.__version__}, CPUExecutionProvider"
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; the format is the user's choice
                    self.module = torch.jit.load(str(path), map_location="cpu").eval()
                self.engine = f"torch.jit.load, torch {torch.__version__}"
        except ImportError as exc:
            raise UsageError(f"{exc}; install the export extras: pip install -r requirements.txt (onnx, onnxruntime)") from None
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"{path}: the exported file does not load ({type(exc).__name__}: {str(exc)[:400]})") from None

    def run(self, features: torch.Tensor, lengths: torch.Tensor):
        if self.fmt == "onnx":
            feed = {"features": features.numpy().astype(np.float32, copy=False), "lengths": lengths.numpy().astype(np.int64, copy=False)}
            log_probs, out_lengths = self.session.run(None, feed)
            return torch.from_numpy(log_probs), torch.from_numpy(out_lengths).long()
        with torch.no_grad():
            log_probs, out_lengths = self.module(features, lengths)
        return log_probs.float(), out_lengths.long()


@dataclass
class ParityRow:
    batch: str
    max_abs_diff: float
    lengths_agree: bool
    error: str = ""


def check_parity(trained: Trained, runner: Runner, batches: list) -> list:
    rows = []
    for b in batches:
        ref_lp, ref_len = reference_outputs(trained, b)
        try:
            lp, out_len = runner.run(b.features, b.lengths)
        except Exception as exc:  # noqa: BLE001 - e.g. a graph whose time axis was frozen at export
            rows.append(ParityRow(b.describe(), float("inf"), False, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"))
            continue
        agree = out_len.shape == ref_len.shape and bool((out_len == ref_len).all())
        same_shape = lp.shape == ref_lp.shape
        diff = max_valid_difference(lp, ref_lp, ref_len) if agree and same_shape else float("inf")
        rows.append(ParityRow(b.describe(), diff, agree, "" if same_shape else f"log_probs shape {tuple(lp.shape)} vs {tuple(ref_lp.shape)}"))
    return rows


# ============================================================================ command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model.export", description="Export a train.py checkpoint to ONNX or TorchScript and check it against PyTorch on real samples.")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="best.pt or last.pt written by train.py")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="the file to write (e.g. model.onnx, model.ts.pt)")
    p.add_argument("--opset", type=int, default=ONNX_OPSET, help=f"ONNX opset (default {ONNX_OPSET})")
    p.add_argument("--data_dir", "--data-dir", dest="data_dir", help="corpus whose samples check parity (default: the checkpoint's)")
    p.add_argument("--split", choices=("train", "dev", "test"), help="split of the parity samples (default: dev, else test, else train)")
    p.add_argument("--samples", type=int, default=6, help="real samples in the parity batches (default 6)")
    p.add_argument("--threads", type=int, help="torch / ONNX Runtime CPU threads")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.samples < 1:
            raise UsageError(f"--samples must be >= 1, got {args.samples}")
        set_threads(args.threads)
        trained = load_trained(args.checkpoint)
        print(f"checkpoint {trained.path}: {trained.describe()}")
        batches, source = parity_batches(trained, args.data_dir, args.split, args.samples)
        t0 = time.perf_counter()
        what, how = export(trained, args.format, args.out, batches, args.opset)
        seconds = time.perf_counter() - t0
        vocab_path = args.out.with_name(args.out.name + ".vocab.json")
        atomic_write_text(vocab_path, json.dumps(trained.vocab.itos, ensure_ascii=False, indent=0) + "\n")
        print(f"exported {what} with {how} in {seconds:.1f} s -> {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB); "
              f"vocabulary (index -> gloss, 0 = blank) -> {vocab_path}")
        print(f"inputs: features float32 [batch, time, {trained.input_dim}], lengths int64 [batch]; "
              f"outputs: log_probs float32 [batch, time', {len(trained.vocab)}], out_lengths int64 [batch]; batch and time dynamic")
        runner = Runner(args.format, args.out, args.threads)
        rows = check_parity(trained, runner, batches)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"parity against PyTorch on {source} ({runner.engine}), valid frames:")
    for r in rows:
        status = r.error or f"output lengths {'agree' if r.lengths_agree else 'DIFFER'}"
        print(f"  {r.batch}: max |diff| {r.max_abs_diff:.2e}, {status}")
    worst = max(r.max_abs_diff for r in rows)
    agree = all(r.lengths_agree for r in rows)
    ok = worst <= TOLERANCE and agree
    print(f"max abs difference {worst:.2e} (goal <= {TOLERANCE:g}); output lengths {'agree on every batch' if agree else 'DIFFER'}: "
          + ("OK" if ok else "NOT EQUIVALENT"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
