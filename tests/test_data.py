"""Datasets: splits, IDX / CIFAR pickle / image-folder loaders, their errors, batching and augmentation."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import re
import shlex
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from amc.data import DatasetError, ImageTensors, cifar10, fashion_mnist, image_folder, split_reward_val, synthetic
from amc.data.base import random_crop_flip
from amc.data.cifar10 import RestrictedUnpickler
from amc.data.fashion_mnist import read_idx

# --- synthetic data and the reward-val split -------------------------------------------------------------------


def _image_keys(data: ImageTensors) -> set[bytes]:
    return {img.numpy().tobytes() for img in data.images}


def test_synthetic_splits_sized_disjoint_and_deterministic() -> None:
    a = synthetic(train_size=40, test_size=12, reward_val_size=10, in_channels=2, image_size=8, num_classes=3, seed=1)
    assert (len(a.train), len(a.reward_val), len(a.test)) == (40, 10, 12)
    assert a.train.images.shape == (40, 2, 8, 8) and a.train.images.dtype == torch.uint8
    assert a.in_channels == 2 and a.image_size == (8, 8) and a.num_classes == 3
    assert len(a.mean) == len(a.std) == 2
    assert set(a.train.labels.tolist()) <= {0, 1, 2}
    # noise makes every image unique, so disjoint splits share no image
    assert not _image_keys(a.train) & _image_keys(a.reward_val)
    assert not _image_keys(a.train) & _image_keys(a.test)
    b = synthetic(train_size=40, test_size=12, reward_val_size=10, in_channels=2, image_size=8, num_classes=3, seed=1)
    for split in ("train", "reward_val", "test"):
        assert torch.equal(a.split(split).images, b.split(split).images)
        assert torch.equal(a.split(split).labels, b.split(split).labels)
    c = synthetic(train_size=40, test_size=12, reward_val_size=10, in_channels=2, image_size=8, num_classes=3, seed=2)
    assert not torch.equal(a.train.images, c.train.images)


def _indexed(n: int) -> ImageTensors:
    """Images whose single pixel is their index, so splits can be traced back."""
    return ImageTensors(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1), torch.arange(n) % 3)


def test_split_reward_val_partitions_train_by_seed() -> None:
    train, test = _indexed(30), _indexed(5)
    spec = {"mean": (0.5,), "std": (0.5,), "num_classes": 3}
    s = split_reward_val(train, test, reward_val_size=8, seed=0, **spec)
    kept, held = s.train.images.flatten().tolist(), s.reward_val.images.flatten().tolist()
    assert len(held) == 8 and len(kept) == 22
    assert sorted(kept + held) == list(range(30))
    assert kept == sorted(kept) and held == sorted(held)
    assert s.train.labels.tolist() == [i % 3 for i in kept]
    assert s.test is test
    assert split_reward_val(train, test, reward_val_size=8, seed=0, **spec).reward_val.images.flatten().tolist() == held
    assert split_reward_val(train, test, reward_val_size=8, seed=1, **spec).reward_val.images.flatten().tolist() != held
    with pytest.raises(ValueError, match="reward_val_size"):
        split_reward_val(train, test, reward_val_size=30, seed=0, **spec)


def test_image_tensors_validates() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ImageTensors(torch.zeros(2, 1, 2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="labels"):
        ImageTensors(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(3))


# --- batching and augmentation -----------------------------------------------------------------------------------


def test_batches_normalise_and_cover_the_split() -> None:
    data = synthetic(train_size=20, test_size=7, reward_val_size=4, in_channels=3, image_size=8, seed=0)
    batches = list(data.batches("test", batch_size=3))
    assert [len(y) for _, y in batches] == [3, 3, 1] == [len(x) for x, _ in batches]
    assert data.num_batches("test", 3) == 3
    x = torch.cat([b[0] for b in batches])
    mean, std = torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1)
    torch.testing.assert_close((x * std + mean) * 255, data.test.images.float(), atol=1e-3, rtol=0)
    assert torch.equal(torch.cat([b[1] for b in batches]), data.test.labels)
    assert sum(len(y) for _, y in data.batches("train", 8, shuffle=True, limit=10)) == 10
    with pytest.raises(ValueError, match="unknown split"):
        data.split("val")


def test_batches_with_augmentation_keep_shapes() -> None:
    data = synthetic(train_size=20, test_size=4, reward_val_size=4, in_channels=3, image_size=8, seed=0)
    gen = torch.Generator().manual_seed(0)
    batches = list(data.batches("train", batch_size=6, shuffle=True, augment=True, generator=gen))
    assert [tuple(x.shape) for x, _ in batches] == [(6, 3, 8, 8)] * 3 + [(2, 3, 8, 8)]
    assert all(x.dtype == torch.float32 and torch.isfinite(x).all() for x, _ in batches)
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == sorted(data.train.labels.tolist())


def _expected_crop_flip(x: torch.Tensor, padding: int, seed: int) -> torch.Tensor:
    """Reference: replay random_crop_flip's draws and crop / flip each image by plain slicing."""
    n, _, h, w = x.shape
    gen = torch.Generator().manual_seed(seed)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    out = []
    for i in range(n):
        crop = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out.append(crop.flip(-1) if flip[i] else crop)
    return torch.stack(out)


def test_random_crop_flip_without_padding_is_identity_up_to_flips() -> None:
    x = torch.arange(16 * 2 * 5 * 6, dtype=torch.float32).view(16, 2, 5, 6)
    out = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(3))
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(16)]
    unchanged = [torch.equal(out[i], x[i]) for i in range(16)]
    assert all(f != u for f, u in zip(flipped, unchanged, strict=True))  # each image exactly one of the two
    assert any(flipped) and any(unchanged)
    # and the ones left unflipped are exactly where the generator says "no flip": identity there
    torch.testing.assert_close(out, _expected_crop_flip(x, 0, seed=3), rtol=0, atol=0)


@pytest.mark.parametrize("padding", [1, 2])
def test_random_crop_flip_crops_the_zero_padded_image(padding: int) -> None:
    x = torch.arange(8 * 3 * 4 * 4, dtype=torch.float32).view(8, 3, 4, 4) + 1  # no zeros: padding is visible
    out = random_crop_flip(x, padding=padding, generator=torch.Generator().manual_seed(7))
    assert out.shape == x.shape
    torch.testing.assert_close(out, _expected_crop_flip(x, padding, seed=7), rtol=0, atol=0)
    assert (out == 0).any()  # some crop reached into the zero border


# --- Fashion-MNIST-style IDX files -------------------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _fake_fashion_mnist(root: Path, n_train: int = 20, n_test: int = 6) -> tuple[np.ndarray, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    train_labels = np.arange(n_train, dtype=np.uint8) % 10
    _write_idx(root / "train-images-idx3-ubyte.gz", train_images)
    _write_idx(root / "train-labels-idx1-ubyte.gz", train_labels)
    _write_idx(root / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8))
    _write_idx(root / "t10k-labels-idx1-ubyte", np.arange(n_test, dtype=np.uint8) % 10, compress=False)
    return train_images, train_labels


def test_fashion_mnist_reward_val_split(tmp_path: Path) -> None:
    train_images, train_labels = _fake_fashion_mnist(tmp_path)
    data = fashion_mnist(tmp_path, reward_val_size=5, seed=0)
    assert data.train.images.shape == (15, 1, 28, 28) and data.reward_val.images.shape == (5, 1, 28, 28)
    assert data.test.images.shape == (6, 1, 28, 28)
    assert len(data.train) + len(data.reward_val) == len(train_images)
    assert data.num_classes == 10 and data.in_channels == 1 and data.name == "fashion_mnist"
    assert data.test.labels.tolist() == [i % 10 for i in range(6)]
    # every held-out and kept image is an original training image with its original label
    originals = {img.tobytes(): int(label) for img, label in zip(train_images, train_labels, strict=True)}
    seen = []
    for split in (data.train, data.reward_val):
        for img, label in zip(split.images, split.labels, strict=True):
            key = img[0].numpy().tobytes()
            assert originals[key] == int(label)
            seen.append(key)
    assert sorted(seen) == sorted(originals)
    same = fashion_mnist(tmp_path, reward_val_size=5, seed=0)
    assert torch.equal(same.reward_val.images, data.reward_val.images)


def test_truncated_idx_file_raises_dataset_error(tmp_path: Path) -> None:
    _fake_fashion_mnist(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    payload = gzip.decompress(labels.read_bytes())
    with gzip.open(labels, "wb") as f:
        f.write(payload[:-3])  # valid gzip, header promises 3 more labels
    with pytest.raises(DatasetError, match=re.escape(str(labels))) as info:
        fashion_mnist(tmp_path, reward_val_size=5)
    assert "header promises" in str(info.value)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:40])  # truncated gzip stream
    with pytest.raises(DatasetError, match=re.escape(str(images))):
        read_idx(images)


def test_idx_file_with_wrong_header_raises(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 2) + b"\x00" * 8)  # float IDX, not unsigned bytes
    with pytest.raises(DatasetError, match="unsigned-byte"):
        read_idx(path)


def test_fashion_mnist_missing_directory_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=re.escape(str(missing))) as info:
        fashion_mnist(missing)
    assert "data.root" in str(info.value)
    _fake_fashion_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        fashion_mnist(tmp_path, reward_val_size=5)


# --- CIFAR-10 python batches -------------------------------------------------------------------------------------


def _cifar_batch(n: int, offset: int) -> dict[bytes, object]:
    data = ((np.arange(n * 3072).reshape(n, 3072) + 7 * offset) % 251).astype(np.uint8)
    data[:, 0] = np.arange(offset, offset + n)  # first red pixel identifies the image
    return {b"batch_label": b"batch", b"labels": [(offset + i) % 10 for i in range(n)], b"data": data}


def _fake_cifar10(directory: Path, per_batch: int = 3, n_test: int = 4, protocol: int = 2) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(5):
        with (directory / f"data_batch_{i + 1}").open("wb") as f:
            pickle.dump(_cifar_batch(per_batch, offset=i * per_batch), f, protocol=protocol)
    with (directory / "test_batch").open("wb") as f:
        pickle.dump(_cifar_batch(n_test, offset=100), f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_loads_python_batches(tmp_path: Path, protocol: int) -> None:
    _fake_cifar10(tmp_path, protocol=protocol)
    data = cifar10(tmp_path, reward_val_size=0)
    assert data.train.images.shape == (15, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.test.images.shape == (4, 3, 32, 32)
    assert data.num_classes == 10 and data.name == "cifar10" and data.in_channels == 3
    assert data.mean == (0.4914, 0.4822, 0.4465) and data.std == (0.2470, 0.2435, 0.2616)
    expected = np.concatenate([_cifar_batch(3, offset=3 * i)[b"data"] for i in range(5)]).reshape(15, 3, 32, 32)
    assert torch.equal(data.train.images, torch.from_numpy(expected))  # row-major (R, G, B) planes
    assert data.train.images[4, 0, 0, 0] == 4 and data.train.images[0, 1, 0, 0] == 1024 % 251
    assert data.train.labels.tolist() == [i % 10 for i in range(15)]
    assert data.test.labels.tolist() == [0, 1, 2, 3]


def test_cifar10_extracted_subdir_and_reward_val(tmp_path: Path) -> None:
    _fake_cifar10(tmp_path / "cifar-10-batches-py")
    data = cifar10(tmp_path, reward_val_size=5, seed=3)
    assert (len(data.train), len(data.reward_val), len(data.test)) == (10, 5, 4)
    ids = data.train.images[:, 0, 0, 0].tolist() + data.reward_val.images[:, 0, 0, 0].tolist()
    assert sorted(ids) == list(range(15))


def test_cifar10_missing_data(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=re.escape(str(missing))) as info:
        cifar10(missing)
    assert "cifar-10-python.tar.gz" in str(info.value) and "data.root" in str(info.value)
    with pytest.raises(DatasetError, match="cifar-10-batches-py"):
        cifar10(tmp_path)  # exists but empty: says both places it looked
    _fake_cifar10(tmp_path)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(DatasetError, match="test_batch"):
        cifar10(tmp_path, reward_val_size=1)


@pytest.mark.parametrize(
    "content",
    [
        os.urandom(64),
        pickle.dumps(_cifar_batch(2, 0), protocol=2)[:-20],  # truncated
        pickle.dumps({b"labels": [1]}, protocol=2),  # no data
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}),  # wrong image size
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 12]}),  # label out of range
    ],
    ids=["random", "truncated", "no-data", "bad-shape", "bad-label"],
)
def test_cifar10_corrupt_batch_names_the_file(tmp_path: Path, content: bytes) -> None:
    _fake_cifar10(tmp_path)
    bad = tmp_path / "data_batch_3"
    bad.write_bytes(content)
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        cifar10(tmp_path, reward_val_size=1)


class _Exploit:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_cifar10_refuses_malicious_pickle_without_running_it(tmp_path: Path) -> None:
    _fake_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    batch = _cifar_batch(3, 0)
    batch[b"batch_label"] = _Exploit(marker)  # hidden next to valid arrays
    evil = tmp_path / "data_batch_2"
    evil.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetError, match=re.escape(str(evil))) as info:
        cifar10(tmp_path, reward_val_size=1)
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    assert "system" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("os", "system"), ("numpy", "load"), ("subprocess", "Popen")])
def test_restricted_unpickler_allows_only_numpy_reconstruction(module: str, name: str) -> None:
    unpickler = RestrictedUnpickler(io.BytesIO(b""), encoding="bytes")
    with pytest.raises(pickle.UnpicklingError, match=f"{module}.{name}"):
        unpickler.find_class(module, name)
    assert unpickler.find_class("numpy", "ndarray") is np.ndarray


# --- image folders -----------------------------------------------------------------------------------------------


def _write_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (12, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _fake_folder(root: Path, val_name: str = "val") -> None:
    red, blue = (255, 0, 0), (0, 0, 255)
    _write_image(root / "train" / "cat" / "a.png", red)
    _write_image(root / "train" / "cat" / "b.PNG", red, (8, 10))
    _write_image(root / "train" / "dog" / "a.png", blue, (5, 5))
    _write_image(root / "train" / "dog" / "b.bmp", blue)
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    _write_image(root / val_name / "cat" / "c.png", red)
    _write_image(root / val_name / "dog" / "c.jpg", blue)


def test_image_folder_loads_rgb(tmp_path: Path) -> None:
    _fake_folder(tmp_path)
    data = image_folder(tmp_path, image_size=4, in_channels=3, reward_val_size=0)
    assert data.train.images.shape == (4, 3, 4, 4) and data.test.images.shape == (2, 3, 4, 4)
    assert data.num_classes == 2 and data.in_channels == 3 and data.image_size == (4, 4)
    assert data.train.labels.tolist() == [0, 0, 1, 1] and data.test.labels.tolist() == [0, 1]  # cat=0, dog=1
    assert (data.train.images[:2, 0] == 255).all() and (data.train.images[:2, 1:] == 0).all()
    assert (data.train.images[2:, 2] == 255).all() and (data.train.images[2:, :2] == 0).all()
    # default normalisation: per-channel stats of the train images; a constant channel gets std 1
    assert data.mean == pytest.approx((0.5, 0.0, 0.5)) and data.std == pytest.approx((0.5, 1.0, 0.5))


def test_image_folder_grayscale_test_dir_and_given_stats(tmp_path: Path) -> None:
    _fake_folder(tmp_path, val_name="test")
    data = image_folder(tmp_path, image_size=3, in_channels=1, reward_val_size=1, mean=[0.3], std=[0.2])
    assert data.train.images.shape == (3, 1, 3, 3) and data.reward_val.images.shape == (1, 1, 3, 3)
    assert data.mean == (0.3,) and data.std == (0.2,)
    red_gray = Image.new("RGB", (1, 1), (255, 0, 0)).convert("L").getpixel((0, 0))
    assert (data.test.images[0] == red_gray).all()
    with pytest.raises(ValueError, match="mean and std"):
        image_folder(tmp_path, image_size=3, in_channels=1, reward_val_size=1, mean=[0.1, 0.2, 0.3], std=[1, 1, 1])
    with pytest.raises(ValueError, match="in_channels"):
        image_folder(tmp_path, in_channels=2, reward_val_size=1)


def test_image_folder_resizes_shorter_side_then_center_crops(tmp_path: Path) -> None:
    columns = np.tile(np.arange(8, dtype=np.uint8) * 30, (4, 1))  # 4 rows x 8 columns, value = 30 * column
    for split in ("train", "val"):
        (tmp_path / split / "only").mkdir(parents=True)
        Image.fromarray(columns).save(tmp_path / split / "only" / "x.png")
    data = image_folder(tmp_path, image_size=4, in_channels=1, reward_val_size=0)
    # shorter side already 4: no resize; the centre 4 columns (2..5) remain
    assert data.test.images[0, 0].tolist() == [[60, 90, 120, 150]] * 4
    small = image_folder(tmp_path, image_size=2, in_channels=1, reward_val_size=0)
    assert small.test.images.shape == (1, 1, 2, 2)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "train"))):
        image_folder(tmp_path)
    _fake_folder(tmp_path)
    _write_image(tmp_path / "val" / "bird" / "x.png", (0, 255, 0))
    with pytest.raises(DatasetError, match="bird"):
        image_folder(tmp_path, reward_val_size=1)
    empty = tmp_path / "empty"
    (empty / "train" / "a").mkdir(parents=True)
    (empty / "val" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images"):
        image_folder(empty, reward_val_size=0)
    broken = tmp_path / "broken"
    _fake_folder(broken)
    bad = broken / "train" / "cat" / "z.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        image_folder(broken, image_size=4, reward_val_size=1)


# --- every source: ordinary NCHW batches ---------------------------------------------------------------------------
class _ViewNet(torch.nn.Module):
    """Classic code: flattens with ``.view``, which needs a contiguous activation (a channels-last batch breaks it)."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * size * size, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return self.fc(out.view(out.size(0), -1))


@pytest.mark.parametrize("source", ["synthetic", "fashion_mnist", "cifar10", "image_folder"])
def test_every_source_yields_contiguous_nchw_batches(source: str, tmp_path: Path) -> None:
    if source == "synthetic":
        data = synthetic(train_size=8, test_size=4, reward_val_size=2, in_channels=3, image_size=8, num_classes=2)
    elif source == "fashion_mnist":
        _fake_fashion_mnist(tmp_path)
        data = fashion_mnist(tmp_path, reward_val_size=5)
    elif source == "cifar10":
        _fake_cifar10(tmp_path)
        data = cifar10(tmp_path, reward_val_size=3)
    else:
        _fake_folder(tmp_path)
        data = image_folder(tmp_path, image_size=6, in_channels=3, reward_val_size=1)
    model = _ViewNet(data.in_channels, data.image_size[0])
    for split in ("train", "reward_val", "test"):
        for augment in (False, True) if split == "train" else (False,):
            for x, _ in data.batches(split, batch_size=3, augment=augment, shuffle=augment):
                assert x.is_contiguous(), (source, split)
                model(x)  # .view works
