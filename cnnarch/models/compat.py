"""torchvision compatibility: load its ResNet / GoogLeNet state_dicts into our models.

Our attribute names follow torchvision's, so a torchvision state_dict loads with
``strict=True`` and the outputs match (tests/models/test_compat.py). This module adds
the safe file loading and clear errors; it never imports ``torchvision.models``.

ImageNet weights cannot be downloaded by cnnarch; point it at a file torchvision
saved (``~/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth`` and the like).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from ..errors import UserError, first_line
from .registry import create_model

# Our registry name -> torchvision's builder name.
TORCHVISION_NAMES = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "resnet152": "resnet152",
    "googlenet_tv": "googlenet",
}


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a weights file without running code from it (``weights_only=True``)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pickle refused or not a torch file
        raise UserError(f"cannot load weights from {os.fspath(path)!r} safely: "
                        f"{first_line(exc)}") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{os.fspath(path)!r} does not hold a state_dict of tensors")
    return dict(obj)


def load_torchvision_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load a torchvision state_dict with ``strict=True``; mismatches become one clear error."""
    ours = model.state_dict()
    missing = [k for k in ours if k not in state_dict]
    unexpected = [k for k in state_dict if k not in ours]
    wrong = [k for k in ours if k in state_dict and ours[k].shape != state_dict[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with other shapes (e.g. {k}: "
                         f"{tuple(state_dict[k].shape)} vs {tuple(ours[k].shape)})")
        name = getattr(model, "registry_name", type(model).__name__)
        raise UserError(f"state_dict does not fit {name}: {'; '.join(parts)}")
    model.load_state_dict(state_dict, strict=True)
    return model


def from_torchvision(name: str, weights: str | os.PathLike | Mapping[str, torch.Tensor],
                     **kwargs) -> nn.Module:
    """Build ``name`` and load torchvision weights (a file path or a state_dict).

    The number of classes and, for GoogLeNet, the aux heads are read off the weights.
    """
    if name not in TORCHVISION_NAMES:
        raise UserError(f"{name!r} has no torchvision counterpart; choose one of "
                        f"{', '.join(TORCHVISION_NAMES)}")
    state = read_state_dict(weights) if isinstance(weights, (str, os.PathLike)) else dict(weights)
    if "fc.weight" in state:
        kwargs.setdefault("num_classes", state["fc.weight"].shape[0])
    if name == "googlenet_tv":
        kwargs.setdefault("aux_logits", any(k.startswith("aux1.") for k in state))
    model = create_model(name, **kwargs)
    return load_torchvision_state_dict(model, state)
