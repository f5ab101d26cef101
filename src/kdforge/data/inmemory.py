"""In-memory uint8 datasets and a batched, deterministic augmentation stream.

A training view of sample `i` in epoch `e` depends only on (seed, e, i): crop offsets and flips come
from a counter-based integer hash, not from a stateful RNG. Any view can be recomputed later (teacher
output caches, exact mid-epoch resume), and the whole pipeline is a handful of tensor ops that run
on whatever device holds the data (no DataLoader workers, no per-image Python).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import torch
import torch.nn.functional as F

MASK32 = 0xFFFFFFFF


def mix32(x):
    """A 32-bit integer hash (xor-shift-multiply rounds); works on Python ints and int64 tensors.

    Multipliers stay below 2**31 so that products of 32-bit values never overflow int64.
    """
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK32
    x = x ^ (x >> 15)
    x = (x * 0x4C8E9CF5) & MASK32
    return x ^ (x >> 16)


def view_keys(indices: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """Per-sample 32-bit keys for (seed, epoch, index), computed on the indices' device."""
    base = mix32(mix32(seed & MASK32) ^ (epoch & MASK32))
    return mix32((indices.long() ^ base) & MASK32)


@dataclass(frozen=True)
class AugmentSpec:
    crop_padding: int = 0
    flip: bool = False

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip


def crop_flip(images: torch.Tensor, keys: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    """Random crop with zero padding plus horizontal flip, for a whole uint8 NCHW batch at once."""
    if not spec.active:
        return images
    b, c, h, w = images.shape
    pad = spec.crop_padding
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    span = 2 * pad + 1
    dx = (keys % span).view(b, 1)
    dy = ((keys >> 8) % span).view(b, 1)
    cols = torch.arange(w, device=images.device).view(1, w)
    rows = torch.arange(h, device=images.device).view(1, h)
    if spec.flip:
        flipped = ((keys >> 16) & 1).bool().view(b, 1)
        cols = torch.where(flipped, (w - 1) - cols, cols)
    # One gather over the flattened padded image: source pixel (dy + r, dx + c) for each output (r, c).
    source = (dy + rows).view(b, h, 1) * (w + 2 * pad) + (dx + cols).view(b, 1, w)
    source = source.view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, source).view(b, c, h, w)


class Batch(NamedTuple):
    index: torch.Tensor  # dataset indices (int64), for memory banks and caches
    input: torch.Tensor  # normalised float images
    target: torch.Tensor  # int64 labels


class InMemoryDataset:
    """uint8 images (N, C, H, W) and int64 labels, plus the normalisation statistics."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                 classes: Sequence[str] | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError("labels must hold one int per image")
        self.images = images
        self.labels = labels.long()
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.classes = list(classes) if classes is not None else [str(i) for i in range(int(labels.max()) + 1)]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device) -> "InMemoryDataset":
        return InMemoryDataset(self.images.to(device), self.labels.to(device), self.mean, self.std, self.classes)

    def subset(self, indices) -> "InMemoryDataset":
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        return InMemoryDataset(self.images[idx], self.labels[idx], self.mean, self.std, self.classes)

    def normaliser(self, dtype=torch.float32):
        """(scale, shift) with x_norm = x_uint8 * scale - shift, per channel."""
        mean = torch.tensor(self.mean, dtype=dtype, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=dtype, device=self.device).view(1, -1, 1, 1)
        return 1.0 / (255.0 * std), mean / std


class BatchStream:
    """Yields `Batch`es of one epoch: shuffled (train) or in order (eval), optionally sharded by rank."""

    def __init__(self, data: InMemoryDataset, batch_size: int, *, train: bool, seed: int = 0,
                 augment: AugmentSpec = AugmentSpec(), drop_last: bool | None = None,
                 rank: int = 0, world_size: int = 1, device=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.data = data
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.augment = augment if train else AugmentSpec()
        self.drop_last = train if drop_last is None else drop_last
        self.rank, self.world_size = rank, world_size
        self.scale, self.shift = data.normaliser()
        # where batches go: the dataset's own device unless one is named (a host-resident dataset feeding a GPU);
        # normalised through an empty tensor so that "cuda" and "cuda:0" compare equal
        target = torch.empty(0, device=device).device if device is not None else data.device
        self.target = None if target == data.device else target

    def order(self, epoch: int) -> torch.Tensor:
        """The epoch's sample order: a permutation drawn from (seed, epoch) when training, else 0..N-1.
        Shared by all ranks; `epoch()` cuts each rank's part out of it."""
        n = len(self.data)
        if self.train:
            gen = torch.Generator().manual_seed(mix32(mix32(self.seed & MASK32) ^ (epoch & MASK32)) + 1)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        return order.to(self.data.device)

    def samples_per_epoch(self) -> int:
        """This rank's samples per epoch."""
        n, w = len(self.data), self.world_size
        return n // w if self.train else len(range(self.rank, n, w))

    def __len__(self) -> int:
        if self.train and self.world_size > 1:
            return len(self.data) // (self.batch_size * self.world_size)
        n = self.samples_per_epoch()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batch_indices(self, order: torch.Tensor, b: int) -> torch.Tensor:
        """This rank's indices for batch `b`. Training with several ranks: global batch b is
        order[b*G:(b+1)*G] (G = batch_size * world_size) and rank r takes the r-th part of it, so the ranks
        together see exactly the batches a single process with batch G would see."""
        if self.world_size > 1 and self.train:
            start = (b * self.world_size + self.rank) * self.batch_size
            return order[start:start + self.batch_size]
        if self.world_size > 1:
            order = order[self.rank::self.world_size]
        return order[b * self.batch_size:(b + 1) * self.batch_size]

    def view(self, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        """The normalised (and, when training, augmented) inputs of `indices` in `epoch`."""
        images = self.data.images[indices]
        if self.augment.active:
            images = crop_flip(images, view_keys(indices, self.seed, epoch), self.augment)
        return images.float().mul_(self.scale).sub_(self.shift)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        order = self.order(epoch)
        for b in range(start_batch, len(self)):
            idx = self.batch_indices(order, b)
            batch = Batch(idx, self.view(idx, epoch), self.data.labels[idx])
            yield batch if self.target is None else Batch(*(t.to(self.target, non_blocking=True) for t in batch))
