"""Inference: the fast path, int8, ONNX, prediction and benchmarks, in one direction of imports.

    fold -> check -> fastpath -> quantize -> api -> bench;   check -> onnx_export;   predict

Each module imports only modules to its left (and the library below this package:
``errors``, ``hardware``, ``precision``, ``data``, ``models`` with its speed reorderings in
``models.reorder``, and ``train``); none imports this package's ``__init__``. The machine
facts and the precision names live in ``cnnarch.hardware`` and ``cnnarch.precision``
(``inference.hardware`` and ``inference.precision`` re-export them under the older names).
The names below are loaded on first use, so ``import cnnarch.inference.fold`` costs no
more than that module.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "hardware": ("bf16_supported", "cpu_flags", "cpu_model", "machine_info"),
    "precision": ("PRECISIONS", "TRAIN_PRECISIONS", "resolve_precision", "torch_dtype"),
    "fold": ("conv_bn_pairs", "fold_bn", "fold_conv_bn_"),
    "check": ("ATOL", "RTOL", "OutputCheck", "ToleranceError", "compare_outputs"),
    "fastpath": ("InferenceModel",),
    "quantize": ("int8_available", "quantize_int8"),
    "api": ("calibration_images", "fast_path_cost", "optimize", "precision_agreement"),
    "onnx_export": ("export_onnx", "onnx_session", "read_metadata"),
    "predict": ("load_image", "predict_files"),
    "bench": ("BenchResult",),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'cnnarch.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


def __dir__():
    return __all__
