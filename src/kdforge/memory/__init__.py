"""Feature memories shared by methods: a per-index momentum bank (CRD, IC-KD) and a fixed-size queue."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class MomentumBank(nn.Module):
    """One L2-normalised vector per dataset index, updated as normalize(m * old + (1 - m) * new).

    Stored as a buffer, so it is saved and restored with the method's state.
    """

    def __init__(self, size: int, dim: int, momentum: float = 0.5, generator: torch.Generator | None = None):
        super().__init__()
        bound = 1.0 / math.sqrt(dim / 3)
        init = torch.rand(size, dim, generator=generator) * (2 * bound) - bound
        self.register_buffer("vectors", init)
        self.momentum = momentum

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @torch.no_grad()
    def update(self, index: torch.Tensor, new: torch.Tensor) -> None:
        mixed = self.vectors[index] * self.momentum + new.detach().to(self.vectors.dtype) * (1 - self.momentum)
        self.vectors.index_copy_(0, index, F.normalize(mixed, dim=1))

    def scores(self, queries: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """queries (B, D) x entries index (B, K) -> (B, K) dot products.

        When the bank is not much larger than the number of sampled entries, one dense (B, N) matmul and a
        gather is far cheaper than materialising the (B, K, D) block of sampled vectors.
        """
        if self.vectors.shape[0] <= 4 * index.shape[1]:
            # a copy: autograd keeps it for the backward pass while update() rewrites the bank in place
            bank = self.vectors.to(queries.dtype, copy=True)
            return (queries @ bank.T).gather(1, index)
        return torch.bmm(self.vectors[index].to(queries.dtype), queries.unsqueeze(2)).squeeze(2)


class FeatureQueue(nn.Module):
    """A fixed-size FIFO of past vectors (MoCo style): memory does not grow with the dataset."""

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("vectors", F.normalize(torch.randn(size, dim, generator=generator), dim=1))
        self.register_buffer("head", torch.zeros((), dtype=torch.long))

    def snapshot(self, dtype: torch.dtype) -> torch.Tensor:
        """The current entries as a copy, safe to use in a graph while push() rewrites the queue."""
        return self.vectors.to(dtype, copy=True)

    @torch.no_grad()
    def push(self, new: torch.Tensor) -> None:
        n, size = new.shape[0], self.vectors.shape[0]
        slots = (self.head + torch.arange(n, device=new.device)) % size  # stays on the device: no host sync
        self.vectors.index_copy_(0, slots, new.detach().to(self.vectors.dtype))
        self.head.copy_((self.head + n) % size)
