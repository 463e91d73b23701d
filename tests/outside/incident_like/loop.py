"""What train_epoch does to each batch before the model (user code)."""
import torch


def per_sample_zscore(features, lengths):
    """As in training: one mean/std per sample over (time, features), padded frames included,
    then clipped to [-10, 10] ("features range should be -10 to +10")."""
    mean = features.mean(dim=(1, 2), keepdim=True)
    std = features.std(dim=(1, 2), keepdim=True) + 1e-6
    return ((features - mean) / std).clamp(-10, 10)


def masked_zscore(features, lengths):
    """Fixed: the same z-score over each sample's valid frames only; padded frames stay 0."""
    valid = (torch.arange(features.shape[1], device=features.device)[None, :] < lengths.to(features.device)[:, None])
    valid = valid[:, :, None].to(features.dtype)
    count = valid.sum(dim=(1, 2), keepdim=True) * features.shape[2]
    mean = (features * valid).sum(dim=(1, 2), keepdim=True) / count
    var = (((features - mean) * valid) ** 2).sum(dim=(1, 2), keepdim=True) / (count - 1).clamp(min=1)
    return ((features - mean) / (var.sqrt() + 1e-6)).clamp(-10, 10) * valid
