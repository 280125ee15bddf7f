"""Training on several processes: ``torchrun --standalone --nproc_per_node=N -m iresnet_mini.train ...``.

torchrun starts N copies of the trainer and tells each its rank (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``). :func:`from_environment` joins them into one process group (NCCL between GPUs,
gloo between CPU processes); the trainer then wraps its model in DistributedDataParallel, gives
every rank a disjoint shard of one shared permutation of the data, and lets rank 0 alone write
files. Without torchrun every helper here is a no-op on the single process (:data:`SINGLE`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["Context", "SINGLE", "from_environment", "device_for", "wrap", "all_sum", "max_over_ranks", "broadcast_buffers", "barrier",
           "shutdown"]


@dataclass(frozen=True)
class Context:
    """Which process this is: ``rank`` of ``world_size`` (``local_rank`` on this machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, logs and summaries."""
        return self.rank == 0


SINGLE = Context()


def from_environment(device: torch.device) -> Context:
    """The process group torchrun describes in the environment, joined (or SINGLE without torchrun)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(),
                   local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def device_for(context: Context, device: torch.device) -> torch.device:
    """This rank's device: its own GPU (``cuda:LOCAL_RANK``) when training on GPUs."""
    if device.type == "cuda" and context.enabled:
        torch.cuda.set_device(context.local_rank)
        return torch.device("cuda", context.local_rank)
    return device


def wrap(context: Context, module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module`` (gradients averaged over ranks; rank 0's buffers, such as the
    power iteration's u and v, broadcast before every forward), or ``module`` itself on one process."""
    if not context.enabled:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=True)


def all_sum(context: Context, values: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of a tensor (the tensor itself on one process)."""
    if not context.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def max_over_ranks(context: Context, value: float, device: torch.device) -> float:
    """The largest of the ranks' values, on every rank (e.g. the training clock, so that all stop together)."""
    if not context.enabled:
        return value
    tensor = torch.tensor(float(value), dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor)


def broadcast_buffers(context: Context, module: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics, u and v), which the last training forward
    updated on each rank's own batch: before evaluating, all ranks then hold the model rank 0 saves."""
    if context.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier(context: Context) -> None:
    if context.enabled:
        dist.barrier()


def shutdown(context: Context) -> None:
    """Leave the process group (at the end of a distributed run)."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
