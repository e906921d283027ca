"""CIFAR-10 from its python-format batches, read with a restricted unpickler (never plain ``pickle.load``)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from amc.data.base import DataSplits, ImageTensors, split_reward_val
from amc.data.errors import DatasetError

HOW_TO_GET = (
    "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html on a machine with network "
    "access, extract it (tar xzf cifar-10-python.tar.gz) and pass data.root=<dir containing cifar-10-batches-py>"
)
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
SUBDIR = "cifar-10-batches-py"

# The only globals a pickled dict of numpy arrays needs (numpy 1.x and 2.x module names, protocols 0-5).
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array reconstruction globals; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: not a numpy array reconstructor")
        return super().find_class(module, name)


def _load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch file into (images (N, 3072) uint8, labels (N,) int64)."""
    try:
        with path.open("rb") as f:
            batch = RestrictedUnpickler(f, encoding="bytes").load()
        if not isinstance(batch, dict):
            raise ValueError(f"expected a dict, got {type(batch).__name__}")
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError("'data' is not a (N, 3072) uint8 array")
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(data),):
            raise ValueError(f"{labels.shape} labels for {len(data)} images")
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise ValueError(f"labels outside 0..9 (range {labels.min()}..{labels.max()})")
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, OverflowError, MemoryError) as e:
        raise DatasetError(f"corrupt CIFAR-10 batch file {path}: {e}; re-extract the data ({HOW_TO_GET})") from e
    return data, labels


def _find_dir(root: Path) -> Path:
    candidates = (root, root / SUBDIR)
    for d in candidates:
        if (d / TRAIN_FILES[0]).is_file():
            return d
    looked = " and ".join(str(d) for d in candidates)
    if not root.is_dir():
        raise DatasetError(f"CIFAR-10 directory {root} does not exist; {HOW_TO_GET}")
    raise DatasetError(f"CIFAR-10 file {TRAIN_FILES[0]} not found in {looked}; {HOW_TO_GET}")


def load_cifar10_split(root: str | Path, split: str) -> ImageTensors:
    """Load the 'train' (5 batches) or 'test' split as uint8 (N, 3, 32, 32) images."""
    files = {"train": TRAIN_FILES, "test": TEST_FILES}[split]
    directory = _find_dir(Path(root))
    missing = [name for name in files if not (directory / name).is_file()]
    if missing:
        raise DatasetError(f"CIFAR-10 files {', '.join(missing)} not found in {directory}; {HOW_TO_GET}")
    batches = [_load_batch(directory / name) for name in files]
    images = np.concatenate([b[0] for b in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([b[1] for b in batches])
    return ImageTensors(torch.from_numpy(images), torch.from_numpy(labels))


def cifar10(root: str | Path, reward_val_size: int = 5000, seed: int = 0) -> DataSplits:
    """CIFAR-10 with ``reward_val_size`` training images held out for the pruning reward."""
    return split_reward_val(
        load_cifar10_split(root, "train"),
        load_cifar10_split(root, "test"),
        reward_val_size=reward_val_size,
        seed=seed,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        num_classes=10,
        name="cifar10",
    )
