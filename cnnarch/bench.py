"""The benchmark machinery under its older module name; the code lives in
:mod:`cnnarch.inference.bench` (and the machine facts in :mod:`cnnarch.inference.hardware`)."""

from .inference.bench import (
    BenchResult,
    Timing,
    bench,
    calls_per_repeat,
    classification_loss,
    cold_compile_cache,
    count_flops,
    latency_ms,
    make_train_step,
    matmul_operands,
    matmul_peak_gflops,
    measure,
    noise_bn_statistics,
    percentiles,
    resolve_device,
    time_calls,
)
from .inference.hardware import machine_info, sync

__all__ = [
    "BenchResult", "Timing", "bench", "calls_per_repeat", "classification_loss",
    "cold_compile_cache", "count_flops", "latency_ms", "machine_info", "make_train_step",
    "matmul_operands", "matmul_peak_gflops", "measure", "noise_bn_statistics", "percentiles",
    "resolve_device", "sync", "time_calls",
]
