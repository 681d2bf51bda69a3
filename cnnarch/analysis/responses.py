"""Layer responses (lecture claim R4; ResNet paper Sec. 4.2 and Fig. 7).

- ``residual_ratios``: for each residual block, ||F(x)|| / ||shortcut(x)|| on real images
  (``block.residual(x)`` and ``block.shortcut(x)``; shortcut(x) = x for identity blocks, the
  subsampled, zero-padded x under option A). The lecture: F(x) should be small against the
  identity it is added to. Measured over training with ``train(..., on_epoch_end=...)``. For
  a plain twin (no shortcut), ||F(x)|| / ||x|| with x the block's input.
- ``response_stds``: Fig. 7, the standard deviation of every 3x3 layer's response after BN
  and before the ReLU / addition (``bn1`` and ``bn2`` of a basic block, ``bn2`` of a
  bottleneck, and the CIFAR stem's BN), in layer order. The std is taken per channel over
  images and positions and averaged over the channels. The paper finds the responses of
  ResNets smaller than those of their plain twins, and smaller for deeper ResNets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ResponseProfile:
    model: str
    layers: tuple[str, ...]  # in layer order, stem to head
    stds: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.stds) / len(self.stds)

    @property
    def sorted_desc(self) -> tuple[float, ...]:
        """Fig. 7 (bottom): the same values sorted by magnitude, largest first."""
        return tuple(sorted(self.stds, reverse=True))

    def to_dict(self) -> dict:
        return dict(asdict(self), mean=self.mean, sorted_desc=self.sorted_desc)


def _three_by_three_norms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, BN module) for every BN that directly follows a 3x3 convolution."""
    out = []
    conv1 = getattr(model, "conv1", None)
    if isinstance(conv1, nn.Conv2d) and conv1.kernel_size == (3, 3) and isinstance(model.bn1, nn.BatchNorm2d):
        out.append(("stem", model.bn1))
    for i, block in enumerate(model.blocks()):
        for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
            conv, bn = getattr(block, conv_name, None), getattr(block, bn_name, None)
            if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and isinstance(bn, nn.BatchNorm2d):
                out.append((f"block{i + 1}.{bn_name}", bn))
    if not out:
        raise ValueError("no BN after a 3x3 convolution found (response_stds needs norm='bn')")
    return out


@torch.no_grad()
def response_stds(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> ResponseProfile:
    """Fig. 7 standard deviations on ``images`` (eval mode: BN uses its running statistics,
    as on the paper's test set). Moments are accumulated over all batches."""
    named = _three_by_three_norms(model)
    sums: dict[str, list[torch.Tensor]] = {}

    def hook(name):
        def fn(_module, _inputs, output):
            y = output.detach().double()
            s = [y.sum((0, 2, 3)), (y * y).sum((0, 2, 3)), torch.tensor(y.numel() / y.shape[1])]
            if name in sums:
                sums[name] = [a + b for a, b in zip(sums[name], s, strict=True)]
            else:
                sums[name] = s
        return fn

    handles = [bn.register_forward_hook(hook(n)) for n, bn in named]
    was = model.training
    model.eval()
    try:
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size].float())
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    stds = []
    for n, _ in named:
        s1, s2, count = sums[n]
        mean = s1 / count
        var = (s2 / count - mean * mean).clamp_min(0)
        stds.append(float(var.sqrt().mean()))
    name = getattr(model, "registry_name", getattr(model, "name", "model"))
    return ResponseProfile(name, tuple(n for n, _ in named), tuple(stds))


@dataclass(frozen=True)
class ResidualRatios:
    model: str
    blocks: tuple[str, ...]
    ratios: tuple[float, ...]  # ||F(x)|| / ||shortcut(x)|| per block

    @property
    def mean(self) -> float:
        return sum(self.ratios) / len(self.ratios)

    def to_dict(self) -> dict:
        return dict(asdict(self), mean=self.mean)


@torch.no_grad()
def residual_ratios(model: nn.Module, images: torch.Tensor) -> ResidualRatios:
    """||F(x)|| / ||shortcut(x)|| for every residual block, norms over the whole batch,
    in eval mode. A block without a shortcut (the plain twin) gets ||F(x)|| / ||x||, x its
    input (the same value where the shortcut is the identity)."""
    blocks = model.blocks()
    inputs: list[torch.Tensor] = []
    handles = [b.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach().clone()))
               for b in blocks]
    was = model.training
    model.eval()
    try:
        model(images.float())
        ratios = []
        for block, x in zip(blocks, inputs, strict=True):
            f, s = block.residual(x), (block.shortcut(x) if block.has_shortcut else x)
            ratios.append(float(f.norm() / s.norm().clamp_min(1e-30)))
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    name = getattr(model, "registry_name", getattr(model, "name", "model"))
    return ResidualRatios(name, tuple(f"block{i + 1}" for i in range(len(blocks))), tuple(ratios))
