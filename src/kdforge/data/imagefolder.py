"""Image-folder datasets (ImageNet, CUB-200, your own) through torchvision with the standard ImageNet
transforms: too large to hold in memory, so they stream from disk through a DataLoader."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from kdforge.data.inmemory import Batch
from kdforge.errors import DataNotFoundError, UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        image, label = self.base[i]
        return i, image, label


class FolderSplit:
    """One split of a class-per-folder tree; `classes` are the sorted folder names."""

    def __init__(self, folder: Path, train: bool, image_size: int = 224):
        try:
            from torchvision import datasets, transforms
        except ImportError:
            raise UserError("image-folder datasets need torchvision: pip install 'kdforge[vision]'") from None
        if not folder.is_dir():
            raise DataNotFoundError(f"image folder {folder} does not exist; point data.root at a tree with train/ and val/")
        normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        if train:
            tf = transforms.Compose([transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(),
                                     transforms.ToTensor(), normalize])
        else:
            tf = transforms.Compose([transforms.Resize(int(image_size * 256 / 224)), transforms.CenterCrop(image_size),
                                     transforms.ToTensor(), normalize])
        self.base = datasets.ImageFolder(str(folder), transform=tf)
        if len(self.base) == 0:
            raise DataNotFoundError(f"image folder {folder} holds no images")
        self.classes = list(self.base.classes)
        self.labels = torch.tensor(self.base.targets, dtype=torch.long)
        self.train = train

    def __len__(self) -> int:
        return len(self.base)


class FolderStream:
    """Batches of a `FolderSplit`; shuffling and worker seeds follow (seed, epoch)."""

    def __init__(self, split: FolderSplit, batch_size: int, *, train: bool, seed: int = 0, workers: int = 4,
                 rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu"):
        self.split, self.batch_size, self.train, self.seed = split, batch_size, train, seed
        self.workers, self.rank, self.world_size = workers, rank, world_size
        self.drop_last = train
        self.device = torch.device(device)

    def order(self, epoch: int) -> torch.Tensor:
        n = len(self.split)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch)) if self.train \
            else torch.arange(n)
        if self.world_size > 1:
            order = order[: n // self.world_size * self.world_size][self.rank::self.world_size] if self.train \
                else order[self.rank::self.world_size]
        return order

    def __len__(self) -> int:
        n = len(self.order(0))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        order = self.order(epoch)[start_batch * self.batch_size:].tolist()
        loader = torch.utils.data.DataLoader(
            _Indexed(self.split.base), batch_size=self.batch_size, sampler=order, num_workers=self.workers,
            drop_last=self.drop_last, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.seed * 7919 + epoch),
            persistent_workers=False,
        )
        non_blocking = self.device.type == "cuda"
        for index, images, labels in loader:
            yield Batch(index.to(self.device, non_blocking=non_blocking), images.to(self.device, non_blocking=non_blocking),
                        labels.to(self.device, non_blocking=non_blocking))
