"""cnnarch: GoogLeNet and ResNet as the papers describe them, with the tools to measure them.

``create_model`` and ``list_models`` are loaded on first use (``import cnnarch`` alone does
not import torch, so ``cnnarch --help`` starts fast).
"""

from __future__ import annotations

__all__ = ["create_model", "list_models"]


def __getattr__(name: str):
    if name in __all__:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'cnnarch' has no attribute {name!r}")
