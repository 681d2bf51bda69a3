"""The one entry to the inference fast path, and the accuracy cost of its precision.

``optimize(model, example, precision=...)`` resolves the precision ("auto": bf16 where
native) and builds the float fast path (:mod:`cnnarch.inference.fastpath`) or the int8 one
(:mod:`cnnarch.inference.quantize`). ``precision_agreement`` measures what the reduced
precision costs on real data: top-1 agreement with fp32 and both accuracies.

``load_for_inference`` gives the model and its evaluation transform from a checkpoint, a
run folder or a model name with published weights; ``evaluate_checkpoint`` evaluates a
checkpoint on its dataset (what ``cnnarch eval`` prints, :class:`CheckpointEvaluation`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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


# --- checkpoints: load for inference, evaluate ------------------------------------------------


def load_for_inference(source: str | os.PathLike, weights: str | None = None, device="cpu"):
    """-> (model in eval mode on ``device``, its ``EvalTransform``) from a checkpoint or run
    folder, or from a model name with published weights (``weights`` names them; a bare
    model name that is not a path means its DEFAULT weights)."""
    from ..data.transform import EvalTransform
    from ..models import create_model, get_entry, list_models
    from ..models.pretrained import WEIGHTS, load_pretrained
    from ..train.checkpoint import load_model

    source = os.fspath(source)
    is_path = Path(source).exists()
    if not is_path and source not in WEIGHTS and source in list_models():
        raise UserError(f"{source} has no published weights (models with weights: "
                        f"{', '.join(WEIGHTS)}); give a checkpoint or run folder")
    if weights is not None or (source in WEIGHTS and not is_path):
        no_aux = {"aux_logits": False} if "aux_logits" in get_entry(source).options else {}
        model = load_pretrained(create_model(source, **no_aux), source, weights).to(device)
        return model.eval(), model.eval_transform
    model, meta = load_model(source, device=device)
    return model, EvalTransform.from_meta(meta)


@dataclass(frozen=True)
class CheckpointEvaluation:
    """A checkpoint evaluated on a dataset's split (``metrics``: ``cnnarch.train.evaluate``'s
    dict) and, when asked for, the fast path's accuracy cost (``fast_path``:
    :func:`fast_path_cost`'s dict)."""

    checkpoint: str
    model: str
    data: str
    metrics: dict
    fast_path: dict | None = None

    def to_dict(self) -> dict:
        return {"checkpoint": self.checkpoint, "model": self.model, "data": self.data,
                **self.metrics, **({"fast_path": self.fast_path} if self.fast_path else {})}

    def render(self) -> str:
        m, fast = self.metrics, self.fast_path
        top5 = f"  top-5 {100 * m['top5']:.2f}%" if len(m["classes"]) > 5 else ""
        lines = [f"{self.model} ({self.checkpoint}) on {self.data} {m['split']} ({m['n']} images): "
                 f"top-1 {100 * m['top1']:.2f}%{top5}  loss {m['loss']:.4f}"]
        if fast:
            lines.append(f"fast path {fast['precision']}: top-1 {100 * fast['fast_top1']:.2f}% vs "
                         f"fp32 {100 * fast['fp32_top1']:.2f}% ({100 * fast['top1_change']:+.2f} "
                         f"points); top-1 agreement {100 * fast['top1_agreement']:.2f}% of "
                         f"{fast['n']} images")
        lines.append("per-class accuracy:")
        lines += [f"  {cls:>16}  {'-' if acc is None else f'{100 * acc:.2f}%'}"
                  for cls, acc in zip(m["classes"], m["per_class"], strict=True)]
        if len(m["classes"]) <= 20:
            lines += self._confusion_lines()
        return "\n".join(lines)

    def _confusion_lines(self) -> list[str]:
        classes, confusion = self.metrics["classes"], self.metrics["confusion"]
        width = max(5, *(len(str(c)) for c in classes), *(len(str(v)) for r in confusion for v in r))
        label = max(len(str(c)) for c in classes)
        head = " " * (label + 2) + "".join(f" {str(c):>{width}}" for c in classes)
        return (["confusion matrix (rows = true class, columns = predicted):", head]
                + [f"  {str(c):>{label}}" + "".join(f" {v:{width}d}" for v in row)
                   for c, row in zip(classes, confusion, strict=True)])


def _dataset_of(meta: dict, *, data: str | None, data_dir, download: bool, val_split: bool,
                device):
    """The dataset a checkpoint was trained on (or ``data``), split and sized as in training."""
    from ..data import load_dataset

    cfg = meta.get("config", {})
    name = data or meta.get("dataset") or "digits"
    return name, load_dataset(
        name, data_dir=data_dir or cfg.get("data_dir"), download=download, val_split=val_split,
        seed=int(cfg.get("seed", 0)), device=device, workers=int(cfg.get("workers", 4)),
        image_size=int(cfg.get("image_size", 0) or meta["input_size"][-1]))


def evaluate_checkpoint(source: str | os.PathLike, *, best: bool = False, data: str | None = None,
                        data_dir=None, download: bool = False, val_split: bool = False,
                        batch_size: int = 500, device="cpu",
                        precision: str | None = None) -> CheckpointEvaluation:
    """Evaluate a checkpoint (or a run folder's last.pt; ``best``: its best.pt) on the test
    split of the dataset it was trained on (``data`` overrides; ``val_split``: the held-out
    validation part of the training split). With ``precision`` ("bf16", "fp16", "int8") also
    the fast path's accuracy cost (:func:`fast_path_cost`)."""
    from ..data.transform import EvalTransform
    from ..train import evaluate
    from ..train.checkpoint import find_checkpoint, load_model

    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    path = find_checkpoint(source, prefer="best" if best else "last")
    model, meta = load_model(path, device=device)
    name, dataset = _dataset_of(meta, data=data, data_dir=data_dir, download=download,
                                val_split=val_split, device=device)
    if dataset.in_chans != meta["in_chans"] or dataset.num_classes != meta["num_classes"]:
        raise UserError(f"{path} expects {meta['in_chans']}-channel images and "
                        f"{meta['num_classes']} classes; {name} has {dataset.in_chans} and "
                        f"{dataset.num_classes}")
    if hasattr(dataset, "evaluate_with") and "transform" in meta:  # an image folder
        dataset.evaluate_with(EvalTransform.from_meta(meta))
    metrics = evaluate(model, dataset, batch_size=batch_size, device=device)
    if not math.isfinite(metrics["loss"]):
        raise UserError(f"{path}: the model gave non-finite outputs (damaged weights?)")
    fast = (fast_path_cost(model, dataset, precision, batch_size=batch_size, device=device)
            if precision else None)
    return CheckpointEvaluation(str(path), meta["model"], name, metrics, fast)
