"""How far a transformed model's logits are from the original's, and the tolerances.

Tolerances (``max|y - y_ref| <= atol + rtol * max|y_ref|``, over a whole batch of logits):
fp32 ``rtol=1e-4`` (BN folding and memory layout only reorder fp32 arithmetic);
bf16 ``rtol=2e-1`` (8-bit mantissa: ~0.4 % per rounding, accumulated over ~50 layers; on
an untrained ResNet-50 under inductor the worst logit moved by 11 % of the largest one.
The bound catches broken transformations, whose errors are of the order of the logits
themselves; the accuracy cost on real data is what ``precision_agreement`` measures);
fp16 ``rtol=5e-2``; int8 ``rtol=0.5`` (activations carry ~8 bits over the observed range
rather than relative to each value, so small logits move more: on untrained ResNet and
GoogLeNet, whose logits are near-tied, the worst logit moved by up to ~25 % of the largest
one); ONNX fp32 ``rtol=1e-4``. ``atol=1e-5`` everywhere.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..errors import CnnarchError

RTOL = {"fp32": 1e-4, "bf16": 2e-1, "fp16": 5e-2, "int8": 0.5}
ATOL = 1e-5
ONNX_RTOL = 1e-4


class ToleranceError(CnnarchError, RuntimeError):
    """An optimised or exported model disagrees with the original beyond the tolerance.

    Not the user's mistake: the CLI reports it on one line with exit code 1."""

    exit_code = 1


@dataclass
class OutputCheck:
    """How far a transformed model's logits are from the original's on one batch."""

    precision: str
    max_abs_diff: float
    max_ref: float  # max |y_ref|, the scale the relative tolerance refers to
    rtol: float
    atol: float
    top1_agreement: float  # fraction of the batch with the same argmax
    passed: bool

    @property
    def max_rel_diff(self) -> float:
        return self.max_abs_diff / max(self.max_ref, 1e-30)

    def __str__(self) -> str:
        verdict = "ok" if self.passed else "MISMATCH"
        return (f"{verdict}: max |diff| {self.max_abs_diff:.3g} (= {self.max_rel_diff:.2e} of max "
                f"|logit| {self.max_ref:.3g}; tolerance {self.atol:g} + {self.rtol:g} x max), "
                f"top-1 agreement {self.top1_agreement:.1%} ({self.precision})")

    def to_dict(self) -> dict:
        return dict(asdict(self), max_rel_diff=self.max_rel_diff)


def compare_outputs(out: torch.Tensor, ref: torch.Tensor, *, rtol: float, atol: float = ATOL,
                    precision: str = "fp32") -> OutputCheck:
    """Compare logits ``out`` with ``ref`` (both N x classes, any dtype or device)."""
    out, ref = out.detach().float().cpu(), ref.detach().float().cpu()
    if out.shape != ref.shape:
        raise ToleranceError(f"output shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    diff = (out - ref).abs().max().item() if out.numel() else 0.0
    max_ref = ref.abs().max().item() if ref.numel() else 0.0
    agree = (out.argmax(1) == ref.argmax(1)).float().mean().item() if out.ndim == 2 else 1.0
    ok = math.isfinite(diff) and diff <= atol + rtol * max_ref
    return OutputCheck(precision, diff, max_ref, rtol, atol, agree, ok)


def model_name(model) -> str:
    """The registry name a model was built under, else its class name."""
    return getattr(model, "registry_name", None) or getattr(model, "name", type(model).__name__)
