"""What this machine computes natively: the one reader of /proc/cpuinfo and the one bf16 test.

Everything that asks "which CPU is this", "which flags does it have" or "does it compute
bf16 natively" (the fast path, the training loop's "auto" precision, ``bench`` and the
reproduce report's environment) asks here.
"""

from __future__ import annotations

import functools
import os
import platform
from importlib.metadata import PackageNotFoundError, version

import torch

# The flags a benchmark or a precision choice depends on (x86 names as /proc/cpuinfo spells them).
RELEVANT_FLAG_PREFIXES = ("avx", "amx", "fma")


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's ``key: value`` lines of /proc/cpuinfo (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break  # end of the first processor's block
                    continue
                key, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_capability() -> str:
    """The ATen kernel set in use ("avx512", "avx2", "default"; ``ATEN_CPU_CAPABILITY`` narrows it)."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # pragma: no cover - older PyTorch
        return "unknown"


def bf16_supported(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bf16 natively (not emulated, which is slower than fp32).

    CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and newer). CPU: oneDNN's own test
    (AVX-512 BF16 or AMX; it honours ``DNNL_MAX_CPU_ISA``), with the CPU flags as a fallback
    where that test is missing.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - another PyTorch build
        return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def memory_bytes(device: torch.device | str = "cpu") -> int | None:
    """The memory of ``device`` in bytes: a GPU's own, else the machine's physical memory
    (None where the OS does not say)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, None when it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_info(device: torch.device | str | None = None) -> dict:
    """CPU model and flags, threads, library versions, GPU name: what a measurement depends on."""
    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": cpu_capability(),
        "cpu_flags_relevant": sorted(f for f in cpu_flags() if f.startswith(RELEVANT_FLAG_PREFIXES)),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": package_version("torchvision"),
        "onnxruntime": package_version("onnxruntime"),
        "onnx": package_version("onnx"),
        "bf16_native_cpu": bf16_supported("cpu"),
    }
    try:
        info["load_average"] = os.getloadavg()
    except OSError:  # pragma: no cover - not on every platform
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    if device is not None:
        info["device"] = str(device)
    return info


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
