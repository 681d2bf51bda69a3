"""Pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks",
arXiv:1603.05027) for CIFAR-sized inputs.

A pre-activation unit computes Eq. (3) with f = identity: x_{l+1} = x_l + F(x_l), where
F is BN -> ReLU -> conv, twice (basic) or three times (bottleneck), Fig. 1(b) / Fig. 4(e).
Nothing follows the addition, so dL/dx_l = dL/dx_{l+1} (1 + dF/dx_l) holds exactly (Eq. 5).

Following the paper's appendix:

- the first activation is taken right after the stand-alone conv1, before the first
  unit splits into two paths, so the first unit has no BN-ReLU of its own;
- where a unit changes the shape (a stride or a depth change) the shortcut is a projection
  (``shortcut="B"``, a 1x1 convolution) or the zero-padded identity (``shortcut="A"``, He
  et al. 2015 Sec. 3.3), and it is applied to the pre-activated input, so that unit's BN-ReLU
  feeds both paths;
- an extra BN-ReLU follows the last unit, before the global average pool.

CIFAR layout (He et al. 2015 Sec. 4.2): 16/32/64 ``planes`` on 32/16/8 maps. Basic units:
depth 6n + 2 (preact_resnet20/56/110). Bottleneck units (x4 expansion): depth 9n + 2
(preact_resnet164, n = 18; preact_resnet1001, n = 111).

``identity_shortcut`` replaces every identity shortcut for the shortcut ablation of
Table 1 (arXiv:1603.05027): "identity" (the paper), "scale" (constant scaling,
x_{l+1} = 0.5 x_l + F(x_l)), or "conv" (a 1x1 convolution W x_l on every identity
shortcut). Units that change the shape keep their projection or zero-pad.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .layers import ZeroPadShortcut, check_choice, check_input, conv1x1, conv3x3, he_init
from .registry import register_model

PREACT_SHORTCUTS = ("A", "B")
IDENTITY_SHORTCUTS = ("identity", "scale", "conv")
SCALE = 0.5  # Table 1, "constant scaling": lambda = 0.5 on the shortcut


class ScaledIdentity(nn.Module):
    """The constant-scaling shortcut of Table 1: h(x) = lambda x."""

    def __init__(self, scale: float = SCALE):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def _identity_shortcut(kind: str, channels: int) -> nn.Module | None:
    check_choice("identity_shortcut", kind, IDENTITY_SHORTCUTS)
    if kind == "scale":
        return ScaledIdentity()
    if kind == "conv":
        return conv1x1(channels, channels)  # Table 1, "1x1 conv shortcut"
    return None


def _projection(kind: str, in_ch: int, out_ch: int, stride: int) -> nn.Module:
    check_choice("shortcut", kind, PREACT_SHORTCUTS)
    if kind == "A":
        return ZeroPadShortcut(in_ch, out_ch, stride)
    return conv1x1(in_ch, out_ch, stride)


class _PreActUnit(nn.Module):
    """What both units share: x_{l+1} = shortcut(x_l) + F(x_l), nothing after the addition.

    ``preact`` is the unit's first BN-ReLU (an identity in the network's first unit, whose
    input is already activated). ``shared_preact`` is true where the shortcut is a
    projection: that shortcut reads the pre-activated input too (the paper's appendix).
    Subclasses define ``branch``: F without its first BN-ReLU.
    """

    expansion = 1

    def _build_shortcut(self, in_ch: int, out_ch: int, stride: int, shortcut: str,
                        identity_shortcut: str) -> None:
        if stride != 1 or in_ch != out_ch:
            self.downsample = _projection(shortcut, in_ch, out_ch, stride)
            self.shared_preact = True
        else:
            self.downsample = _identity_shortcut(identity_shortcut, in_ch)
            self.shared_preact = False

    def branch(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """F(x_l) of Eq. (3), the pre-activation included."""
        return self.branch(self.preact(x))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """h(x_l): the identity, or a projection / zero-pad of the pre-activated input where
        the shape changes, or the ablation's scaling / 1x1 convolution."""
        if self.downsample is None:
            return x
        return self.downsample(self.preact(x) if self.shared_preact else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shared_preact:
            h = self.preact(x)  # one BN-ReLU feeds both paths
            return self.downsample(h) + self.branch(h)
        return self.shortcut(x) + self.residual(x)  # Eq. (3): x_{l+1} = h(x_l) + F(x_l)


def _preact(first: bool, channels: int) -> nn.Module:
    if first:  # the activation after conv1 already ran (appendix)
        return nn.Identity()
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class PreActBasicBlock(_PreActUnit):
    """BN-ReLU-conv3x3, BN-ReLU-conv3x3 (Fig. 4(e) with two 3x3 layers)."""

    expansion = 1
    conv_bn_pairs = (("conv1", "bn2"),)  # conv2 ends the branch: the addition follows

    def __init__(self, in_ch: int, planes: int, stride: int, shortcut: str = "A",
                 identity_shortcut: str = "identity", first: bool = False):
        super().__init__()
        out_ch = planes * self.expansion
        self.preact = _preact(first, in_ch)
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, out_ch)
        self._build_shortcut(in_ch, out_ch, stride, shortcut, identity_shortcut)

    def branch(self, h: torch.Tensor) -> torch.Tensor:
        out = self.conv1(h)  # N x planes x H/s x W/s
        return self.conv2(self.relu(self.bn2(out)))


class PreActBottleneck(_PreActUnit):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (x4), the stride on the 3x3."""

    expansion = 4
    conv_bn_pairs = (("conv1", "bn2"), ("conv2", "bn3"))

    def __init__(self, in_ch: int, planes: int, stride: int, shortcut: str = "B",
                 identity_shortcut: str = "identity", first: bool = False):
        super().__init__()
        out_ch = planes * self.expansion
        self.preact = _preact(first, in_ch)
        self.conv1 = conv1x1(in_ch, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self._build_shortcut(in_ch, out_ch, stride, shortcut, identity_shortcut)

    def branch(self, h: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn2(self.conv1(h)))  # N x planes x H x W
        out = self.relu(self.bn3(self.conv2(out)))  # N x planes x H/s x W/s
        return self.conv3(out)  # N x 4 planes x H/s x W/s


class PreActResNet(nn.Module):
    """conv1 -> BN-ReLU -> three stages of pre-activation units -> BN-ReLU -> pool -> fc."""

    conv_bn_pairs = (("conv1", "bn1"),)

    def relu_pool_pairs(self) -> list[tuple[str, str]]:
        return []  # no max-pool

    def __init__(self, block, n: int, *, num_classes: int = 10, in_chans: int = 3,
                 shortcut: str = "A", identity_shortcut: str = "identity",
                 name: str = "preact_resnet"):
        super().__init__()
        check_choice("shortcut", shortcut, PREACT_SHORTCUTS)
        check_choice("identity_shortcut", identity_shortcut, IDENTITY_SHORTCUTS)
        self.name = name
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.min_input_size = 1
        self.conv1 = conv3x3(in_chans, 16)
        self.bn1 = nn.BatchNorm2d(16)  # the first activation, before the first unit splits
        self.relu = nn.ReLU(inplace=True)
        in_ch = 16
        for i, planes in enumerate((16, 32, 64)):
            units = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                units.append(block(in_ch, planes, stride, shortcut, identity_shortcut,
                                   first=i == 0 and j == 0))
                in_ch = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*units))
        self.num_stages = 3
        self.num_features = in_ch
        self.bn_final = nn.BatchNorm2d(in_ch)  # the extra activation after the last addition
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        he_init(self)

    def blocks(self) -> list[nn.Module]:
        """Every pre-activation unit, stem to head."""
        return [b for i in range(self.num_stages) for b in getattr(self, f"layer{i + 1}")]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self.name, x, self.in_chans, self.min_input_size)
        x = self.relu(self.bn1(self.conv1(x)))  # N x 16 x H x W
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)  # stages 2, 3 halve H, W
        return self.relu(self.bn_final(x))  # N x num_features x H/4 x W/4

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x num_features
        return x if pre_logits else self.fc(x)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model("preact-cifar", (3, 32, 32), {
    # name: (depth, parameters, multiply-adds at 32x32)
    "preact_resnet20": (20, 269_722, 40_551_040),
    "preact_resnet56": (56, 853_018, 125_485_696),
    "preact_resnet110": (110, 1_727_962, 252_887_680),
}, "pre-activation ResNet-{depth} (He et al. 2016), basic units, option A")
def preact_resnet(depth: int, *, num_classes: int = 10, in_chans: int = 3,
                  shortcut: str = "A", identity_shortcut: str = "identity") -> PreActResNet:
    """Basic units, depth 6n + 2; ``shortcut`` "A" as the CIFAR ResNets of He et al. 2015
    (the same parameters as resnet20/56/110) or "B" (1x1 projections where shapes change)."""
    if not isinstance(depth, int) or (depth - 2) % 6 or depth < 8:
        raise UserError(f"a basic pre-activation ResNet has depth 6n+2, got {depth}")
    return PreActResNet(PreActBasicBlock, (depth - 2) // 6, num_classes=num_classes,
                        in_chans=in_chans, shortcut=shortcut,
                        identity_shortcut=identity_shortcut, name=f"preact_resnet{depth}")


@register_model("preact-cifar", (3, 32, 32), {
    "preact_resnet164": (164, 1_703_258, 247_646_720),
    "preact_resnet1001": (1001, 10_327_706, 1_490_995_712),
}, "pre-activation ResNet-{depth} (He et al. 2016), bottleneck units, option B")
def preact_resnet_bottleneck(depth: int, *, num_classes: int = 10, in_chans: int = 3,
                             shortcut: str = "B",
                             identity_shortcut: str = "identity") -> PreActResNet:
    """Bottleneck units, depth 9n + 2; ``shortcut`` "B" (the 1x1 projections of the paper's
    appendix) or "A"."""
    if not isinstance(depth, int) or (depth - 2) % 9 or depth < 11:
        raise UserError(f"a bottleneck pre-activation ResNet has depth 9n+2, got {depth}")
    return PreActResNet(PreActBottleneck, (depth - 2) // 9, num_classes=num_classes,
                        in_chans=in_chans, shortcut=shortcut,
                        identity_shortcut=identity_shortcut, name=f"preact_resnet{depth}")
