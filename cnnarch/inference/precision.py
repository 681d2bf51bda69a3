"""The precision names and the "auto" rule under their older module name; the code lives in
:mod:`cnnarch.precision`."""

from ..precision import PRECISIONS, TRAIN_PRECISIONS, resolve_precision, torch_dtype

__all__ = ["PRECISIONS", "TRAIN_PRECISIONS", "resolve_precision", "torch_dtype"]
