"""ResNet (He et al. 2015, arXiv:1512.03385) and its plain twins.

ImageNet family (Table 1): a 7x7/2 stem, four stages of basic or bottleneck blocks.
CIFAR family (Sec. 4.2): a 3x3 stem, three stages of n basic blocks, depth 6n+2.

A residual block computes Eq. (1)/(2): y = F(x) + shortcut(x). Its plain twin
(``shortcut="none"``) computes y = F(x) and is otherwise the same network.
Attribute names follow torchvision so its state_dicts load with strict=True.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..model_options import SHORTCUTS, STRIDE_AT
from .layers import (
    NORMS,
    check_choice,
    check_input,
    conv1x1,
    conv3x3,
    he_init,
    make_shortcut,
    norm_layer,
)
from .registry import register_model


class _Block(nn.Module):
    """What every block shares: y = relu(F(x) + shortcut(x)), or relu(F(x)) in the plain twin.
    Subclasses define ``residual`` (F) and set ``downsample``, ``has_shortcut`` and ``relu``."""

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Identity, or option A/B/C's zero-pad / projection W_s where shapes change."""
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        if self.has_shortcut:
            out = out + self.shortcut(x)  # Eq. (1) y = F(x) + x; Eq. (2) y = F(x) + W_s x
        return self.relu(out)


class BasicBlock(_Block):
    """Two 3x3 convolutions (Fig. 2 / Fig. 5 left)."""

    expansion = 1
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, in_ch: int, planes: int, stride: int, shortcut: str, norm: str,
                 stride_at: str = "3x3"):
        super().__init__()
        out_ch = planes * self.expansion
        bias = norm == "none"
        self.conv1 = conv3x3(in_ch, planes, stride, bias=bias)
        self.bn1 = norm_layer(norm, planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, out_ch, bias=bias)
        self.bn2 = norm_layer(norm, out_ch)
        self.downsample = make_shortcut(shortcut, in_ch, out_ch, stride, norm)
        self.has_shortcut = shortcut != "none"

    @property
    def last_norm(self) -> nn.Module:
        return self.bn2

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """F(x): the stacked layers, before the addition (Eq. 1)."""
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))



class Bottleneck(_Block):
    """1x1 reduce, 3x3, 1x1 restore (Fig. 5 right). ``stride_at`` chooses where the stride
    sits: on the 3x3 (torchvision "v1.5") or on the first 1x1 (the paper, v1)."""

    expansion = 4
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, in_ch: int, planes: int, stride: int, shortcut: str, norm: str,
                 stride_at: str = "3x3"):
        super().__init__()
        check_choice("stride_at", stride_at, STRIDE_AT)
        out_ch = planes * self.expansion
        bias = norm == "none"
        s1, s3 = (1, stride) if stride_at == "3x3" else (stride, 1)
        self.conv1 = conv1x1(in_ch, planes, s1, bias=bias)
        self.bn1 = norm_layer(norm, planes)
        self.conv2 = conv3x3(planes, planes, s3, bias=bias)
        self.bn2 = norm_layer(norm, planes)
        self.conv3 = conv1x1(planes, out_ch, bias=bias)
        self.bn3 = norm_layer(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(shortcut, in_ch, out_ch, stride, norm)
        self.has_shortcut = shortcut != "none"

    @property
    def last_norm(self) -> nn.Module:
        return self.bn3

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))



class ResNet(nn.Module):
    """One class for both families; ``stem`` picks ImageNet (7x7/2 + max-pool) or CIFAR (3x3).

    Args:
        block: BasicBlock or Bottleneck.
        layers: blocks per stage, e.g. [3, 4, 6, 3] for ResNet-50 (Table 1).
        widths: ``planes`` per stage (64..512 ImageNet; 16, 32, 64 CIFAR).
        shortcut: "A" zero-pad identity, "B" projection where shapes change, "C" projection
            everywhere, "none" the plain twin (Sec. 3.3).
        stride_at: bottleneck stride on the "3x3" (v1.5) or the "1x1" (paper v1).
        zero_init_residual: start each block's last BN gamma at 0 (Goyal et al. 2017).
        norm: "bn" (paper: BN after every conv, Sec. 3.4) or "none".
    """

    conv_bn_pairs = (("conv1", "bn1"),)

    def __init__(self, block, layers, widths=(64, 128, 256, 512), *, stem: str = "imagenet",
                 num_classes: int = 1000, in_chans: int = 3, shortcut: str = "B",
                 stride_at: str = "3x3", zero_init_residual: bool = False, norm: str = "bn",
                 name: str = "resnet"):
        super().__init__()
        check_choice("stem", stem, ("imagenet", "cifar"))
        check_choice("shortcut", shortcut, SHORTCUTS)
        check_choice("stride_at", stride_at, STRIDE_AT)
        check_choice("norm", norm, NORMS)
        if num_classes < 1 or in_chans < 1:
            raise UserError(f"num_classes and in_chans must be >= 1, got {num_classes}, {in_chans}")
        self.name = name
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.min_input_size = 1
        bias = norm == "none"
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, widths[0], 7, stride=2, padding=3, bias=bias)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(in_chans, widths[0], bias=bias)
            self.maxpool = nn.Identity()
        self.bn1 = norm_layer(norm, widths[0])
        self.relu = nn.ReLU(inplace=True)
        in_ch = widths[0]
        for i, (planes, n) in enumerate(zip(widths, layers, strict=True)):
            stage, in_ch = _make_stage(block, in_ch, planes, n, 1 if i == 0 else 2,
                                       shortcut, norm, stride_at)
            self.add_module(f"layer{i + 1}", stage)
        self.num_stages = len(layers)
        self.num_features = in_ch
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self.init_weights(zero_init_residual and norm == "bn")

    def init_weights(self, zero_init_residual: bool = False) -> None:
        """He init (Sec. 3.4). Optionally zero the last BN gamma of every block so each
        residual block starts as the identity (Goyal et al. 2017)."""
        he_init(self)
        if zero_init_residual:
            for m in self.blocks():
                nn.init.zeros_(m.last_norm.weight)

    def blocks(self) -> list[nn.Module]:
        """Every residual (or plain) block, stem to head."""
        return [b for i in range(self.num_stages) for b in getattr(self, f"layer{i + 1}")]

    def relu_pool_pairs(self) -> list[tuple[str, str]]:
        """(ReLU, max-pool) submodule names where the forward applies the pool right after the
        ReLU, so that the two may swap (``cnnarch.models.reorder``): the ImageNet stem."""
        return [("relu", "maxpool")] if isinstance(self.maxpool, nn.MaxPool2d) else []

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self.name, x, self.in_chans, self.min_input_size)
        # Stem (Table 1): conv -> BN -> ReLU -> 3x3/2 max-pool; CIFAR: the pool is an identity
        x = self.relu(self.bn1(self.conv1(x)))  # ImageNet: N x 64 x H/2 x W/2
        x = self.maxpool(x)  # ImageNet: N x 64 x H/4 x W/4
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)  # each later stage halves H, W
        return x  # ImageNet: N x 512*expansion x H/32 x W/32; CIFAR: N x 64 x H/4 x W/4

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x num_features
        return x if pre_logits else self.fc(x)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _make_stage(block, in_ch, planes, n, stride, shortcut, norm, stride_at):
    """n blocks; the first one changes the stride and/or depth."""
    blocks = []
    for j in range(n):
        blocks.append(block(in_ch, planes, stride if j == 0 else 1, shortcut, norm, stride_at))
        in_ch = planes * block.expansion
    return nn.Sequential(*blocks), in_ch


# Table 1 of the paper: blocks per stage.
IMAGENET_DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}

@register_model("resnet-imagenet", (3, 224, 224), {
    # name: (depth, parameters, multiply-adds at 224x224)
    "resnet18": (18, 11_689_512, 1_814_073_344),
    "resnet34": (34, 21_797_672, 3_663_761_408),
    "resnet50": (50, 25_557_032, 4_089_184_256),
    "resnet101": (101, 44_549_160, 7_801_405_440),
    "resnet152": (152, 60_192_808, 11_513_626_624),
}, "ResNet-{depth} (Table 1), option B shortcuts")
def imagenet_resnet(depth: int, *, num_classes: int = 1000, in_chans: int = 3,
                    shortcut: str = "B", stride_at: str = "3x3",
                    zero_init_residual: bool = False, norm: str = "bn") -> ResNet:
    """Table 1: a 7x7/2 stem and four stages; ``depth`` one of ``IMAGENET_DEPTHS``."""
    if depth not in IMAGENET_DEPTHS:
        raise UserError(f"an ImageNet ResNet has depth {', '.join(map(str, IMAGENET_DEPTHS))}, "
                        f"got {depth}")
    block, layers = IMAGENET_DEPTHS[depth]
    name = f"plain{depth}" if shortcut == "none" else f"resnet{depth}"
    return ResNet(block, layers, (64, 128, 256, 512), stem="imagenet", num_classes=num_classes,
                  in_chans=in_chans, shortcut=shortcut, stride_at=stride_at,
                  zero_init_residual=zero_init_residual, norm=norm, name=name)


@register_model("plain-imagenet", (3, 224, 224), {
    "plain18": (18, 11_515_688, 1_794_805_760),
    "plain34": (34, 21_623_848, 3_644_493_824),
}, "plain-{depth}: ResNet-{depth} without shortcuts")
def imagenet_plain(depth: int, *, num_classes: int = 1000, in_chans: int = 3,
                   stride_at: str = "3x3", norm: str = "bn") -> ResNet:
    """The plain twin of Sec. 4.1: the same layers, y = F(x)."""
    return imagenet_resnet(depth, num_classes=num_classes, in_chans=in_chans, shortcut="none",
                           stride_at=stride_at, norm=norm)


@register_model("resnet-cifar", (3, 32, 32), {
    "resnet20": (20, 269_722, 40_551_040),
    "resnet32": (32, 464_154, 68_862_592),
    "resnet44": (44, 658_586, 97_174_144),
    "resnet56": (56, 853_018, 125_485_696),
    "resnet110": (110, 1_727_962, 252_887_680),
    "resnet1202": (1202, 19_421_274, 2_829_238_912),
}, "CIFAR ResNet-{depth} (Sec. 4.2, 6n+2 layers), option A")
def cifar_resnet(depth: int, *, num_classes: int = 10, in_chans: int = 3, shortcut: str = "A",
                 zero_init_residual: bool = False, norm: str = "bn") -> ResNet:
    """Sec. 4.2: 16/32/64 filters on 32/16/8 maps, n = (depth - 2) / 6 blocks each."""
    if not isinstance(depth, int) or (depth - 2) % 6 or depth < 8:
        raise UserError(f"a CIFAR ResNet has depth 6n+2 (20, 32, 44, ...), got {depth}")
    n = (depth - 2) // 6
    name = f"plain{depth}" if shortcut == "none" else f"resnet{depth}"
    return ResNet(BasicBlock, (n, n, n), (16, 32, 64), stem="cifar", num_classes=num_classes,
                  in_chans=in_chans, shortcut=shortcut, zero_init_residual=zero_init_residual,
                  norm=norm, name=name)


@register_model("plain-cifar", (3, 32, 32), {
    "plain20": (20, 269_722, 40_551_040),
    "plain32": (32, 464_154, 68_862_592),
    "plain44": (44, 658_586, 97_174_144),
    "plain56": (56, 853_018, 125_485_696),
    "plain110": (110, 1_727_962, 252_887_680),
}, "CIFAR plain-{depth}: ResNet-{depth} without shortcuts")
def cifar_plain(depth: int, *, num_classes: int = 10, in_chans: int = 3,
                norm: str = "bn") -> ResNet:
    """The plain twin of Sec. 4.2 (Fig. 6 left)."""
    return cifar_resnet(depth, num_classes=num_classes, in_chans=in_chans, shortcut="none",
                        norm=norm)
