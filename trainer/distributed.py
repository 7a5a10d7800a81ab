"""Data parallelism through torch.distributed, as started by `torchrun` (or Spark's TorchDistributor,
which runs torchrun): gloo on CPU, nccl on CUDA. A plain `python -m trainer fit` is a world of one
and none of this does anything.

Each rank trains on its own shard of the training files and scores its own shard of the
validation and test files; `gather` brings every rank's rows to every rank, so metrics count each
row exactly once and all ranks take the same early-stopping decision. Rank 0 alone writes the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: the local GPU under CUDA, the CPU otherwise."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device

    def max(self, value: int) -> int:
        """The largest `value` over all ranks."""
        if not self.parallel:
            return value
        t = torch.tensor([value], dtype=torch.long)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def gather(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every rank's per-row arrays, concatenated in rank order, on every rank."""
        if not self.parallel:
            return rows
        parts: list = [None] * self.size
        dist.all_gather_object(parts, rows)
        parts = [p for p in parts if p]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

    def broadcast(self, value):
        """Rank 0's `value`, on every rank."""
        if not self.parallel:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()


def init(device: torch.device) -> World:
    """Join the process group torchrun describes in the environment, or stay a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """The model under DistributedDataParallel when the world has more than one rank."""
    if not world.parallel:
        return model
    ids = [world.local_rank] if next(model.parameters()).device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
