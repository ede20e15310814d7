"""One process by default; under `torchrun` a process group (gloo on CPU, NCCL on GPU) and FSDP2.

torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; with them every block is sharded with `fully_shard`, then the
root (embeddings, final norm, head). Without them nothing here changes the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world > 1


def init_distributed() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=device)


def shard_model(model: nn.Module, info: DistInfo, param_dtype: torch.dtype) -> nn.Module:
    """FSDP2: shard each transformer block, then the root. Grads are reduced in float32."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(info.device.type, (info.world,))
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for block in model.model.layers:
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model


def mean_across(value: float, info: DistInfo) -> float:
    if not info.sharded:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.item() / info.world


def max_across(value: float, info: DistInfo) -> float:
    """Wall-clock decisions (time budget, eval/checkpoint timing) must agree on every rank."""
    if not info.sharded:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def broadcast(obj: Any, info: DistInfo) -> Any:
    if not info.sharded:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.sharded:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.sharded and dist.is_initialized():
        dist.destroy_process_group()
