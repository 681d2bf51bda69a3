"""The machine facts under their older module name; the code lives in :mod:`cnnarch.hardware`."""

from ..hardware import (
    RELEVANT_FLAG_PREFIXES,
    bf16_supported,
    cpu_capability,
    cpu_flags,
    cpu_model,
    machine_info,
    package_version,
    sync,
)

__all__ = [
    "RELEVANT_FLAG_PREFIXES", "bf16_supported", "cpu_capability", "cpu_flags", "cpu_model",
    "machine_info", "package_version", "sync",
]
