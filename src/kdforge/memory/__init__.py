"""Feature memories shared by methods: a per-index momentum bank (CRD, IC-KD), a fixed-size queue, and a
sampler of negative indices from other classes (CRD)."""

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
            # no copy: autograd keeps the bank itself for the backward pass, so update() must wait until after it
            # (CRD updates its banks in after_step)
            return (queries @ self.vectors.to(queries.dtype).T).gather(1, index)
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


class OtherClassSampler(nn.Module):
    """Draws, for each anchor, K dataset indices of classes other than the anchor's (CRD's 'exact' mode, the one
    RepDistiller's CIFAR-100 table uses): the anchor's own index and its classmates are never negatives.

    The official code draws each anchor's K without replacement when its class's pool (the indices of every
    other class) holds at least K. Here one random permutation of the pool positions is drawn per step and each
    anchor takes a cyclic window of K positions at a random offset: a uniformly random K-subset for every anchor,
    with no per-row sort and no host work. A class whose pool is smaller than the largest one (unbalanced data)
    redraws the positions past its pool uniformly, so there a few negatives may repeat.
    """

    def __init__(self, labels: torch.Tensor):
        super().__init__()
        labels = labels.detach().long()  # the buffers live where the labels do
        count = torch.bincount(labels)
        # labels are sorted once: a class's members are one block [start, start + count) of `order`
        self.register_buffer("labels", labels, persistent=False)
        self.register_buffer("order", torch.argsort(labels, stable=True), persistent=False)
        self.register_buffer("start", torch.cumsum(count, 0) - count, persistent=False)
        self.register_buffer("count", count, persistent=False)
        self.register_buffer("pool", len(labels) - count, persistent=False)
        self.max_pool = int(self.pool.max())
        if self.max_pool == 0:
            raise ValueError("other-class negatives need at least two classes in the training set")

    def forward(self, index: torch.Tensor, k: int) -> torch.Tensor:
        """index (B,) dataset indices of the anchors -> (B, k) indices of other-class samples."""
        cls = self.labels[index]
        pool, start, count = self.pool[cls, None], self.start[cls, None], self.count[cls, None]
        device = index.device
        perm = torch.randperm(self.max_pool, device=device)
        offset = torch.randint(0, self.max_pool, (index.shape[0], 1), device=device)
        pos = perm[(offset + torch.arange(k, device=device)) % self.max_pool]
        redraw = (torch.rand(pos.shape, device=device) * pool).long()
        pos = torch.where(pos < pool, pos, redraw)
        pos = pos + (pos >= start) * count  # step over the anchor's own class block
        return self.order[pos]
