"""The names of the inference fast path and the ONNX export under their older module name.

The code lives in :mod:`cnnarch.inference`; import from there.
"""

from .inference.api import optimize, precision_agreement
from .inference.check import ATOL, ONNX_RTOL, RTOL, OutputCheck, ToleranceError, compare_outputs
from .inference.fastpath import Float32, InferenceModel, check_against
from .inference.fold import conv_bn_pairs, fold_bn, fold_conv_bn_
from .inference.hardware import bf16_supported, cpu_flags
from .inference.onnx_export import (
    ONNX_DEFAULT_OPSET,
    ONNX_MIN_OPSET,
    OnnxReport,
    check_opset,
    export_onnx,
    onnx_session,
    read_metadata,
)
from .inference.precision import PRECISIONS, resolve_precision
from .inference.predict import load_image, predict_files

__all__ = [
    "ATOL", "ONNX_DEFAULT_OPSET", "ONNX_MIN_OPSET", "ONNX_RTOL", "PRECISIONS", "RTOL",
    "Float32", "InferenceModel", "OnnxReport", "OutputCheck", "ToleranceError", "bf16_supported",
    "check_against", "check_opset", "compare_outputs", "conv_bn_pairs", "cpu_flags", "export_onnx",
    "fold_bn", "fold_conv_bn_", "load_image", "onnx_session", "optimize", "precision_agreement",
    "predict_files", "read_metadata", "resolve_precision",
]
