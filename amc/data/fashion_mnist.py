"""Fashion-MNIST from its IDX (gz) files, as installed by Debian's ``dataset-fashion-mnist`` package."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch

from amc.data.base import DataSplits, ImageTensors, split_reward_val
from amc.data.errors import DatasetError

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
HOW_TO_GET = "install it with `apt-get update && apt-get install -y dataset-fashion-mnist` or pass data.root=<dir>"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (optionally gzip-compressed) of unsigned bytes into a uint8 tensor."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError(f"header {zero:#x}/{dtype:#x} is not an unsigned-byte IDX header")
        shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        body = data[4 + 4 * ndim :]
        expected = 1
        for s in shape:
            expected *= s
        if len(body) != expected:
            raise ValueError(f"{len(body)} data bytes, header promises {expected}")
    except (OSError, EOFError, ValueError, struct.error) as e:
        raise DatasetError(f"corrupt IDX file {path}: {e}; re-install the data ({HOW_TO_GET})") from e
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).view(*shape)


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"Fashion-MNIST file {stem}[.gz] not found in {root}; {HOW_TO_GET}")


def load_fashion_mnist_split(root: str | Path, split: str) -> ImageTensors:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Fashion-MNIST directory {root} does not exist; {HOW_TO_GET}")
    images = read_idx(_find(root, FILES[split][0]))
    labels = read_idx(_find(root, FILES[split][1]))
    return ImageTensors(images.unsqueeze(1).contiguous(), labels)


def fashion_mnist(root: str | Path = DEFAULT_ROOT, reward_val_size: int = 5000, seed: int = 0) -> DataSplits:
    """Fashion-MNIST with ``reward_val_size`` training images held out for the pruning reward."""
    return split_reward_val(
        load_fashion_mnist_split(root, "train"),
        load_fashion_mnist_split(root, "test"),
        reward_val_size=reward_val_size,
        seed=seed,
        mean=(0.2860,),
        std=(0.3530,),
        num_classes=10,
        name="fashion_mnist",
    )
