"""Datasets (digits, CIFAR-10/100, synthetic in memory; image folders via DataLoader) and
batched on-device augmentation. The data layer never imports the models."""

from .augment import AugmentSpec, augment_batch, random_crop, random_hflip
from .sources import DATASETS, InMemoryDataset, channel_stats, load_dataset, parse_synthetic

__all__ = [
    "DATASETS", "AugmentSpec", "InMemoryDataset", "augment_batch", "channel_stats", "load_dataset",
    "parse_synthetic", "random_crop", "random_hflip",
]
