"""Datasets and the train / reward-val / test split."""

from amc.data.base import DataSplits, ImageTensors, split_reward_val
from amc.data.cifar10 import cifar10
from amc.data.errors import DatasetError
from amc.data.fashion_mnist import fashion_mnist
from amc.data.image_folder import image_folder
from amc.data.synthetic import synthetic

__all__ = [
    "DataSplits",
    "DatasetError",
    "ImageTensors",
    "cifar10",
    "fashion_mnist",
    "image_folder",
    "split_reward_val",
    "synthetic",
]
