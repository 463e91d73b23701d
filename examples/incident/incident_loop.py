"""The step the report's training loop (train_teacher.py, train_epoch) runs between the loader
and the model: one z-score per sample over all its frames and features, padded frames included."""
import torch


def per_sample_zscore(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    features_mean = features.mean(dim=(1, 2), keepdim=True)
    features_std = features.std(dim=(1, 2), keepdim=True) + 1e-6
    return (features - features_mean) / features_std
