"""Multi-process training through ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node N -m mosaic train --config ...`` starts N processes with
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in their environment; :func:`init_distributed` reads
them, picks the backend (NCCL on CUDA, Gloo on the CPU) and the device of this process.
Without those variables everything here is a no-op and the run is a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mosaic.core.errors import MosaicError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process logs, evaluates and writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_object(self, obj):
        """``obj`` from rank 0 on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MosaicError(f"run.device is {name!r} but CUDA is not available: use --set run.device=cpu")
        if name == "cuda":
            name = f"cuda:{local_rank}"
    try:
        return torch.device(name)
    except RuntimeError:
        raise MosaicError(f"run.device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from None


def init_distributed(device_name: str = "auto") -> DistContext:
    """Join the process group when launched by ``torchrun``; otherwise a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(device=resolve_device(device_name))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_for_training(model: torch.nn.Module, dist: DistContext, *, find_unused_parameters: bool = False) -> torch.nn.Module:
    """The module the training step calls: DistributedDataParallel over several processes, else the
    model itself (compiling is the step's business, :class:`mosaic.train.step.TrainStep`)."""
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model,
        device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )
