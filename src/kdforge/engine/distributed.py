"""Multi-process training on torch.distributed: one process per device, started by torchrun.

`torchrun --nproc_per_node=N -m kdforge train CONFIG` (add --nnodes/--node_rank/--rdzv_endpoint for
several machines). gloo on CPU, NCCL on GPU. The config's `data.batch_size` is the *global* batch, split
evenly over the ranks, so a recipe means the same thing on any number of processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from kdforge.errors import ConfigError


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


SINGLE = DistInfo()


def init_from_env(device_name: str) -> tuple[DistInfo, torch.device | None]:
    """Join the process group torchrun describes in the environment; (SINGLE, None) when not launched so."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE, None
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    device = torch.device("cuda", info.local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        if info.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"local rank {info.local_rank} has no GPU: this machine has "
                              f"{torch.cuda.device_count()}; start at most that many processes per node "
                              "(--nproc_per_node) or train on the CPU with device=cpu")
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return info, device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def peer_failure(exc: BaseException) -> bool:
    """Whether a collective failed because another process of the run died (its connection closed, or the
    backend's own error types), as opposed to a bug in this process."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return any(s in text for s in ("Connection closed by peer", "Connection reset by peer", "remote worker crash",
                                   "NCCL communicator was aborted"))


def per_rank_batch(global_batch: int, info: DistInfo) -> int:
    if global_batch % info.world_size:
        raise ConfigError(f"data.batch_size {global_batch} (the global batch) must divide evenly over "
                          f"{info.world_size} processes")
    return global_batch // info.world_size


def average_gradients(params) -> None:
    """Average the gradients of parameters DDP does not own (a method's heads and adapters)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
