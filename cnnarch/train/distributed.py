"""Multi-process training under ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node=N -m cnnarch train ...`` sets RANK, WORLD_SIZE, LOCAL_RANK;
``setup`` then joins the process group (gloo on CPU, NCCL on CUDA). Each rank trains on
its ``batch_size // N`` share of every global batch (see
``InMemoryDataset.train_batches``); DDP averages the gradients, so one step equals a
single-process step on the global batch except for BatchNorm, whose batch statistics are
per rank unless ``sync_bn`` is on (SyncBatchNorm, CUDA only). Metrics are summed over ranks before
they are logged; only rank 0 writes files.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import UserError

TIMEOUT_S = 120  # a collective waiting longer than this for a dead peer fails the job
_joined = False  # this process has joined a process group (see ``joined_group``)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto" -> cuda (this process's GPU under torchrun) if available, else mps, else cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"invalid device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' requested but it is not available")
    return device


def setup(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; a no-op for one process."""
    global _joined
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), resolve_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=TIMEOUT_S))
        _joined = True
    return DistInfo(rank, world, local_rank), device


def joined_group() -> bool:
    """Whether ``setup`` joined a process group in this process (it stays true after
    ``cleanup``): such a process must end through ``cnnarch.__main__.end_process``."""
    return _joined


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (in place; a no-op for one process)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_min(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's value of a picklable object, on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's BN running statistics (before evaluating/saving)."""
    if info.enabled:
        for b in model.buffers():
            dist.broadcast(b, src=0)


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device, sync_bn: bool):
    """DDP-wrap ``model`` (optionally converting BN to SyncBatchNorm first)."""
    if not info.enabled:
        return model
    if sync_bn:
        if device.type != "cuda":
            raise UserError("sync_bn needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); "
                            "on CPU each rank normalises with its own batch statistics")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def check_batch(batch_size: int, info: DistInfo) -> None:
    if batch_size % info.world_size:
        raise UserError(f"batch_size {batch_size} must be divisible by the number of processes "
                        f"({info.world_size})")
