"""Numeric precisions: the one list of names, their dtypes, and the "auto" rule.

``PRECISIONS`` is every precision a cnnarch command accepts, and ``--precision`` means the
same everywhere: the arithmetic the model runs in (``train``: the training step's autocast;
``bench``: the timed model; ``eval``: the fast path measured beside fp32). Training takes
the float ones (``TRAIN_PRECISIONS``), inference also int8 (post-training quantisation).
This module imports torch only when a function needs it, so the CLI can list the names.
"""

from __future__ import annotations

from .errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
TRAIN_PRECISIONS = tuple(p for p in PRECISIONS if p != "int8")  # int8 is post-training only


def torch_dtype(precision: str):
    """The torch dtype a float precision computes in (int8 graphs take fp32: they quantise inside)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def resolve_precision(precision: str, device="cpu") -> str:
    """"auto" -> "bf16" where native, else "fp16" on CUDA, else "fp32". "auto" never picks
    int8: it needs calibration data and its accuracy cost depends on them."""
    import torch

    from .hardware import bf16_supported

    if precision not in PRECISIONS:
        raise UserError(f"invalid precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision != "auto":
        if precision == "fp16" and device.type == "cpu":
            raise UserError("fp16 is for CUDA; on the CPU use bf16 or fp32")
        if precision == "int8" and device.type != "cpu":
            raise UserError("int8 runs on the CPU here (inductor's x86 int8 lowering); "
                            "on a GPU use bf16 or fp16")
        return precision
    if bf16_supported(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"
