"""The float inference fast path: fold, cast, lay out, optionally compile; checked.

:func:`optimize_float` returns an :class:`InferenceModel`: a copy of the model in eval
mode with every convolution + BatchNorm pair folded into one convolution
(:mod:`cnnarch.inference.fold`), channels_last memory, bf16 (or fp16) weights and
activations, and optionally ``torch.compile`` (inductor, with weight freezing on the CPU).
The copy's outputs are compared with the original's on the example batch and kept on the
returned model as ``.check``; outside the tolerance (:mod:`cnnarch.inference.check`) it
raises :class:`~cnnarch.inference.check.ToleranceError`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable

import torch
from torch import nn

from ..hardware import sync
from ..models.reorder import reorder_for_speed
from ..precision import torch_dtype
from .check import RTOL, OutputCheck, ToleranceError, compare_outputs, model_name
from .fold import fold_bn as fold_bn_

# The model metadata an InferenceModel forwards, so callers can treat it like the model.
FORWARDED_ATTRS = ("name", "registry_name", "in_chans", "num_classes", "min_input_size")


class InferenceModel(nn.Module):
    """An optimised copy of a model for inference. Takes fp32 NCHW batches (any layout),
    returns fp32 logits. Attributes: ``model`` (the folded, cast copy), ``precision``,
    ``channels_last``, ``compiled`` (whether ``compiled_fn`` runs instead of ``model``),
    ``folded`` (number of BNs folded), ``check`` (:class:`OutputCheck` against the
    original) and ``compile_time_s``."""

    def __init__(self, model: nn.Module, *, precision: str, channels_last: bool,
                 folded: int, device: torch.device,
                 compiled_fn: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.model = model
        self.precision = precision
        self.dtype = torch_dtype(precision)
        self.channels_last = channels_last
        self.folded = folded
        self.device = device
        self.compiled_fn = compiled_fn
        self.check: OutputCheck | None = None
        self.compile_time_s: float | None = None
        for attr in FORWARDED_ATTRS:
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    @property
    def compiled(self) -> bool:
        return self.compiled_fn is not None

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        with torch.no_grad():
            if self.compiled_fn is not None:
                with inductor_freezing(self.device):
                    out = self.compiled_fn(x)
            else:
                out = self.model(x)
        return out.float()

    def compile_on(self, example_input: torch.Tensor) -> None:
        """Run the compiled function once (this compiles it) and keep the time it took."""
        start = time.perf_counter()
        with _quiet_logger("torch.utils.cpp_extension"):  # "No CUDA runtime is found" on a CPU
            self(example_input)
        sync(self.device)
        self.compile_time_s = time.perf_counter() - start

    def extra_repr(self) -> str:
        return (f"precision={self.precision}, channels_last={self.channels_last}, "
                f"compiled={self.compiled}, folded_bn={self.folded}")


@contextlib.contextmanager
def _quiet_logger(name: str):
    """Only errors from logger ``name`` inside the block (a CPU-only compile warns about CUDA)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def inductor_freezing(device: torch.device):
    """Inductor weight freezing (constant-folds and pre-packs the weights; CPU only), with the
    C++ wrapper: the graph's ~100 kernel and oneDNN calls are made from generated C++
    instead of Python (measured in docs/benchmarks.md)."""
    if device.type != "cpu":
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True, cpp_wrapper=True)


class Float32(nn.Module):
    """Runs the wrapped module in fp32 inside a bf16/fp16 network (its parameters stay fp32:
    ``_apply`` skips them). Used for LocalResponseNorm, which has no bf16 CPU kernel and
    sums squares over channels (precision-sensitive)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def _apply(self, fn, recurse=True):  # keep the inner module in fp32 through .to(bf16)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.float()).to(x.dtype)


FP32_MODULES = (nn.LocalResponseNorm,)


def keep_fp32(model: nn.Module) -> None:
    """Wrap every FP32_MODULES child in :class:`Float32`, in place."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, FP32_MODULES):
                setattr(module, name, Float32(child))


def eval_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """A frozen eval-mode copy of ``model`` on ``device`` (the original is untouched), with
    the model's declared speed reorderings applied (:mod:`cnnarch.models.reorder`: the
    max-pool before the ReLU it follows; the same function)."""
    fast = reorder_for_speed(copy.deepcopy(model)).to(device).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast


def optimize_float(model: nn.Module, example_input: torch.Tensor, precision: str, *,
                   channels_last: bool = True, compile: bool = False, fold_bn: bool = True,
                   check: bool = True, rtol: float | None = None) -> InferenceModel:
    """The fp32/bf16/fp16 fast path of ``model`` (a resolved precision), checked on
    ``example_input``; see :func:`cnnarch.inference.optimize` for the arguments."""
    device = example_input.device
    fast = eval_copy(model, device)
    folded = fold_bn_(fast) if fold_bn else 0
    if precision != "fp32":
        keep_fp32(fast)
        fast = fast.to(torch_dtype(precision))
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    result = InferenceModel(fast, precision=precision, channels_last=channels_last,
                            folded=folded, device=device,
                            compiled_fn=torch.compile(fast, dynamic=False) if compile else None)
    if compile:
        result.compile_on(example_input)
    if check:
        check_against(result, model, example_input, rtol=RTOL[precision] if rtol is None else rtol)
    return result


def check_against(fast: InferenceModel, model: nn.Module, example_input: torch.Tensor, *,
                  rtol: float) -> None:
    """Set ``fast.check`` by comparing it with ``model`` (run in eval mode, its mode then
    restored) on ``example_input``; raise :class:`ToleranceError` beyond ``rtol``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = model(example_input.float())
    finally:
        model.train(was_training)
    fast.check = compare_outputs(fast(example_input), ref, rtol=rtol, precision=fast.precision)
    if not fast.check.passed:
        raise ToleranceError(f"optimised {model_name(model)} ({fast.precision}) disagrees with the "
                             f"original: {fast.check}")
