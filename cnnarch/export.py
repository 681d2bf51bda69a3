"""The inference fast path and ONNX export, each checked against the model it came from.

``optimize(model, example)`` returns an :class:`InferenceModel`: a copy of the model in eval
mode with every convolution + BatchNorm pair folded into one convolution, channels_last
memory, bf16 (or fp16) weights and activations where the hardware computes them natively,
and optionally ``torch.compile`` (inductor, with weight freezing on the CPU). The copy's
outputs are compared with the original's on the example batch and the result is kept on
the returned model as ``.check``; outside the stated tolerance ``optimize`` raises.

``export_onnx(model, path, input_size)`` writes an ONNX file with a dynamic batch
dimension through PyTorch's torch.export-based exporter (``dynamo=True``, which needs
onnxscript; it writes opset 18 or newer), runs the file in onnxruntime on two batch sizes
and compares the logits with PyTorch's. The file is written to a temporary name and
renamed into place only after the check passed.

Tolerances (``max|y - y_ref| <= atol + rtol * max|y_ref|``, over a whole batch of logits):
fp32 ``rtol=1e-4`` (BN folding and memory layout only reorder fp32 arithmetic);
bf16 ``rtol=2e-1`` (8-bit mantissa: ~0.4 % per rounding, accumulated over ~50 layers; on
an untrained ResNet-50 under inductor the worst logit moved by 11 % of the largest one.
The bound catches broken transformations, whose errors are of the order of the logits
themselves; the accuracy cost on real data is what ``precision_agreement`` measures);
fp16 ``rtol=5e-2``; ONNX fp32 ``rtol=1e-4``. ``atol=1e-5`` everywhere.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import tempfile
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import UserError

PRECISIONS = ("auto", "bf16", "fp16", "fp32", "int8")  # int8: cnnarch.quantize (CPU, compiled)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
RTOL = {"fp32": 1e-4, "bf16": 2e-1, "fp16": 5e-2}
ATOL = 1e-5
ONNX_RTOL = 1e-4
ONNX_MIN_OPSET = 18  # the torch.export-based exporter writes opset 18 and newer
ONNX_DEFAULT_OPSET = 18


class ToleranceError(RuntimeError):
    """An optimised or exported model disagrees with the original beyond the tolerance."""


# --- hardware -------------------------------------------------------------------------------


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_supported(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bf16 natively (not emulated, which is slower than fp32).

    CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and newer). CPU: oneDNN's own test
    (AVX-512 BF16 or AMX), with the CPU flags as a fallback.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """"auto" -> "bf16" where native, else "fp16" on CUDA, else "fp32". "auto" never picks
    int8: it needs calibration data and its accuracy cost depends on them."""
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


# --- conv + BN folding ----------------------------------------------------------------------


def fold_conv_bn_(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the convolution before it, in place.

    BN(conv(x)) = gamma * (W x + b - mean) / sqrt(var + eps) + beta, so with
    s = gamma / sqrt(var + eps):  W' = W * s (per output channel),  b' = beta + (b - mean) * s.
    Computed in float64, stored in the convolution's dtype.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    dtype = conv.weight.dtype
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    with torch.no_grad():
        weight = conv.weight.double() * scale.reshape(-1, *([1] * (conv.weight.ndim - 1)))
        conv.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
        conv.bias = nn.Parameter((beta + (bias - mean) * scale).to(dtype), requires_grad=False)


def _fold_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) attribute pairs of ``module`` where forward applies bn right after conv.

    Explicit per class: the ResNet stem and blocks (conv1/bn1 ...), GoogLeNet's ConvAct
    (conv/bn), and any nn.Sequential holding a Conv2d directly followed by a BatchNorm2d
    (the projection shortcuts)."""
    from .models.googlenet import ConvAct
    from .models.resnet import BasicBlock, Bottleneck, ResNet

    if isinstance(module, (ResNet, BasicBlock)):
        return [("conv1", "bn1")] + ([("conv2", "bn2")] if isinstance(module, BasicBlock) else [])
    if isinstance(module, Bottleneck):
        return [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")]
    if isinstance(module, ConvAct):
        return [("conv", "bn")]
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        return [(a, b) for a, b in zip(names, names[1:], strict=False)
                if isinstance(module._modules[a], nn.Conv2d)
                and isinstance(module._modules[b], nn.BatchNorm2d)]
    return []


def fold_bn(model: nn.Module) -> int:
    """Fold every conv + BN pair of a cnnarch model in place (eval mode); returns how many.

    Each folded BN is replaced by nn.Identity. Call on a copy: training needs the BNs."""
    if model.training:
        raise ValueError("fold_bn needs an eval-mode model (BN must use its running statistics)")
    folded = 0
    for module in list(model.modules()):
        for conv_name, bn_name in _fold_pairs(module):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) \
                    and bn.track_running_stats:
                fold_conv_bn_(conv, bn)
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded


# --- output checks --------------------------------------------------------------------------


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
    out, ref = out.detach().float().cpu(), ref.detach().float().cpu()
    if out.shape != ref.shape:
        raise ToleranceError(f"output shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    diff = (out - ref).abs().max().item() if out.numel() else 0.0
    max_ref = ref.abs().max().item() if ref.numel() else 0.0
    agree = (out.argmax(1) == ref.argmax(1)).float().mean().item() if out.ndim == 2 else 1.0
    ok = math.isfinite(diff) and diff <= atol + rtol * max_ref
    return OutputCheck(precision, diff, max_ref, rtol, atol, agree, ok)


# --- the fast path --------------------------------------------------------------------------


class InferenceModel(nn.Module):
    """An optimised copy of a model for inference. Takes fp32 NCHW batches (any layout),
    returns fp32 logits. Attributes: ``model`` (the folded, cast copy), ``precision``,
    ``channels_last``, ``compiled``, ``folded`` (number of BNs folded), ``check``
    (:class:`OutputCheck` against the original) and ``compile_time_s``."""

    def __init__(self, model: nn.Module, *, precision: str, channels_last: bool,
                 compiled: bool, folded: int, device: torch.device):
        super().__init__()
        self.model = model
        self.precision = precision
        self.dtype = DTYPES.get(precision, torch.float32)  # int8 graphs take fp32 (quantise inside)
        self.channels_last = channels_last
        self.compiled = compiled
        self.folded = folded
        self.device = device
        self.check: OutputCheck | None = None
        self.compile_time_s: float | None = None
        self._compiled_fn = None
        # Forward the models' metadata so callers can treat this like the model.
        for attr in ("name", "registry_name", "in_chans", "num_classes", "min_input_size"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        with torch.no_grad():
            if self._compiled_fn is not None:
                with _freezing(self.device):
                    out = self._compiled_fn(x)
            else:
                out = self.model(x)
        return out.float()

    def extra_repr(self) -> str:
        return (f"precision={self.precision}, channels_last={self.channels_last}, "
                f"compiled={self.compiled}, folded_bn={self.folded}")


def _freezing(device: torch.device):
    """Inductor weight freezing (constant-folds and pre-packs the weights; CPU only), with the
    C++ wrapper: the graph's ~100 kernel and oneDNN calls are made from generated C++
    instead of Python (ResNet-50 batch 16 on the 2-core CPU: bf16 176 -> 188 img/s, int8
    248 -> 259; the compile takes ~8 s longer)."""
    if device.type != "cpu":
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True, cpp_wrapper=True)


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
            quantisation, always compiled: :func:`cnnarch.quantize.quantize_int8`, which
            ignores ``channels_last``/``fold_bn``/``compile``: it folds, uses NHWC and
            compiles).
        channels_last: NHWC memory (what oneDNN and tensor cores want).
        compile: ``torch.compile`` with inductor (freezing on the CPU); the first call's
            time is kept in ``compile_time_s``.
        fold_bn: fold conv + BN pairs (exact in fp32, see :func:`fold_conv_bn_`).
        check: compare with the original on ``example_input``; raise
            :class:`ToleranceError` when ``max|diff| > atol + rtol * max|ref|``.
        rtol: override the per-precision tolerance (``RTOL``).
        calibration: int8 only: images that fix the activation scales (default: the
            example batch).
    """
    if not isinstance(example_input, torch.Tensor) or not example_input.is_floating_point():
        raise TypeError("example_input must be a floating-point tensor batch")
    device = example_input.device
    precision = resolve_precision(precision, device)
    if precision == "int8":
        from .quantize import quantize_int8

        return quantize_int8(model, calibration, example_input, check=check, rtol=rtol)
    fast = copy.deepcopy(model).to(device).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    folded = _fold(fast) if fold_bn else 0
    if precision != "fp32":
        _keep_fp32(fast)
        fast = fast.to(DTYPES[precision])
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    result = InferenceModel(fast, precision=precision, channels_last=channels_last,
                            compiled=compile, folded=folded, device=device)
    if compile:
        result._compiled_fn = torch.compile(fast, dynamic=False)
        start = time.perf_counter()
        result(example_input)  # compiles
        _sync(device)
        result.compile_time_s = time.perf_counter() - start
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
        raise ToleranceError(f"optimised {_name(model)} ({fast.precision}) disagrees with the "
                             f"original: {fast.check}")


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


def _keep_fp32(model: nn.Module) -> None:
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, FP32_MODULES):
                setattr(module, name, Float32(child))


def _fold(model: nn.Module) -> int:
    return fold_bn(model)


def _name(model: nn.Module) -> str:
    return getattr(model, "registry_name", None) or getattr(model, "name", type(model).__name__)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- accuracy cost of reduced precision -----------------------------------------------------


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
        raise TypeError("data must be a tensor, an (images, labels) pair or an iterable of batches")


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
    ref_model = copy.deepcopy(model).to(device).eval()
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
        raise ValueError("precision_agreement got no images")
    result = {"precision": fast.precision, "n": n, "top1_agreement": agree / n,
              "max_abs_diff": max_diff}
    if labelled:
        result.update(fp32_top1=ref_correct / n, fast_top1=fast_correct / n,
                      top1_change=(fast_correct - ref_correct) / n)
    return result


# --- ONNX -----------------------------------------------------------------------------------


@dataclass
class OnnxReport:
    path: str
    opset: int
    exporter: str
    input_size: tuple[int, int, int]
    batch_sizes_checked: tuple[int, ...]
    max_abs_diff: float
    max_ref: float
    rtol: float
    atol: float
    passed: bool
    file_bytes: int
    export_time_s: float

    def __str__(self) -> str:
        c, h, w = self.input_size
        verdict = "verified" if self.passed else "MISMATCH"
        return (f"{verdict}: {self.path} (opset {self.opset}, {self.exporter}, input "
                f"batch x {c} x {h} x {w}, dynamic batch); onnxruntime vs PyTorch on batches "
                f"{', '.join(map(str, self.batch_sizes_checked))}: max |diff| "
                f"{self.max_abs_diff:.3g} (tolerance {self.atol:g} + {self.rtol:g} x max |logit| "
                f"{self.max_ref:.3g})")

    def to_dict(self) -> dict:
        return asdict(self)


def max_onnx_opset() -> int:
    import onnx

    return int(onnx.defs.onnx_opset_version())


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UserError(f"ONNX export needs onnx, onnxscript and onnxruntime ({exc.name} is "
                        "missing): pip install 'cnnarch[export]'") from None


def check_opset(opset) -> int:
    _require_onnx()
    top = max_onnx_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not ONNX_MIN_OPSET <= opset <= top:
        raise UserError(f"unsupported ONNX opset {opset!r}: PyTorch's torch.export-based exporter "
                        f"writes opsets {ONNX_MIN_OPSET}..{top} (installed onnx)")
    return opset


def onnx_session(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """An onnxruntime session (CUDA execution provider where asked for and present)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()  # the same cores PyTorch uses
    return ort.InferenceSession(os.fspath(path), sess_options=options, providers=providers)


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size, *,
                opset: int = ONNX_DEFAULT_OPSET, check_batches: tuple[int, ...] = (1, 3),
                rtol: float = ONNX_RTOL, atol: float = ATOL) -> OnnxReport:
    """Export ``model`` (fp32, eval) to ONNX with a dynamic batch dimension and verify it.

    The file is exported to a temporary name beside ``path``, run in onnxruntime on
    ``check_batches`` random batches and compared with PyTorch; only then is it renamed
    to ``path`` (``os.replace``). A mismatch raises :class:`ToleranceError` and leaves no
    file. Returns an :class:`OnnxReport`.
    """
    opset = check_opset(opset)
    c, h, w = (int(v) for v in input_size)
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name such as model.onnx")
    if not path.parent.exists():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    model = copy.deepcopy(model).float().cpu().eval()
    example = torch.randn(2, c, h, w)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        start = time.perf_counter()
        program = _export_program(model, example, opset)
        program.save(os.fspath(tmp), external_data=False)
        export_time = time.perf_counter() - start
        written = _file_opset(tmp)
        if written != opset:
            raise UserError(f"unsupported ONNX opset {opset}: the exporter wrote opset {written}")
        session = onnx_session(tmp)
        input_name = session.get_inputs()[0].name
        gen = torch.Generator().manual_seed(0)
        max_diff = max_ref = 0.0
        for b in check_batches:
            x = torch.randn(b, c, h, w, generator=gen)
            with torch.no_grad():
                ref = model(x).float()
            got = torch.from_numpy(session.run(None, {input_name: x.numpy()})[0]).float()
            if got.shape != ref.shape:
                raise ToleranceError(f"onnxruntime returned shape {tuple(got.shape)} for batch {b}, "
                                     f"PyTorch {tuple(ref.shape)}")
            max_diff = max(max_diff, (got - ref).abs().max().item())
            max_ref = max(max_ref, ref.abs().max().item())
        passed = math.isfinite(max_diff) and max_diff <= atol + rtol * max_ref
        report = OnnxReport(os.fspath(path), opset, "torch.onnx.export(dynamo=True)", (c, h, w),
                            tuple(check_batches), max_diff, max_ref, rtol, atol, passed,
                            tmp.stat().st_size, export_time)
        if not passed:
            raise ToleranceError(f"ONNX file disagrees with PyTorch: {report}")
        del session
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return report


def _export_program(model: nn.Module, example: torch.Tensor, opset: int):
    """torch.onnx.export (torch.export-based, dynamo=True) with the batch dimension dynamic."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        try:
            return torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                     input_names=["images"], output_names=["logits"],
                                     dynamic_shapes=({0: batch},), verbose=False)
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeError(f"ONNX export failed: {msg}") from exc


def _file_opset(path: Path) -> int:
    import onnx

    proto = onnx.load(os.fspath(path), load_external_data=False)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), -1)


# --- prediction on image files --------------------------------------------------------------


def load_image(path: str | os.PathLike, in_chans: int, size: tuple[int, int]) -> torch.Tensor:
    """Decode an image file of any size and mode into a float C x H x W tensor in [0, 1]:
    converted to ``in_chans`` channels (1: luminance, 3: RGB), resized to ``size`` (H, W)
    with bilinear interpolation (antialiased when shrinking)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.functional import pil_to_tensor, resize

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image {path} not found")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an image file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                # transparent pixels become white (as a viewer shows them), not black
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img.convert("RGBA"))
            if img.mode == "F" and not np.isfinite(np.asarray(img)).all():
                raise UserError(f"image {path} has non-finite (NaN/inf) pixel values")
            if img.mode == "I" or img.mode.startswith("I;16"):
                # 16-bit greyscale: scale to 8 bits (PIL's convert would clip at 255)
                wide = np.asarray(img, dtype=np.float64) / 257.0
                img = Image.fromarray(wide.clip(0, 255).round().astype(np.uint8), mode="L")
            if in_chans == 1:
                img = img.convert("L")
            elif in_chans == 3:
                img = img.convert("RGB")
            else:
                raise UserError(f"cannot turn image files into {in_chans}-channel input")
            x = pil_to_tensor(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot decode image {path}: {msg}") from None
    x = x.float().div_(255.0).unsqueeze(0)
    x = resize(x, list(size), antialias=True).clamp_(0.0, 1.0)
    return x[0]


def predict_files(model: nn.Module, meta: dict, paths, *, top_k: int = 5,
                  device: str | torch.device = "cpu") -> list[dict]:
    """Top-k classes with softmax probabilities for image files, preprocessed as in training:
    the checkpoint's channels and input size, normalised with its mean and std."""
    if top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {top_k}")
    c, h, w = (int(v) for v in meta["input_size"])
    mean = torch.tensor(meta["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(meta["std"], dtype=torch.float32).view(-1, 1, 1)
    classes = list(meta.get("classes") or [])
    images = torch.stack([(load_image(p, c, (h, w)) - mean) / std for p in paths])
    if not torch.isfinite(images).all():
        raise UserError("non-finite input after normalisation: the checkpoint's mean/std are damaged")
    model = model.to(device).eval()
    with torch.no_grad():
        probs = torch.softmax(model(images.to(device)).float(), dim=1).cpu()
    if not torch.isfinite(probs).all():
        raise UserError("the model gave non-finite outputs: the checkpoint's weights are damaged")
    k = min(top_k, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)
    out = []
    for path, ps, idx in zip(paths, top_p.tolist(), top_i.tolist(), strict=True):
        out.append({"image": os.fspath(path), "top": [
            {"class": i, "name": classes[i] if i < len(classes) else str(i), "prob": p}
            for p, i in zip(ps, idx, strict=True)]})
    return out
