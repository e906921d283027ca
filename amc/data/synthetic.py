"""A small learnable synthetic dataset for tests: class-dependent blobs plus noise."""

from __future__ import annotations

import torch

from amc.data.base import DataSplits, ImageTensors, split_reward_val


def _make(n: int, in_channels: int, image_size: int, num_classes: int, gen: torch.Generator) -> ImageTensors:
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    yy, xx = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    angle = labels.float() * (2 * torch.pi / num_classes)
    cy = image_size / 2 + image_size / 4 * torch.sin(angle)
    cx = image_size / 2 + image_size / 4 * torch.cos(angle)
    dist = (yy - cy.view(-1, 1, 1)) ** 2 + (xx - cx.view(-1, 1, 1)) ** 2
    blob = torch.exp(-dist / (image_size / 4) ** 2)
    img = blob.unsqueeze(1).repeat(1, in_channels, 1, 1) * 200 + torch.rand(n, in_channels, image_size, image_size, generator=gen) * 55
    return ImageTensors(img.clamp(0, 255).to(torch.uint8), labels)


def synthetic(
    train_size: int = 512,
    test_size: int = 128,
    reward_val_size: int = 128,
    in_channels: int = 3,
    image_size: int = 16,
    num_classes: int = 4,
    seed: int = 0,
) -> DataSplits:
    """Random but learnable images: each class is a bright blob at its own position."""
    gen = torch.Generator().manual_seed(seed + 12345)
    train = _make(train_size + reward_val_size, in_channels, image_size, num_classes, gen)
    test = _make(test_size, in_channels, image_size, num_classes, gen)
    return split_reward_val(
        train, test, reward_val_size=reward_val_size, seed=seed,
        mean=(0.5,) * in_channels, std=(0.25,) * in_channels, num_classes=num_classes, name="synthetic",
    )
