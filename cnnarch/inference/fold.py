"""Folding eval-mode BatchNorm into the convolution before it (exact in fp32).

Which convolution feeds which BatchNorm is declared by the model: a module whose forward
applies ``bn`` right after ``conv`` lists the pair in a class attribute
``conv_bn_pairs = (("conv1", "bn1"), ...)`` (attribute names of its children), the way
torchvision's quantizable models declare their ``fuse_model()`` groups. An
``nn.Sequential`` needs no declaration: a Conv2d directly followed by a BatchNorm2d in it
is a pair (the projection shortcuts). :func:`conv_bn_pairs` is the one place that answers.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError


def fold_conv_bn_(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the convolution before it, in place.

    BN(conv(x)) = gamma * (W x + b - mean) / sqrt(var + eps) + beta (Ioffe & Szegedy 2015,
    Alg. 2), so with s = gamma / sqrt(var + eps):  W' = W * s (per output channel),
    b' = beta + (b - mean) * s. Computed in float64, stored in the convolution's dtype.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise UserError("cannot fold a BatchNorm without running statistics")
    dtype = conv.weight.dtype
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)  # C_out
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    with torch.no_grad():
        # C_out x C_in x k x k, each output channel scaled
        weight = conv.weight.double() * scale.reshape(-1, *([1] * (conv.weight.ndim - 1)))
        conv.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
        conv.bias = nn.Parameter((beta + (bias - mean) * scale).to(dtype), requires_grad=False)


def conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) child names of ``module`` where its forward applies bn right after conv."""
    declared = getattr(type(module), "conv_bn_pairs", None)
    if declared is not None:
        return [tuple(pair) for pair in declared]
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        return [(a, b) for a, b in zip(names, names[1:], strict=False)
                if isinstance(module._modules[a], nn.Conv2d)
                and isinstance(module._modules[b], nn.BatchNorm2d)]
    return []


def fold_bn(model: nn.Module) -> int:
    """Fold every conv + BN pair of a cnnarch model in place (eval mode); returns how many.

    Each folded BN is replaced by nn.Identity. Call on a copy: training needs the BNs."""
    if model.training:
        raise UserError("fold_bn needs an eval-mode model (BN must use its running statistics)")
    folded = 0
    for module in list(model.modules()):
        for conv_name, bn_name in conv_bn_pairs(module):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) \
                    and bn.track_running_stats:
                fold_conv_bn_(conv, bn)
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded
