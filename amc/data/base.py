"""In-memory image datasets, the train / reward-val / test split and batch iteration.

Images are stored as uint8 NCHW tensors; normalisation and augmentation happen per batch, so the
reward-val split (held out from train) always sees the test-time transform.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass
class ImageTensors:
    """A labelled set of uint8 images, shape (N, C, H, W)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be a uint8 (N, C, H, W) tensor, got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.labels = self.labels.long()
        # an ordinary NCHW layout whatever the source's (a stack of HWC images transposed keeps channels-last
        # strides, which torch keeps through indexing): user models may .view their activations
        self.images = self.images.contiguous()

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> ImageTensors:
        return ImageTensors(self.images[indices], self.labels[indices])


@dataclass
class DataSplits:
    """What every command needs: train (augmented), reward-val (held out from train) and test images."""

    train: ImageTensors
    reward_val: ImageTensors
    test: ImageTensors
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    name: str = "dataset"

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    def batches(
        self,
        split: str,
        batch_size: int = 256,
        *,
        shuffle: bool = False,
        augment: bool = False,
        generator: torch.Generator | None = None,
        limit: int | None = None,
        device: torch.device | str = "cpu",
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield normalised (images, labels) batches of ``split`` ('train', 'reward_val' or 'test')."""
        data = self.split(split)
        n = len(data) if limit is None else min(limit, len(data))
        order = torch.randperm(len(data), generator=generator)[:n] if shuffle else torch.arange(n)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x = data.images[idx].float().div_(255)
            if augment:
                x = random_crop_flip(x, padding=max(2, x.shape[-1] // 8), generator=generator)
            x = (x - mean) / std
            yield x.to(device, non_blocking=True), data.labels[idx].to(device, non_blocking=True)

    def split(self, name: str) -> ImageTensors:
        splits = {"train": self.train, "reward_val": self.reward_val, "test": self.test}
        if name not in splits:
            raise ValueError(f"unknown split {name!r}; expected one of {sorted(splits)}")
        return splits[name]

    def num_batches(self, split: str, batch_size: int) -> int:
        return math.ceil(len(self.split(split)) / batch_size)


def random_crop_flip(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard CIFAR augmentation on a float batch: zero-pad, random crop back to size, random h-flip."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1).expand(n, x.shape[1], h, w + 2 * padding)
    out = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    out = out.gather(3, cols)
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def split_reward_val(
    train: ImageTensors, test: ImageTensors, *, reward_val_size: int, seed: int, **spec: object
) -> DataSplits:
    """Hold out ``reward_val_size`` training images (fixed by ``seed``) for the pruning reward."""
    if not 0 <= reward_val_size < len(train):
        raise ValueError(f"reward_val_size must be in [0, {len(train)}) for this dataset, got {reward_val_size}")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    held, kept = perm[:reward_val_size].sort().values, perm[reward_val_size:].sort().values
    return DataSplits(train=train.subset(kept), reward_val=train.subset(held), test=test, **spec)  # type: ignore[arg-type]
