"""Reconstruction statistics of a checkpoint, computed once and reused from an on-disk cache (set-up of amc.apply)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from amc.data.base import DataSplits
from amc.pruning.groups import PrunableNetwork
from amc.pruning.reconstruction import Reconstructor, calibrated_layers
from amc.runs.cache import cached_tensors

log = logging.getLogger(__name__)


def calibrate(net: PrunableNetwork, data: DataSplits, *, checksum: str, data_key: dict[str, Any],
              cache_dir: str | Path | None, num_images: int, positions_per_image: int, batch_size: int, ridge: float,
              seed: int, device: torch.device) -> Reconstructor:
    """:meth:`Reconstructor.calibrate`, read from ``cache_dir`` when this checkpoint (``checksum``) was calibrated
    before on the same data, layers, images, positions, seed and device (None: always computed, never stored); its
    ``calibration_seconds`` is 0 when read from the cache."""
    key = {"checkpoint_checksum": checksum, "data": data_key, "layers": calibrated_layers(net),
           "num_images": num_images, "positions_per_image": positions_per_image, "batch_size": batch_size,
           "seed": seed, "device": torch.device(device).type, "torch": torch.__version__}

    def compute() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return Reconstructor.calibrate(net, data, num_images=num_images, positions_per_image=positions_per_image,
                                       batch_size=batch_size, seed=seed, ridge=ridge, device=device).to_tensors()

    tensors, info, path = cached_tensors(cache_dir, "calibration", key, compute)
    if path is not None:
        log.info("calibration statistics from the cache (computed before): %s", path)
    return Reconstructor.from_tensors({k: v.to(device) for k, v in tensors.items()}, info, ridge=ridge,
                                      seconds=0.0 if path is not None else None)
