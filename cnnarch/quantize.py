"""Post-training int8 under its older module name; the code lives in
:mod:`cnnarch.inference.quantize`."""

from .inference.quantize import RTOL_INT8, int8_available, quantize_int8

__all__ = ["RTOL_INT8", "int8_available", "quantize_int8"]
