"""The batch step of my training loop: scale the features to a convenient range and make sure
the padded frames are exactly 0 (the TCN's first conv relies on it)."""
import torch


def prepare_batch(features, lengths):
    valid = torch.arange(features.shape[1], device=features.device)[None, :] < lengths.to(features.device)[:, None]
    return features.float() * 4.0 * valid[:, :, None]
