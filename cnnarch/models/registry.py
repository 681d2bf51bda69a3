"""The model registry: an explicit dict from name to builder (no globals() lookups)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from .googlenet import googlenet, googlenet_small, googlenet_tv
from .preact import PREACT_BASIC_DEPTHS, PREACT_BOTTLENECK_DEPTHS, preact_resnet
from .resnet import CIFAR_DEPTHS, cifar_resnet, imagenet_resnet

RESNET_OPTIONS = ("num_classes", "in_chans", "shortcut", "stride_at", "zero_init_residual", "norm")
PLAIN_OPTIONS = ("num_classes", "in_chans", "stride_at", "norm")
GOOGLENET_OPTIONS = ("num_classes", "in_chans", "inception", "aux_logits", "norm", "dropout",
                     "aux_dropout")
GOOGLENET_TV_OPTIONS = ("num_classes", "in_chans", "inception", "aux_logits", "dropout",
                        "aux_dropout", "transform_input")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int, int]  # native (C, H, W)
    family: str
    options: tuple[str, ...]
    description: str


def _entries() -> dict[str, ModelEntry]:
    out: dict[str, ModelEntry] = {}
    for depth in (18, 34, 50, 101, 152):
        out[f"resnet{depth}"] = ModelEntry(
            f"resnet{depth}", partial(imagenet_resnet, depth), (3, 224, 224), "resnet-imagenet",
            RESNET_OPTIONS, f"ResNet-{depth} (Table 1), option B shortcuts")
    for depth in (18, 34):
        out[f"plain{depth}"] = ModelEntry(
            f"plain{depth}", partial(imagenet_resnet, depth, shortcut="none"), (3, 224, 224),
            "plain-imagenet", PLAIN_OPTIONS, f"plain-{depth}: ResNet-{depth} without shortcuts")
    for depth in CIFAR_DEPTHS:
        out[f"resnet{depth}"] = ModelEntry(
            f"resnet{depth}", partial(cifar_resnet, depth), (3, 32, 32), "resnet-cifar",
            RESNET_OPTIONS, f"CIFAR ResNet-{depth} (Sec. 4.2, n={CIFAR_DEPTHS[depth]}), option A")
    for depth in (20, 32, 44, 56, 110):
        out[f"plain{depth}"] = ModelEntry(
            f"plain{depth}", partial(cifar_resnet, depth, shortcut="none"), (3, 32, 32),
            "plain-cifar", PLAIN_OPTIONS, f"CIFAR plain-{depth}: ResNet-{depth} without shortcuts")
    for depth in (*PREACT_BASIC_DEPTHS, *PREACT_BOTTLENECK_DEPTHS):
        unit = "basic" if depth in PREACT_BASIC_DEPTHS else "bottleneck"
        out[f"preact_resnet{depth}"] = ModelEntry(
            f"preact_resnet{depth}", partial(preact_resnet, depth), (3, 32, 32), "preact-cifar",
            ("num_classes", "in_chans", "shortcut", "identity_shortcut"),
            f"pre-activation ResNet-{depth} (He et al. 2016), {unit} units")
    out["googlenet"] = ModelEntry(
        "googlenet", googlenet, (3, 224, 224), "googlenet", GOOGLENET_OPTIONS,
        "GoogLeNet as in the paper (Table 1, 5x5 branch, LRN, aux heads)")
    out["googlenet_tv"] = ModelEntry(
        "googlenet_tv", googlenet_tv, (3, 224, 224), "googlenet", GOOGLENET_TV_OPTIONS,
        "GoogLeNet in torchvision's layout (loads its weights)")
    out["googlenet_small"] = ModelEntry(
        "googlenet_small", googlenet_small, (3, 32, 32), "googlenet", GOOGLENET_OPTIONS,
        "GoogLeNet's nine modules for 32x32 and smaller inputs")
    return out


MODELS: dict[str, ModelEntry] = _entries()


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, in registry order (optionally one family)."""
    return [n for n, e in MODELS.items() if family is None or e.family == family]


def get_entry(name: str) -> ModelEntry:
    entry = MODELS.get(name)
    if entry is None:
        close = difflib.get_close_matches(str(name), MODELS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (see `cnnarch models`)")
    return entry


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model. Options use the papers' vocabulary (see ``ModelEntry.options``)."""
    entry = get_entry(name)
    unknown = sorted(set(kwargs) - set(entry.options))
    if unknown:
        raise ValueError(f"{name} has no option {', '.join(map(repr, unknown))}; "
                         f"valid options: {', '.join(entry.options)}")
    model = entry.builder(**kwargs)
    model.registry_name = name
    return model
