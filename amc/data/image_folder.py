"""Small ImageNet-style folder datasets (``root/{train,val}/<class>/*.png``), decoded once into memory."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from amc.data.base import DataSplits, ImageTensors, split_reward_val
from amc.data.errors import DatasetError

log = logging.getLogger(__name__)

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
HOW_TO_GET = "lay the images out as <root>/train/<class>/*.png and <root>/val/<class>/*.png and pass data.root=<root>"
MODES = {1: "L", 3: "RGB"}


def _class_dirs(split_dir: Path) -> dict[str, Path]:
    return {d.name: d for d in sorted(split_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def _image_files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def load_image(path: Path, image_size: int, mode: str) -> np.ndarray:
    """Decode ``path``, resize its shorter side to ``image_size``, center-crop; (C, S, S) uint8."""
    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            w, h = img.size
            scale = image_size / min(w, h)
            new_w, new_h = max(image_size, round(w * scale)), max(image_size, round(h * scale))
            img = img.resize((new_w, new_h), Image.BILINEAR)
            left, top = (new_w - image_size) // 2, (new_h - image_size) // 2
            img = img.crop((left, top, left + image_size, top + image_size))
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DatasetError(f"corrupt image file {path}: {e}") from e
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _load_split(split_dir: Path, classes: list[str], image_size: int, mode: str) -> ImageTensors:
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = _image_files(split_dir / name)
        if not files:
            log.warning("class %r has no images in %s", name, split_dir / name)
        images += [load_image(p, image_size, mode) for p in files]
        labels += [label] * len(files)
    if not images:
        raise DatasetError(f"no images ({', '.join(sorted(EXTENSIONS))}) found under {split_dir}; {HOW_TO_GET}")
    return ImageTensors(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long))


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1] (std of a constant channel becomes 1)."""
    means, stds = [], []
    for c in range(images.shape[1]):
        x = images[:, c].double().div(255)
        means.append(float(x.mean()))
        std = float(x.std(unbiased=False))
        stds.append(std if std > 0 else 1.0)
    return tuple(means), tuple(stds)


def image_folder(
    root: str | Path,
    image_size: int = 32,
    in_channels: int = 3,
    reward_val_size: int = 5000,
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> DataSplits:
    """A folder dataset with ``reward_val_size`` training images held out; mean/std default to train stats."""
    if in_channels not in MODES:
        raise ValueError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    root = Path(root)
    train_dir = root / "train"
    test_dir = next((root / name for name in ("val", "test") if (root / name).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DatasetError(
            f"image folder dataset needs {train_dir} and {root / 'val'} (or {root / 'test'}) directories; {HOW_TO_GET}"
        )
    classes = list(_class_dirs(train_dir))
    if not classes:
        raise DatasetError(f"no class directories found in {train_dir}; {HOW_TO_GET}")
    test_classes = list(_class_dirs(test_dir))
    if test_classes != classes:
        extra, missing = sorted(set(test_classes) - set(classes)), sorted(set(classes) - set(test_classes))
        raise DatasetError(
            f"classes in {test_dir} do not match {train_dir}: missing {missing}, unexpected {extra}; "
            "both splits need the same class directories"
        )
    mode = MODES[in_channels]
    train = _load_split(train_dir, classes, image_size, mode)
    test = _load_split(test_dir, classes, image_size, mode)
    default_mean, default_std = _channel_stats(train.images) if mean is None or std is None else ((), ())
    mean_t = tuple(float(v) for v in mean) if mean is not None else default_mean
    std_t = tuple(float(v) for v in std) if std is not None else default_std
    if len(mean_t) != in_channels or len(std_t) != in_channels:
        raise ValueError(f"mean and std need {in_channels} values each, got {mean_t} and {std_t}")
    log.info("image folder %s: %d classes, %d train / %d test images", root, len(classes), len(train), len(test))
    return split_reward_val(
        train, test, reward_val_size=reward_val_size, seed=seed,
        mean=mean_t, std=std_t, num_classes=len(classes), name="image_folder",
    )
