"""Building blocks shared by the model families.

Normalisation choices, the three shortcut options of the ResNet paper (Sec. 3.3),
input checks, and the He initialisation (He et al. 2015, Sec. 3.4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..model_options import SHORTCUTS

NORMS = ("bn", "none")


def check_choice(option: str, value, choices) -> None:
    """Raise a one-line ``UserError`` when ``value`` is not one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise UserError(f"invalid {option}={value!r}; choose one of {valid}")


def norm_layer(norm: str, channels: int, eps: float = 1e-5) -> nn.Module:
    """BatchNorm, or nothing (``norm="none"``, for the gradient-flow experiments)."""
    check_choice("norm", norm, NORMS)
    if norm == "bn":
        return nn.BatchNorm2d(channels, eps=eps)
    return nn.Identity()


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=bias)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=bias)


class ZeroPadShortcut(nn.Module):
    """Option A (Sec. 3.3): identity, with extra channels zero-padded and stride-2
    subsampling when the map shrinks. It has no parameters."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.extra = out_ch - in_ch
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]  # N x C x H/s x W/s
        if self.extra > 0:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))  # N x (C + extra) x H x W
        return x

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra}, stride={self.stride}"


def make_shortcut(
    kind: str, in_ch: int, out_ch: int, stride: int, norm: str
) -> nn.Module | None:
    """The shortcut branch of a residual block (paper Sec. 3.3).

    Returns ``None`` for a parameter-free identity (shapes match under A/B) and for the
    plain twin (``kind="none"``), where the block has no shortcut at all.
    """
    check_choice("shortcut", kind, SHORTCUTS)
    shape_changes = stride != 1 or in_ch != out_ch
    if kind == "none" or (kind in ("A", "B") and not shape_changes):
        return None
    if kind == "A":
        if out_ch < in_ch:
            raise UserError("shortcut='A' cannot reduce the number of channels")
        return ZeroPadShortcut(in_ch, out_ch, stride)
    # B: projection where the shape changes; C: projection on every shortcut.
    return nn.Sequential(conv1x1(in_ch, out_ch, stride, bias=norm == "none"), norm_layer(norm, out_ch))


def he_init(model: nn.Module) -> None:
    """He (Kaiming) normal init for convolutions (ResNet Sec. 3.4, [13]); BN gamma 1, beta 0.

    fan_out mode as torchvision uses; linear layers keep PyTorch's default.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def xavier_2014_init(model: nn.Module, bias: float = 0.2) -> None:
    """The fillers of the BVLC Caffe GoogLeNet (2014), the GoogLeNet paper giving none: every
    convolution and linear layer uniform in +-sqrt(3 / fan_in) (Caffe's "xavier", variance
    1 / fan_in), biases ``bias`` (0.2 keeps the ReLUs of a net without BN alive)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = math.sqrt(3.0 / m.weight[0].numel())
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.constant_(m.bias, bias)


def check_input(model_name: str, x: torch.Tensor, in_chans: int, min_size: int = 1) -> None:
    """Validate a batch before it reaches the first layer, with a one-line message."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model_name} expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise UserError(
            f"{model_name} expects a 4-d batch (N, {in_chans}, H, W), got shape {tuple(x.shape)}"
        )
    n, c, h, w = x.shape
    if c != in_chans:
        raise UserError(
            f"{model_name} expects {in_chans} input channels, got {c} (shape {tuple(x.shape)})"
        )
    if n == 0:
        raise UserError(f"{model_name} got an empty batch (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise TypeError(
            f"{model_name} expects a floating-point input, got {x.dtype}; "
            "convert and normalise the images first"
        )
    if min(h, w) < min_size:
        raise UserError(
            f"{model_name} needs inputs of at least {min_size}x{min_size} pixels, got {h}x{w}"
        )
