"""Batched, per-sample augmentation on the tensor's device (no per-image Python loop).

Every image of a batch gets its own random crop offset and its own flip coin, drawn from
one ``torch.Generator`` so a run is reproducible and resumable (the generator's state is
saved in checkpoints).

- CIFAR (He et al. 2015, Sec. 4.2): pad 4 px with zeros, random 32x32 crop, random
  horizontal flip.
- digits: pad 1 px, random 8x8 crop (a shift of at most one pixel), *no* flip: a mirrored
  digit is another symbol (or none).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSpec:
    """What to do to a training batch: ``pad`` px shift range, optional horizontal flip."""

    pad: int = 0  # px of zero padding before the random crop (0 = no shift)
    flip: bool = False  # random horizontal flip with probability 1/2


def random_crop(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad every image by ``pad`` px (zeros) and cut a random crop of the original size.

    One crop offset per image; works for any dtype on any device; returns a new tensor of
    the input's shape.
    """
    if pad <= 0:
        return images
    n, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))  # N x C x (H + 2p) x (W + 2p)
    dev = images.device
    dy = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    rows = dy[:, None] + torch.arange(h, device=dev)  # N x H
    cols = dx[:, None] + torch.arange(w, device=dev)  # N x W
    batch_idx = torch.arange(n, device=dev)[:, None, None, None]
    chan_idx = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch_idx, chan_idx, rows[:, None, :, None], cols[:, None, None, :]]  # N x C x H x W


def random_hflip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2 (one coin per image)."""
    coin = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(coin[:, None, None, None], images.flip(3), images)


def augment_batch(images: torch.Tensor, spec: AugmentSpec,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply ``spec`` to a N x C x H x W batch; shape and dtype are preserved."""
    if images.ndim != 4:
        raise ValueError(f"augment expects an N x C x H x W batch, got shape {tuple(images.shape)}")
    out = random_crop(images, spec.pad, generator)
    if spec.flip:
        out = random_hflip(out, generator)
    return out
