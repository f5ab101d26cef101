"""Collective helpers shared by the engine, the methods and the memory banks: each is a no-op in a single
process, and under torchrun (gloo or NCCL) acts over every rank. A neutral module, so that methods and banks never
import the engine."""

from __future__ import annotations

import torch
import torch.distributed as dist


def all_reduce_(tensor: torch.Tensor, op=None) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
    return tensor


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """The global batch (ranks in order); gradients flow only into this rank's own slice."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def rank_offset(batch: int) -> int:
    """Where this rank's rows start inside a gathered global batch."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0
    return dist.get_rank() * batch
