"""Replay of a batch train.py saved when it met a non-finite value (harness.diagnostics.save_nonfinite_batch):
`pytest --replay nonfinite_batch.pt` rebuilds the model and names the module and the samples."""
from __future__ import annotations

import time

import torch

from data.dataset import Batch
from harness.checks.model import check_gradients
from harness.findings import Finding, status_from
from harness.probes import first_nonfinite_module, nonfinite_inputs
from harness.thresholds import DEFAULTS
from model.ctc import ctc_loss_per_sample



def check_replay(path) -> Finding:
    """Re-run a batch that train.py saved when it met a non-finite value (nonfinite_batch.pt):
    rebuild the model from the saved arguments and state, and name the module and samples."""
    from model.registry import model_from_checkpoint_args

    start = time.perf_counter()
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = model_from_checkpoint_args(payload["model_name"], payload["model_args"])
    model.load_state_dict(payload["model_state"])
    model.eval()
    batch = Batch(payload["features"], payload["lengths"], payload["targets"], payload["target_lengths"], list(payload["ids"]), [()] * len(payload["ids"]), payload["normalization"])
    fails, samples, values = [], [], {"step": payload["step"], "epoch": payload["epoch"]}
    bad_in = nonfinite_inputs(batch)
    if bad_in:
        fails.append(f"input features are non-finite for samples {bad_in}")
        samples += bad_in
    first = first_nonfinite_module(model, batch.features, batch.lengths)
    if first:
        fails.append(f"first non-finite output at module '{first[0]}' ({first[1]}, {first[2]:.1%} of values)")
        values["first_nonfinite_module"] = first[0]
    with torch.no_grad():
        log_probs, out_lengths = model(batch.features, batch.lengths)
        losses = ctc_loss_per_sample(log_probs, out_lengths, batch.targets, batch.target_lengths)
    bad_loss = [batch.ids[i] for i in torch.nonzero(~torch.isfinite(losses)).flatten().tolist()]
    if bad_loss:
        infeasible = [batch.ids[i] for i in range(len(batch)) if int(out_lengths[i]) < int(batch.target_lengths[i])]
        why = f" (CTC-infeasible: output shorter than target for {infeasible})" if infeasible else ""
        fails.append(f"CTC loss non-finite for samples {bad_loss}{why}")
        samples += bad_loss
    if not fails:
        # forward and loss are finite in eval mode: the failure lives in the backward pass or in
        # training-mode layers (dropout); check the gradients the same way training computes them
        grad = check_gradients(model, batch, DEFAULTS)
        if not grad.ok:
            fails.append(f"backward pass: {grad.summary}")
    return Finding(
        check="replay",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or "the saved batch replays finite: the failure did not reproduce (optimizer state or AMP?)",
        hint="fix the named samples (clean-features / CTC feasibility checks) or the named module" if fails else "",
        values=values,
        samples=list(dict.fromkeys(samples or payload["ids"])),
        seconds=time.perf_counter() - start,
    )
