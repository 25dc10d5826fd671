"""Process-group setup for torchrun (DDP / FSDP) and the single-process default.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them the trainer runs as one process
and nothing here touches torch.distributed. gloo on CPU (tests), nccl on CUDA.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Iterator, Optional, TypeVar

import torch

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0  # global rank of this process
    world: int = 1  # number of processes
    local_rank: int = 0  # GPU index on this host
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: Optional[str] = None) -> DistEnv:
    """Join the torchrun process group if launched under torchrun, pick the device
    (edgeprune.base.torch_device: `cuda` is this rank's GPU, a bad name is a DeviceError)."""
    from edgeprune.base.torch_device import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, rank=local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
            log.info("rank %d/%d joined (%s)", rank, world, backend)
    return DistEnv(rank=rank, world=world, local_rank=local, device=dev)


def teardown(env: DistEnv) -> None:
    if env.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        import torch.distributed as dist

        dist.barrier()


def all_mean(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Mean of a scalar tensor over ranks (for logging the global loss)."""
    if not env.distributed:
        return value
    import torch.distributed as dist

    v = value.detach().clone()
    dist.all_reduce(v, op=dist.ReduceOp.SUM)
    return v / env.world


def broadcast_object(obj: T, env: DistEnv) -> T:
    """Rank 0's `obj` on every rank (decisions such as which units to prune)."""
    if not env.distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap(model: torch.nn.Module, env: DistEnv, fsdp: bool = False) -> torch.nn.Module:
    """DDP (replicate) or FSDP2 (shard in place, per decoder layer: train/sharded.py) under
    torchrun; the model itself otherwise."""
    if not env.distributed:
        return model
    if fsdp:
        from edgeprune.train.sharded import shard

        return shard(model)
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)


@contextlib.contextmanager
def grad_sync(runner: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce / reduce-scatter inside this block unless `enabled` (the
    last micro-batch of an accumulated step): DDP's no_sync, FSDP2's requires_gradient_sync."""
    if enabled:
        yield
    elif hasattr(runner, "no_sync"):
        with runner.no_sync():
            yield
    elif hasattr(runner, "set_requires_gradient_sync"):
        runner.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            runner.set_requires_gradient_sync(True)
    else:
        yield


def local(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor for a DTensor result (FSDP2's replicated grad norm), else `t`."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t
