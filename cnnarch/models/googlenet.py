"""GoogLeNet / Inception v1 (Szegedy et al. 2014, arXiv:1409.4842).

Table 1 of the paper is data here (``TABLE1``): one named row per Inception module.
Three variants share one class:

- ``googlenet``: the paper. True 5x5 branch, conv biases, LRN after the stem,
  3x3/2 max-pools, 7x7 average pool, dropout 40 %, aux heads as in Sec. 5.
- ``googlenet_tv``: torchvision's layout (its ported weights load with strict=True):
  BN (eps 1e-3) instead of LRN and biases, a 3x3 in the "5x5" branch (pytorch/vision
  issue 906), a 2x2/2 pool before 5a, dropout 20 %, BN conv in adaptive-pool aux heads.
- ``googlenet_small``: the same nine modules for 32x32 and smaller inputs (digits,
  CIFAR): the stem keeps its three convolutions but not its two stride-2 pools.

``inception="naive"`` swaps every module for the lecture's naive one (1x1, 3x3, 5x5
convolutions and a 3x3 max-pool on the same input, no reductions); each module's input
depth then follows from the previous module's actual output, so depth only grows.
``inception="linear"`` keeps the paper's module but drops the ReLU after the two 1x1
reductions (before the 3x3 and the 5x5): the same parameters and multiply-adds as the
bottleneck, without the non-linearity Sec. 4 credits the reductions with ("dual purpose").
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..model_options import INCEPTION_MODES
from .layers import check_choice, check_input, he_init, xavier_2014_init
from .registry import register_model


class InceptionRow(NamedTuple):
    """One row of Table 1, columns in the paper's order."""

    n1x1: int
    n3x3red: int
    n3x3: int
    n5x5red: int
    n5x5: int
    pool_proj: int


# Table 1 (paper): the nine Inception modules.
TABLE1: dict[str, InceptionRow] = {
    "3a": InceptionRow(64, 96, 128, 16, 32, 32),
    "3b": InceptionRow(128, 128, 192, 32, 96, 64),
    "4a": InceptionRow(192, 96, 208, 16, 48, 64),
    "4b": InceptionRow(160, 112, 224, 24, 64, 64),
    "4c": InceptionRow(128, 128, 256, 24, 64, 64),
    "4d": InceptionRow(112, 144, 288, 32, 64, 64),
    "4e": InceptionRow(256, 160, 320, 32, 128, 128),
    "5a": InceptionRow(256, 160, 320, 32, 128, 128),
    "5b": InceptionRow(384, 192, 384, 48, 128, 128),
}


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output with aux heads. Named, so the heads cannot be swapped
    (torchvision returns (logits, aux2, aux1))."""

    logits: torch.Tensor
    aux1: torch.Tensor  # head on 4a
    aux2: torch.Tensor  # head on 4d


def googlenet_loss(outputs, target: torch.Tensor, criterion=F.cross_entropy,
                   aux_weight: float = 0.3) -> torch.Tensor:
    """Sec. 5: training loss = main + 0.3 x (aux1 + aux2); plain logits give the main loss."""
    if isinstance(outputs, GoogLeNetOutputs):
        main = criterion(outputs.logits, target)
        return main + aux_weight * (criterion(outputs.aux1, target) + criterion(outputs.aux2, target))
    return criterion(outputs, target)


class ConvAct(nn.Module):
    """Convolution, optional BN, ReLU. Sec. 5: every convolution, reductions and
    projections included, uses ReLU. Without BN the convolution carries a bias.
    ``relu=False`` leaves the ReLU out (the linear reductions of ``inception="linear"``)."""

    conv_bn_pairs = (("conv", "bn"),)

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bn: bool = False, eps: float = 1e-3, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding,
                              bias=not bn)
        self.bn = nn.BatchNorm2d(out_ch, eps=eps) if bn else nn.Identity()
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution (and BN) without the ReLU."""
        return self.bn(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.pre_activation(x))


class Inception(nn.Module):
    """Four parallel branches on the same input, concatenated along depth (Fig. 2).

    bottleneck (Fig. 2b): 1x1 | 1x1 reduce -> 3x3 | 1x1 reduce -> 5x5 | 3x3 pool -> 1x1 proj
    linear:               as bottleneck, with no ReLU after the two 1x1 reductions
    naive (Fig. 2a):      1x1 | 3x3            | 5x5            | 3x3 pool (keeps full depth)
    """

    def __init__(self, in_ch: int, row: InceptionRow, mode: str = "bottleneck",
                 bn: bool = False, eps: float = 1e-3, k5: int = 5, ceil_mode: bool = True):
        super().__init__()
        check_choice("inception", mode, INCEPTION_MODES)
        self.mode = mode
        pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=ceil_mode)
        if mode in ("bottleneck", "linear"):
            act = mode == "bottleneck"  # Sec. 4: the reductions "also include the use of ReLU"
            self.branch1 = ConvAct(in_ch, row.n1x1, 1, bn=bn, eps=eps)
            self.branch2 = nn.Sequential(ConvAct(in_ch, row.n3x3red, 1, bn=bn, eps=eps, relu=act),
                                         ConvAct(row.n3x3red, row.n3x3, 3, padding=1, bn=bn, eps=eps))
            self.branch3 = nn.Sequential(ConvAct(in_ch, row.n5x5red, 1, bn=bn, eps=eps, relu=act),
                                         ConvAct(row.n5x5red, row.n5x5, k5, padding=k5 // 2, bn=bn, eps=eps))
            self.branch4 = nn.Sequential(pool, ConvAct(in_ch, row.pool_proj, 1, bn=bn, eps=eps))
            self.out_channels = row.n1x1 + row.n3x3 + row.n5x5 + row.pool_proj
        else:
            self.branch1 = ConvAct(in_ch, row.n1x1, 1, bn=bn, eps=eps)
            self.branch2 = ConvAct(in_ch, row.n3x3, 3, padding=1, bn=bn, eps=eps)
            self.branch3 = ConvAct(in_ch, row.n5x5, k5, padding=k5 // 2, bn=bn, eps=eps)
            self.branch4 = pool
            self.out_channels = row.n1x1 + row.n3x3 + row.n5x5 + in_ch  # the pool keeps depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, 1)  # N x out_channels x H x W (depth-wise concatenation)


class InceptionAux(nn.Module):
    """Sec. 5 auxiliary classifier: 5x5/3 average pool (-> 4x4), 1x1 conv 128 + ReLU,
    FC 1024 + ReLU, dropout 70 %, linear to the classes. ``adaptive`` pools to 4x4
    whatever the input size (torchvision, and the small-input variant)."""

    def __init__(self, in_ch: int, num_classes: int, adaptive: bool = False, bn: bool = False,
                 eps: float = 1e-3, dropout: float = 0.7):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4) if adaptive else nn.AvgPool2d(5, stride=3)
        self.conv = ConvAct(in_ch, 128, 1, bn=bn, eps=eps)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pool(x))  # N x 128 x 4 x 4
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)  # N x 1024
        return self.fc2(self.dropout(x))  # N x num_classes


STEMS = ("paper", "tv", "small")
NORMS = ("lrn", "bn", "none")


class GoogLeNet(nn.Module):
    """GoogLeNet with the paper's attribute names (conv1..3, inception3a..5b, aux1/aux2).

    Args:
        stem: "paper" | "tv" (ImageNet, 224x224) | "small" (no stride-2 stem pools).
        norm: "lrn" (the paper: LRN after the stem, biased convs), "bn" (BN after every
            conv, no LRN) or "none".
        inception: "bottleneck" (Fig. 2b, the paper), "linear" (Fig. 2b without the ReLU
            after the 1x1 reductions) or "naive" (Fig. 2a).
        aux_logits: build the two auxiliary heads on 4a and 4d (used in training only).
        k5: kernel of the "5x5" branch (5 in the paper, 3 in torchvision).
        pool4_kernel: the max-pool before 5a (3 in the paper, 2 in torchvision).
        dropout: before the last linear layer (40 % in the paper).
        transform_input: torchvision's re-normalisation for its ported weights.
    """

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, stem: str = "paper",
                 norm: str = "lrn", inception: str = "bottleneck", aux_logits: bool = True,
                 k5: int = 5, pool4_kernel: int = 3, dropout: float = 0.4,
                 aux_dropout: float = 0.7, bn_eps: float = 1e-3, transform_input: bool = False,
                 name: str = "googlenet"):
        super().__init__()
        check_choice("stem", stem, STEMS)
        check_choice("norm", norm, NORMS)
        check_choice("inception", inception, INCEPTION_MODES)
        if num_classes < 1 or in_chans < 1:
            raise UserError(f"num_classes and in_chans must be >= 1, got {num_classes}, {in_chans}")
        if not 0.0 <= dropout < 1.0 or not 0.0 <= aux_dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {dropout}, {aux_dropout}")
        self.name = name
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.inception_mode = inception
        bn, eps = norm == "bn", bn_eps
        small = stem == "small"

        def pool(k: int = 3) -> nn.Module:
            if small:  # keep 32x32 / 8x8 inputs large enough for nine modules
                return nn.MaxPool2d(3, stride=2, padding=1)
            return nn.MaxPool2d(k, stride=2, ceil_mode=True)

        # Stem (Table 1 rows conv1, max pool, conv2 = 1x1 reduce + 3x3, max pool).
        self.conv1 = ConvAct(in_chans, 64, 3 if small else 7, stride=1 if small else 2,
                             padding=1 if small else 3, bn=bn, eps=eps)
        self.maxpool1 = nn.Identity() if small else pool()
        self.lrn1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75) if norm == "lrn" else nn.Identity()
        self.conv2 = ConvAct(64, 64, 1, bn=bn, eps=eps)
        self.conv3 = ConvAct(64, 192, 3, padding=1, bn=bn, eps=eps)
        self.lrn2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75) if norm == "lrn" else nn.Identity()
        self.maxpool2 = nn.Identity() if small else pool()

        depth = 192
        for key, row in TABLE1.items():
            module = Inception(depth, row, inception, bn=bn, eps=eps, k5=k5)
            self.add_module(f"inception{key}", module)
            depth = module.out_channels
            if key == "3b":
                self.maxpool3 = pool()
            elif key == "4e":
                self.maxpool4 = pool(pool4_kernel)
        self.num_features = depth

        if aux_logits:
            adaptive = stem != "paper"
            self.aux1 = InceptionAux(self.inception4a.out_channels, num_classes, adaptive, bn, eps, aux_dropout)
            self.aux2 = InceptionAux(self.inception4d.out_channels, num_classes, adaptive, bn, eps, aux_dropout)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = nn.AvgPool2d(7, stride=1) if stem == "paper" else nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(depth, num_classes)
        self.min_input_size = _min_input_size(stem, pool4_kernel, aux_logits)
        self.init_weights()

    def init_weights(self) -> None:
        """Truncated normal (std 0.01) as torchvision's GoogLeNet; BN gamma 1, beta 0. The
        paper gives no init. Without BN this init does not train googlenet_small (its signal
        shrinks ~4x per layer; 20 epochs on digits at lr 0.01 or 0.1 stay at chance), so
        that builder uses ``xavier_2014_init`` instead (docs/reproduce.md)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def inception_modules(self) -> dict[str, Inception]:
        return {key: getattr(self, f"inception{key}") for key in TABLE1}

    def relu_pool_pairs(self) -> list[tuple[str, str]]:
        """(ReLU, max-pool) submodule names where the forward applies the pool right after the
        ReLU, so that the two may swap (``cnnarch.models.reorder``). The paper's LRN
        between conv3's ReLU and maxpool2 does not commute with them."""
        pairs = []
        if isinstance(self.maxpool1, nn.MaxPool2d):
            pairs.append(("conv1.relu", "maxpool1"))
        if isinstance(self.maxpool2, nn.MaxPool2d) and isinstance(self.lrn2, nn.Identity):
            pairs.append(("conv3.relu", "maxpool2"))
        return pairs

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        # torchvision's ported weights expect (x - 0.5) / 0.5 from ImageNet-normalised input.
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        chans = [x[:, i : i + 1] * (std[i] / 0.5) + (mean[i] - 0.5) / 0.5 for i in range(3)]
        return torch.cat(chans, 1)

    def _features(self, x: torch.Tensor):
        """The trunk; also returns the aux heads' logits when they are in use."""
        check_input(self.name, x, self.in_chans, self.min_input_size)
        if self.transform_input:
            x = self._transform(x)
        use_aux = self.aux_logits and self.training
        # Stem (Table 1, Fig. 3): conv 7x7/2 -> max pool 3x3/2 -> LRN -> conv 1x1 -> conv 3x3
        # -> LRN -> max pool 3x3/2, each conv with its ReLU
        x = self.conv1(x)  # N x 64 x 112 x 112
        x = self.lrn1(self.maxpool1(x))  # N x 64 x 56 x 56
        x = self.conv2(x)  # N x 64 x 56 x 56
        x = self.conv3(x)  # N x 192 x 56 x 56
        x = self.maxpool2(self.lrn2(x))  # N x 192 x 28 x 28
        x = self.inception3a(x)  # N x 256 x 28 x 28
        x = self.inception3b(x)  # N x 480 x 28 x 28
        x = self.maxpool3(x)  # N x 480 x 14 x 14
        x = self.inception4a(x)  # N x 512 x 14 x 14
        aux1 = self.aux1(x) if use_aux else None
        x = self.inception4b(x)  # N x 512 x 14 x 14
        x = self.inception4c(x)  # N x 512 x 14 x 14
        x = self.inception4d(x)  # N x 528 x 14 x 14
        aux2 = self.aux2(x) if use_aux else None
        x = self.inception4e(x)  # N x 832 x 14 x 14
        x = self.maxpool4(x)  # N x 832 x 7 x 7
        x = self.inception5a(x)  # N x 832 x 7 x 7
        x = self.inception5b(x)  # N x 1024 x 7 x 7
        return x, aux1, aux2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 1024
        x = self.dropout(x)
        return x if pre_logits else self.fc(x)  # N x num_classes

    def forward(self, x: torch.Tensor):
        x, aux1, aux2 = self._features(x)
        logits = self.forward_head(x)
        if aux1 is not None:
            return GoogLeNetOutputs(logits, aux1, aux2)  # training with aux heads only
        return logits


def _pool_out(size: int, k: int, s: int, p: int = 0, ceil: bool = False) -> int:
    """Output size of a conv/pool along one axis, PyTorch's rule (with ceil_mode)."""
    span = size + 2 * p - k
    if span < 0 and not ceil:
        return 0
    out = (math.ceil(span / s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def _min_input_size(stem: str, pool4_kernel: int, aux: bool) -> int:
    """Smallest square input every layer of this variant accepts (checked in tests)."""
    if stem == "small":
        plan = [("pool", (3, 2, 1, False)), ("aux", None), ("pool", (3, 2, 1, False))]
        head = None
    else:
        plan = [("pool", (7, 2, 3, False)), ("pool", (3, 2, 0, True)), ("pool", (3, 2, 0, True)),
                ("pool", (3, 2, 0, True)), ("aux", None), ("pool", (pool4_kernel, 2, 0, True))]
        head = 7 if stem == "paper" else None
    for size in range(1, 4096):
        s, ok = size, True
        for kind, args in plan:
            if kind == "aux":
                ok = not (aux and stem == "paper") or _pool_out(s, 5, 3) >= 1
            else:
                s = _pool_out(s, *args)
                ok = s >= 1
            if not ok:
                break
        if ok and (head is None or s >= head):
            return size
    raise AssertionError("no input size fits")  # pragma: no cover


# GoogLeNet's depth: "22 layers deep when counting only layers with parameters" (Sec. 5).
# Facts: parameters and multiply-adds without the aux heads, which run in training only.


@register_model("googlenet", (3, 224, 224), {"googlenet": (22, 6_998_552, 1_582_671_872)},
                "GoogLeNet as in the paper (Table 1, 5x5 branch, LRN, aux heads)")
def googlenet(*, num_classes: int = 1000, in_chans: int = 3, norm: str = "lrn",
              inception: str = "bottleneck", aux_logits: bool = True, dropout: float = 0.4,
              aux_dropout: float = 0.7) -> GoogLeNet:
    """The paper's network: Table 1, true 5x5, LRN, dropout 40 %, Sec. 5 aux heads."""
    return GoogLeNet(num_classes=num_classes, in_chans=in_chans, stem="paper", norm=norm,
                     inception=inception, aux_logits=aux_logits, k5=5, pool4_kernel=3,
                     dropout=dropout, aux_dropout=aux_dropout, name="googlenet")


@register_model("googlenet", (3, 224, 224), {"googlenet_tv": (22, 6_624_904, 1_498_376_192)},
                "GoogLeNet in torchvision's layout (loads its weights)")
def googlenet_tv(*, num_classes: int = 1000, in_chans: int = 3, inception: str = "bottleneck",
                 aux_logits: bool = True, dropout: float = 0.2, aux_dropout: float = 0.7,
                 transform_input: bool = False) -> GoogLeNet:
    """torchvision-compatible layout (see module docstring for each departure)."""
    return GoogLeNet(num_classes=num_classes, in_chans=in_chans, stem="tv", norm="bn",
                     inception=inception, aux_logits=aux_logits, k5=3, pool4_kernel=2,
                     dropout=dropout, aux_dropout=aux_dropout, bn_eps=1e-3,
                     transform_input=transform_input, name="googlenet_tv")


@register_model("googlenet", (3, 32, 32), {"googlenet_small": (22, 5_983_402, 1_561_143_296)},
                "GoogLeNet's nine modules for 32x32 and smaller inputs")
def googlenet_small(*, num_classes: int = 10, in_chans: int = 3, norm: str = "bn",
                    inception: str = "bottleneck", aux_logits: bool = True,
                    dropout: float = 0.4, aux_dropout: float = 0.7) -> GoogLeNet:
    """Nine paper modules for 32x32 and smaller inputs; BN by default (trains from scratch
    on digits/CIFAR without LRN-era tricks). With BN the convolutions get He init (as the
    ResNets): behind BN a weight's scale only sets its effective step size, lr / ||w||^2,
    and the 0.01-std init made that 10-100x larger than He init's, so the network trained
    slowly and its BN running statistics lagged (docs/reproduce.md, googlenet_small). Without
    BN (``norm="none"``, the 2014 setting, or ``"lrn"``) every layer gets the BVLC Caffe GoogLeNet's
    Xavier init and 0.2 biases, under which that network trains; the 0.01-std init does not."""
    model = GoogLeNet(num_classes=num_classes, in_chans=in_chans, stem="small", norm=norm,
                      inception=inception, aux_logits=aux_logits, k5=5, pool4_kernel=3,
                      dropout=dropout, aux_dropout=aux_dropout, name="googlenet_small")
    if norm == "bn":
        he_init(model)  # convolutions only; the linear layers keep the 0.01-std init
    else:  # "none" and "lrn": no BN
        xavier_2014_init(model)
    return model
