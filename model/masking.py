"""The padding mask, one definition for the models, the loss, the decoders and the harness."""
from __future__ import annotations

import torch


def pad_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """[B] lengths -> [B, steps] bool on lengths' device, True on valid (unpadded) frames."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]
