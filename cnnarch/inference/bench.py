"""Speed of one model on this machine: throughput, latency, achieved GFLOP/s against a
measured matrix-product peak.

Honest timing: warm-up calls first (oneDNN primitive creation, cuDNN
autotuning, compilation), the device synchronised before every clock read, the median of
several repeats reported with its spread. The peak is measured in the same process, on
the same machine, with the same thread count, just before the model.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix
products only, 2 FLOPs per multiply-add, the same convention as torchvision's ``_ops`` x 2
and docs/benchmarks.md). Training counts forward + backward (about 3x the forward).
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..hardware import memory_bytes
from ..train.batchnorm import batchnorm_for_compile
from ..train.optim import FusedSGD
from .api import optimize
from .hardware import sync
from .precision import resolve_precision, torch_dtype

MODES = ("infer", "train")


# --- timing ---------------------------------------------------------------------------------


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The training engine's device rule (one place for it), also taking a torch.device or None."""
    from ..train.distributed import resolve_device as resolve

    return resolve("auto" if device is None else str(device))


def cold_compile_cache() -> str:
    """Point inductor at a new, empty cache folder (removed at exit) unless the user chose one
    with TORCHINDUCTOR_CACHE_DIR, so that a reported compile time is the first-use cost and
    not a cache hit left by an earlier run. Returns the folder."""
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    try:  # inductor writes its default folder into the variable on first use (e.g. an import)
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        if chosen is not None and os.path.abspath(chosen) == os.path.abspath(default_cache_dir()):
            chosen = None
    except ImportError:  # pragma: no cover - another PyTorch layout
        pass
    if chosen is None:
        folder = tempfile.mkdtemp(prefix="cnnarch-inductor-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def time_calls(fn: Callable[[], object], n: int, device: torch.device) -> float:
    """Seconds for ``n`` back-to-back calls of ``fn``, the device synchronised at both ends
    (CUDA events on the GPU, so host-side queueing is not mistaken for work)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        sync(device)
        start.record()
        for _ in range(n):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return time.perf_counter() - t0


def calls_per_repeat(fn: Callable[[], object], device: torch.device, min_time: float) -> int:
    """How many calls make one repeat last about ``min_time`` seconds (at least one)."""
    dt = time_calls(fn, 1, device)
    return max(1, int(math.ceil(min_time / max(dt, 1e-6))))


@dataclass
class Timing:
    """Seconds per call: median and spread over repeats."""

    per_call_s: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.per_call_s)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.per_call_s), max(self.per_call_s)


def measure(fn: Callable[[], object], device: torch.device, *, warmup: int = 2,
            repeats: int = 5, min_time: float = 0.5) -> Timing:
    for _ in range(warmup):
        fn()
    sync(device)
    n = calls_per_repeat(fn, device, min_time)
    return Timing([time_calls(fn, n, device) / n for _ in range(repeats)])


def percentiles(samples: list[float], qs=(50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles of ``samples``."""
    ordered = sorted(samples)
    out = {}
    for q in qs:
        k = max(0, min(len(ordered) - 1, int(math.ceil(q / 100 * len(ordered))) - 1))
        out[f"p{q}"] = ordered[k]
    return out


def latency_ms(fn: Callable[[], object], device: torch.device, *, warmup: int = 3,
               samples: int = 50, max_time: float = 20.0) -> dict[str, float]:
    """Per-call latency percentiles in milliseconds (each call timed on its own)."""
    for _ in range(warmup):
        fn()
    times = []
    budget = time.perf_counter() + max_time
    while len(times) < samples and (len(times) < 10 or time.perf_counter() < budget):
        times.append(time_calls(fn, 1, device) * 1e3)
    out = percentiles(times)
    out["n"] = len(times)
    return out


# --- the matrix-product peak ----------------------------------------------------------------


def matmul_operands(dtype_name: str, n: int, device: torch.device):
    """(a, b, product) for one n x n matrix product in ``dtype_name``: "int8" is
    ``torch._int_mm`` (int8 x int8 -> int32, VNNI/AMX-INT8 through oneDNN on x86), the float
    types ``torch.mm``. 2 n^3 FLOPs (operations) per call."""
    if dtype_name == "int8":
        a, b = (torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device) for _ in "ab")
        return a, b, torch._int_mm
    dtype = torch_dtype(dtype_name)
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in "ab")
    return a, b, torch.mm


@functools.cache
def matmul_peak_gflops(dtype_name: str = "bf16", device: str = "cpu",
                       sizes: tuple[int, ...] | None = None) -> dict:
    """Best median GFLOP/s of square matrix products (2 n^3 FLOPs) over a few sizes.

    Cached per process. CPU: n in 1024, 2048, 4096 (bf16, int8) or 1024, 2048 (fp32); CUDA:
    4096, 8192. "int8" times ``torch._int_mm`` (int32 accumulation) and counts operations.
    """
    dev = torch.device(device)
    if not sizes:
        if dev.type == "cuda":
            sizes = (4096, 8192)
        else:
            sizes = (1024, 2048) if dtype_name == "fp32" else (1024, 2048, 4096)
    best, per_size = 0.0, {}
    for n in sizes:
        a, b, product = matmul_operands(dtype_name, n, dev)
        t = measure(lambda a=a, b=b, f=product: f(a, b), dev, warmup=2, repeats=5, min_time=0.2)
        gflops = 2 * n**3 / t.median / 1e9
        per_size[n] = round(gflops, 1)
        best = max(best, gflops)
    return {"dtype": dtype_name, "gflops": best, "per_size": per_size}


# --- FLOPs ----------------------------------------------------------------------------------


def count_flops(model: nn.Module, x: torch.Tensor, *, train: bool = False) -> int:
    """FLOPs (2 per multiply-add; conv and matmul only) of one forward, or forward+backward."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.train(train)
    counter = FlopCounterMode(display=False)
    try:
        if train:
            with counter:
                loss = classification_loss(model(x), torch.zeros(len(x), dtype=torch.long,
                                                                 device=x.device))
                loss.backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), counter:
                model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def noise_bn_statistics(model: nn.Module, x: torch.Tensor, steps: int = 2) -> nn.Module:
    """Give a randomly initialised model realistic BatchNorm statistics (in place).

    Freshly built, every BN has running mean 0 and variance 1, so in eval mode the
    activations of a randomly initialised net shrink layer after layer until they are
    denormal floats, which the CPU computes 10-100x slower: a benchmark of such a model
    measures denormal arithmetic, not the network. A few train-mode forward passes on
    Gaussian noise shaped like ``x`` set the statistics to what the layers really produce.
    (For statistics from real images, see ``cnnarch.analysis.gradients.calibrate_bn``.)
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    was_training = model.training
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn_like(x))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.train(was_training)
    return model


# --- steps ----------------------------------------------------------------------------------


def classification_loss(outputs, target: torch.Tensor, aux_weight: float = 0.3) -> torch.Tensor:
    """Cross-entropy; GoogLeNet's aux heads (ours or torchvision's tuple) weigh ``aux_weight``."""
    if isinstance(outputs, tuple):
        main, *aux = [o for o in outputs if o is not None]
        return F.cross_entropy(main, target) + aux_weight * sum(F.cross_entropy(a, target)
                                                                 for a in aux)
    return F.cross_entropy(outputs, target)


def make_train_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                    precision: str = "fp32", channels_last: bool = False,
                    compile: bool = False, fused: bool = False) -> Callable[[], float]:
    """One SGD step (forward, loss, backward, update) on a fixed batch, as a closure.

    precision "bf16"/"fp16": autocast (fp32 master weights; fp16 with a GradScaler);
    channels_last: NHWC weights and input; compile: ``torch.compile`` of the model (on a CPU
    with the compile-friendly batch norm that ``cnnarch train --compile`` uses, see
    ``cnnarch.train.batchnorm``); fused: the single-kernel SGD update that ``cnnarch train``
    uses (``build_optimizer``).
    """
    device = x.device
    model.train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = (FusedSGD if fused else torch.optim.SGD)(model.parameters(), lr=1e-3, momentum=0.9,
                                                   weight_decay=1e-4)
    if compile:
        batchnorm_for_compile(model, device)  # for this benchmark's own model; not turned back
    forward = torch.compile(model) if compile else model
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            loss = classification_loss(forward(x), target)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss

    return step


# --- one model ------------------------------------------------------------------------------


@dataclass
class BenchResult:
    model: str
    mode: str
    device: str
    batch: int
    input_size: tuple[int, int, int]
    precision: str
    channels_last: bool
    compiled: bool
    threads: int
    img_per_s: float
    img_per_s_spread: tuple[float, float]
    ms_per_batch: float
    gflop_per_img: float
    achieved_gflops: float
    peak_gflops: float
    peak_dtype: str
    fraction_of_peak: float
    latency_ms_batch1: dict | None = None
    compile_time_s: float | None = None
    output_check: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        c, h, w = self.input_size
        lines = [
            f"{self.model} {self.mode} on {self.device} ({self.threads} threads), batch "
            f"{self.batch} x {c}x{h}x{w}, {self.precision}"
            f"{', channels_last' if self.channels_last else ''}"
            f"{', compiled' if self.compiled else ''}",
            f"  throughput  {self.img_per_s:.1f} img/s (median; spread "
            f"{self.img_per_s_spread[0]:.1f}-{self.img_per_s_spread[1]:.1f}), "
            f"{self.ms_per_batch:.1f} ms per batch",
            f"  compute     {self.gflop_per_img:.2f} GFLOP/img -> {self.achieved_gflops:.0f} GFLOP/s"
            f" = {self.fraction_of_peak:.0%} of the measured {self.peak_dtype} matmul peak "
            f"({self.peak_gflops:.0f} GFLOP/s)",
        ]
        if "fraction_of_bf16_peak" in self.extra:
            lines.append(f"              = {self.extra['fraction_of_bf16_peak']:.0%} of the measured bf16 "
                         f"matmul peak ({self.extra['bf16_peak_gflops']:.0f} GFLOP/s)")
        if self.latency_ms_batch1:
            lat = self.latency_ms_batch1
            lines.append(f"  latency b1  p50 {lat['p50']:.2f} ms, p90 {lat['p90']:.2f} ms, "
                         f"p99 {lat['p99']:.2f} ms ({lat['n']} calls)")
        if self.compile_time_s is not None:
            lines.append(f"  compile     {self.compile_time_s:.1f} s (one-time)")
        if self.output_check:
            lines.append(f"  check       {self.output_check}")
        return "\n".join(lines)


def check_input_fits(batch: int, size: tuple[int, ...], device: torch.device) -> None:
    """A UserError when the fp32 input batch alone is larger than the device's memory."""
    need, have = 4 * batch * math.prod(size), memory_bytes(device)
    if have is not None and need > have:
        raise UserError(f"batch {batch} of {'x'.join(map(str, size))} inputs needs "
                        f"{need / 2**30:,.1f} GiB for the input alone, more than the "
                        f"{have / 2**30:,.1f} GiB of {device.type} memory here; use a smaller --batch")


def bench(model_name: str, mode: str = "infer", batch: int = 16, input_size=None, *,
          precision: str = "auto", compile: bool = False, channels_last: bool = True,
          fold_bn: bool = True, device: str | torch.device = "auto", warmup: int = 2,
          repeats: int = 5, min_time: float = 0.5, latency: bool = True,
          latency_samples: int = 50, model: nn.Module | None = None,
          **model_kwargs) -> BenchResult:
    """Benchmark one registry model (random weights; speed does not depend on them).

    infer: ``cnnarch.inference.optimize`` (BN folded, channels_last, bf16 where native,
    optional compile) unless ``precision="fp32"``, ``channels_last=False`` and
    ``fold_bn=False`` ask for plain eager; plus batch-1 latency percentiles.
    train: one SGD step with autocast and channels_last as asked.
    """
    from ..models import create_model, get_entry

    if mode not in MODES:
        raise UserError(f"invalid mode {mode!r}; choose infer or train")
    if batch < 1:
        raise UserError(f"batch must be >= 1, got {batch}")
    dev = resolve_device(device)
    entry = get_entry(model_name)
    size = tuple(int(v) for v in (input_size or entry.input_size))
    if len(size) != 3:
        raise UserError(f"input size must be C,H,W, got {size}")
    check_input_fits(batch, size, dev)
    prec = resolve_precision(precision, dev)
    if prec == "int8" and mode == "train":
        raise UserError("int8 is for inference (post-training quantisation); train in bf16 or fp32")
    if model is None:
        if size[0] != entry.input_size[0]:
            model_kwargs.setdefault("in_chans", size[0])
        if mode == "infer" and "aux_logits" in entry.options:
            model_kwargs.setdefault("aux_logits", False)  # aux heads are training-only
        model = create_model(model_name, **model_kwargs).to(dev)
        noise_bn_statistics(model, torch.randn(min(batch, 16), *size, device=dev))
    model = model.to(dev)
    x = torch.randn(batch, *size, device=dev)
    min_size = getattr(model, "min_input_size", 1)
    if min(size[1:]) < min_size:
        raise UserError(f"{model_name} needs inputs of at least {min_size}x{min_size}, "
                        f"got {size[1]}x{size[2]}")

    flops = count_flops(model, x[:1], train=mode == "train")
    peak_dtype = prec
    peak = matmul_peak_gflops(peak_dtype, str(dev))
    compile_time = check = lat = None
    if mode == "infer":
        model.eval()
        # int8 on random weights: near-tied logits move a lot; report the check, do not fail
        # on it (accuracy needs real data: cnnarch eval --precision int8)
        fast = optimize(model, x, precision=prec, channels_last=channels_last,
                        compile=compile, fold_bn=fold_bn,
                        rtol=math.inf if prec == "int8" else None)
        compile_time = fast.compile_time_s
        check = str(fast.check)

        def fn():
            return fast(x)

        if latency:
            x1 = x[:1]
            one = optimize(model, x1, precision=prec, channels_last=channels_last,
                           compile=compile, fold_bn=fold_bn, check=False) if batch != 1 else fast
            lat = latency_ms(lambda: one(x1), dev, samples=latency_samples)
    else:
        target = torch.randint(0, getattr(model, "num_classes", 10), (batch,), device=dev)
        fn = make_train_step(model, x, target, precision=prec, channels_last=channels_last,
                             compile=compile, fused=dev.type in ("cpu", "cuda"))
        if compile:
            start = time.perf_counter()
            fn()
            sync(dev)
            compile_time = time.perf_counter() - start
    with torch.no_grad() if mode == "infer" else torch.enable_grad():
        timing = measure(fn, dev, warmup=warmup, repeats=repeats, min_time=min_time)
    per = timing.median
    lo, hi = timing.spread
    achieved = flops * batch / per / 1e9
    extra = {"peak_per_size": peak["per_size"]}
    if prec == "int8":  # the yardstick is the bf16 peak; int8 is measured against both
        bf16_peak = matmul_peak_gflops("bf16", str(dev))["gflops"]
        extra.update(bf16_peak_gflops=bf16_peak, fraction_of_bf16_peak=achieved / bf16_peak)
    return BenchResult(
        model=model_name, mode=mode, device=str(dev), batch=batch, input_size=size,
        precision=prec, channels_last=channels_last, compiled=compile or prec == "int8",
        threads=torch.get_num_threads(), img_per_s=batch / per,
        img_per_s_spread=(batch / hi, batch / lo), ms_per_batch=per * 1e3,
        gflop_per_img=flops / 1e9, achieved_gflops=achieved, peak_gflops=peak["gflops"],
        peak_dtype=peak_dtype, fraction_of_peak=achieved / peak["gflops"],
        latency_ms_batch1=lat, compile_time_s=compile_time, output_check=check,
        extra=extra)
