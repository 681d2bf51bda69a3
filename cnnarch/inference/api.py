"""The one entry to the inference fast path, and the accuracy cost of its precision.

``optimize(model, example, precision=...)`` resolves the precision ("auto": bf16 where
native) and builds the float fast path (:mod:`cnnarch.inference.fastpath`) or the int8 one
(:mod:`cnnarch.inference.quantize`). ``precision_agreement`` measures what the reduced
precision costs on real data: top-1 agreement with fp32 and both accuracies.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..errors import UserError
from .fastpath import InferenceModel, eval_copy, optimize_float
from .precision import resolve_precision
from .quantize import quantize_int8


def optimize(model: nn.Module, example_input: torch.Tensor, *, precision: str = "auto",
             channels_last: bool = True, compile: bool = False, fold_bn: bool = True,
             check: bool = True, rtol: float | None = None,
             calibration=None) -> InferenceModel:
    """An inference copy of ``model`` (the original is untouched), checked on ``example_input``.

    Args:
        model: any cnnarch model (ResNet ImageNet/CIFAR/plain, GoogLeNet variants).
        example_input: a float batch on the device to run on; used for the check and to
            trigger compilation (compiled models are specialised to its shape).
        precision: "auto" (bf16 where the CPU/GPU has it natively, fp16 on older GPUs,
            else fp32), "bf16", "fp16" (CUDA), "fp32" or "int8" (CPU; post-training
            quantisation, always compiled: :func:`cnnarch.inference.quantize.quantize_int8`, which
            ignores ``channels_last``/``fold_bn``/``compile``: it folds, uses NHWC and
            compiles).
        channels_last: NHWC memory (what oneDNN and tensor cores want).
        compile: ``torch.compile`` with inductor (freezing on the CPU); the first call's
            time is kept in ``compile_time_s``.
        fold_bn: fold conv + BN pairs (exact in fp32, see :func:`fold_conv_bn_`).
        check: compare with the original on ``example_input``; raise
            :class:`~cnnarch.inference.check.ToleranceError` when ``max|diff| > atol + rtol * max|ref|``.
        rtol: override the per-precision tolerance (``cnnarch.inference.check.RTOL``).
        calibration: int8 only: images that fix the activation scales (default: the
            example batch).
    """
    if not isinstance(example_input, torch.Tensor) or not example_input.is_floating_point():
        raise UserError("example_input must be a floating-point tensor batch")
    device = example_input.device
    precision = resolve_precision(precision, device)
    if precision == "int8":
        return quantize_int8(model, calibration, example_input, check=check, rtol=rtol)
    return optimize_float(model, example_input, precision, channels_last=channels_last,
                          compile=compile, fold_bn=fold_bn, check=check, rtol=rtol)


def _batches(data, batch_size: int):
    """Yield (images, labels or None) from a tensor, a (images, labels) pair, or an iterable."""
    if isinstance(data, torch.Tensor):
        for i in range(0, len(data), batch_size):
            yield data[i : i + batch_size], None
    elif isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        images, labels = data
        for i in range(0, len(images), batch_size):
            yield images[i : i + batch_size], labels[i : i + batch_size]
    elif isinstance(data, Iterable):
        for item in data:
            if isinstance(item, (tuple, list)):
                yield item[0], (item[1] if len(item) > 1 else None)
            else:
                yield item, None
    else:
        raise UserError("data must be a tensor, an (images, labels) pair or an iterable of batches")


def precision_agreement(model: nn.Module, data, *, precision: str = "bf16",
                        batch_size: int = 256, channels_last: bool = True,
                        device: str | torch.device = "cpu", calibration=None) -> dict:
    """The accuracy cost of reduced precision: top-1 agreement of the fast path with fp32.

    ``data``: normalised float images (N x C x H x W), an ``(images, labels)`` pair, or an
    iterable of such batches. Returns n, top1_agreement (fraction of images whose fp32
    and reduced-precision argmax agree), max_abs_diff, and with labels also fp32_top1 and
    fast_top1 (accuracies) and their difference. ``calibration`` (int8 only): images that
    fix the activation scales, ideally from the training split (default: the first batch).
    """
    device = torch.device(device)
    ref_model = eval_copy(model, device)
    fast = None
    n = agree = ref_correct = fast_correct = 0
    labelled = True
    max_diff = 0.0
    with torch.no_grad():
        for images, labels in _batches(data, batch_size):
            images = images.to(device).float()
            if fast is None:
                fast = optimize(ref_model, images, precision=precision,
                                channels_last=channels_last, check=False,
                                calibration=calibration)
            ref = ref_model(images).float().cpu()
            out = fast(images).cpu()
            n += len(images)
            agree += (ref.argmax(1) == out.argmax(1)).sum().item()
            max_diff = max(max_diff, (ref - out).abs().max().item())
            if labels is None:
                labelled = False
            elif labelled:
                labels = labels.cpu()
                ref_correct += (ref.argmax(1) == labels).sum().item()
                fast_correct += (out.argmax(1) == labels).sum().item()
    if n == 0:
        raise UserError("precision_agreement got no images")
    result = {"precision": fast.precision, "n": n, "top1_agreement": agree / n,
              "max_abs_diff": max_diff}
    if labelled:
        result.update(fp32_top1=ref_correct / n, fast_top1=fast_correct / n,
                      top1_change=(fast_correct - ref_correct) / n)
    return result


def calibration_images(data, n: int = 512, batch_size: int = 256) -> list[torch.Tensor]:
    """About ``n`` training images of a cnnarch dataset for int8 calibration (CPU, fp32):
    the first batches of a shuffle seeded with 0, so a rerun calibrates on the same images."""
    generator = torch.Generator(device=getattr(data, "device", torch.device("cpu")))
    generator.manual_seed(0)
    batches, seen = [], 0
    for x, _ in data.train_batches(min(batch_size, n), generator):
        batches.append(x.float().cpu())
        seen += len(x)
        if seen >= n:
            break
    return batches


def fast_path_cost(model: nn.Module, data, precision: str, *, batch_size: int = 256,
                   device: str | torch.device = "cpu") -> dict:
    """:func:`precision_agreement` on a dataset's evaluation split; int8 is calibrated on
    512 of its training images (:func:`calibration_images`)."""
    device = torch.device(device)
    precision = resolve_precision(precision, device)  # fp16 on a CPU, int8 on a GPU: a clear error
    calibration = calibration_images(data, 512, batch_size) if precision == "int8" else None
    batches = ((x.to(device), y.to(device)) for x, y in data.eval_batches(batch_size, device=device))
    return precision_agreement(model, batches, precision=precision, batch_size=batch_size,
                               device=device, calibration=calibration)
