"""Probes of a model on a batch: where a non-finite value first appears."""
from __future__ import annotations

import torch

from data.dataset import Batch


def first_nonfinite_module(model: torch.nn.Module, features: torch.Tensor, lengths: torch.Tensor):
    """Run a forward pass with hooks; return (module name, class, share non-finite) of the first
    module, in execution order, whose output holds NaN/Inf; None if all outputs are finite."""
    found = []

    def hook(name):
        def fn(module, inputs, output):
            if found:
                return
            tensors = output if isinstance(output, (tuple, list)) else (output,)
            for tensor in tensors:
                data = getattr(tensor, "data", tensor)  # PackedSequence has .data
                if torch.is_tensor(data) and data.is_floating_point() and not torch.isfinite(data).all():
                    found.append((name or "<model>", type(module).__name__, float((~torch.isfinite(data)).float().mean())))
                    return

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(features, lengths)
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else None


def nonfinite_inputs(batch: Batch) -> list[str]:
    """Ids of the samples whose input features hold NaN/Inf."""
    bad = ~torch.isfinite(batch.features)
    return [batch.ids[i] for i in sorted(set(torch.nonzero(bad)[:, 0].tolist()))] if bad.any() else []
