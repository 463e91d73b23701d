"""What a user's training loop does between the loader and the model."""
import torch


def per_channel_zscore_no_floor(features, lengths):
    """Each sample's channels z-scored over its own valid frames, without a std floor."""
    mask = (torch.arange(features.shape[1], device=features.device)[None] < lengths[:, None]).unsqueeze(-1).float()
    n = lengths[:, None, None].float()
    mean = (features * mask).sum(1, keepdim=True) / n
    std = (((features - mean) * mask) ** 2).sum(1, keepdim=True).div(n).sqrt()
    return (features - mean) / std * mask


def scale(features, lengths):
    """A harmless rescale."""
    return features * 0.5
