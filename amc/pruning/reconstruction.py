"""Least-squares weight reconstruction of the layers that consume pruned channels (AMC, He et al. 2017).

Calibration features come from the *original* model at random spatial positions. The normal-equation
statistics X^T X and X^T Y are accumulated once per consuming layer, so each prune only solves a small
system on the kept rows: the per-episode cost no longer depends on the number of calibration samples.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from amc.data.base import DataSplits
from amc.pruning.groups import PrunableNetwork
from amc.pruning.surgery import pruned_layer_idxs

log = logging.getLogger(__name__)


@dataclass
class LayerStatistics:
    """Normal-equation statistics of one layer: xtx (D, D) and xty (D, out), D = in_channels * kernel area."""

    xtx: torch.Tensor
    xty: torch.Tensor
    kernel_area: int
    rows: int = 0


def _reconstructable(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1)


def calibrated_layers(net: PrunableNetwork) -> list[str]:
    """The layers whose statistics a calibration collects: every consumer of a group but grouped convs."""
    return sorted({c for g in net.groups for c in g.consumers if _reconstructable(net.modules[c])})


class Reconstructor:
    """Holds calibration statistics of every consuming layer and refits pruned copies of the model."""

    def __init__(self, stats: dict[str, LayerStatistics], ridge: float = 1e-4, seconds: float = 0.0) -> None:
        self.stats = stats
        self.ridge = ridge
        self.calibration_seconds = seconds

    @classmethod
    @torch.no_grad()
    def calibrate(
        cls,
        net: PrunableNetwork,
        data: DataSplits,
        *,
        num_images: int = 3000,
        positions_per_image: int = 10,
        batch_size: int = 100,
        seed: int = 0,
        ridge: float = 1e-4,
        device: torch.device | str = "cpu",
    ) -> Reconstructor:
        """Run the original model on ``num_images`` training images and accumulate per-layer statistics."""
        if num_images < 1 or positions_per_image < 1:
            raise ValueError(f"num_images and positions_per_image must be >= 1, got {num_images}, {positions_per_image}")
        start = time.perf_counter()
        layers = calibrated_layers(net)
        skipped = sorted({c for g in net.groups for c in g.consumers} - set(layers))
        if skipped:
            log.warning("no reconstruction for grouped convs %s (kept weights are used as they are)", skipped)
        gen = torch.Generator().manual_seed(seed)
        stats: dict[str, LayerStatistics] = {}

        def hook(name: str):
            def fn(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
                x, y = _sample_rows(module, inputs[0], output, positions_per_image, gen)
                if name not in stats:
                    area = module.kernel_size[0] * module.kernel_size[1] if isinstance(module, nn.Conv2d) else 1
                    d = x.shape[1]
                    stats[name] = LayerStatistics(x.new_zeros(d, d, dtype=torch.float64),
                                                  x.new_zeros(d, y.shape[1], dtype=torch.float64), area)
                s = stats[name]  # float32 products per batch, float64 running sums
                s.xtx += (x.T @ x).double()
                s.xty += (x.T @ y).double()
                s.rows += len(x)
            return fn

        hooks = [net.modules[n].register_forward_hook(hook(n)) for n in layers]
        try:
            net.model.to(device)
            for x, _ in data.batches("train", batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                                     limit=num_images, device=device):
                net.model(x)
        finally:
            for h in hooks:
                h.remove()
        seconds = time.perf_counter() - start
        log.info("calibration: %d layers, %d images x %d positions in %.1fs", len(stats), num_images,
                 positions_per_image, seconds)
        return cls(stats, ridge, seconds)

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The statistics as flat tensors (``<layer>.xtx``, ``<layer>.xty``) and plain data (kernel area, rows)."""
        tensors = {f"{n}.{part}": getattr(s, part) for n, s in self.stats.items() for part in ("xtx", "xty")}
        info = {n: {"kernel_area": s.kernel_area, "rows": s.rows} for n, s in self.stats.items()}
        return tensors, {"layers": info, "seconds": self.calibration_seconds}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], info: dict[str, Any], ridge: float = 1e-4,
                     seconds: float | None = None) -> Reconstructor:
        """The inverse of :meth:`to_tensors` (``seconds``: the calibration time to report, default the recorded one)."""
        stats = {n: LayerStatistics(tensors[f"{n}.xtx"], tensors[f"{n}.xty"], int(m["kernel_area"]), int(m["rows"]))
                 for n, m in info["layers"].items()}
        return cls(stats, ridge, float(info.get("seconds", 0.0)) if seconds is None else seconds)

    @property
    def nbytes(self) -> int:
        return sum(s.xtx.numel() * s.xtx.element_size() + s.xty.numel() * s.xty.element_size() for s in self.stats.values())

    @torch.no_grad()
    def reconstruct(self, pruned: nn.Module, net: PrunableNetwork, kept: Sequence[torch.Tensor]) -> list[str]:
        """Refit, in place, every layer of ``pruned`` whose input channels were pruned; returns their names."""
        removed = pruned_layer_idxs(net, kept)
        modules = dict(pruned.named_modules())
        refit = []
        for name, s in self.stats.items():
            drop_in = set(removed.get((name, "in"), ()))
            if not drop_in:
                continue
            original = net.modules[name]
            c_in = original.in_channels if isinstance(original, nn.Conv2d) else original.in_features
            c_out = s.xty.shape[1]
            keep_in = torch.tensor(sorted(set(range(c_in)) - drop_in))
            keep_out = torch.tensor(sorted(set(range(c_out)) - set(removed.get((name, "out"), ()))))
            rows = (keep_in.view(-1, 1) * s.kernel_area + torch.arange(s.kernel_area)).flatten()
            a = s.xtx[rows][:, rows]
            b = s.xty[rows][:, keep_out]
            a = a + torch.eye(len(rows), dtype=a.dtype) * (self.ridge * a.diagonal().mean().clamp_min(1e-12))
            w = torch.linalg.solve(a, b).T  # (out, kept_in * area)
            target = modules[name].weight
            target.copy_(w.reshape(target.shape).to(target.dtype))
            refit.append(name)
        return refit


def _sample_rows(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, positions: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, bias-free outputs) of ``positions`` random output positions per image, as rows."""
    bias = module.bias
    if isinstance(module, nn.Linear):
        x2, y2 = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
        return x2, (y2 - bias if bias is not None else y2)
    # gather only the sampled patches (a full im2col would cost far more than the forward pass itself)
    n, c = x.shape[:2]
    out_h, out_w = y.shape[-2:]
    count = min(positions, out_h * out_w)
    pos = torch.randint(0, out_h * out_w, (n, count), generator=gen).to(x.device)
    oy, ox = pos // out_w, pos % out_w
    (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
    if module.padding == "same":
        ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    elif module.padding == "valid":
        ph, pw = 0, 0
    else:
        ph, pw = module.padding
    xp = F.pad(x, (pw, pw, ph, ph))
    rows = (oy * sh).unsqueeze(-1) + torch.arange(kh, device=x.device) * dh  # (N, P, kh)
    cols = (ox * sw).unsqueeze(-1) + torch.arange(kw, device=x.device) * dw  # (N, P, kw)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    patches = xp[batch, :, rows.unsqueeze(-1), cols.unsqueeze(-2)]  # (N, P, kh, kw, C)
    xs = patches.permute(0, 1, 4, 2, 3).reshape(n * count, c * kh * kw)
    ys = y.flatten(2).gather(2, pos.unsqueeze(1).expand(n, y.shape[1], count)).transpose(1, 2).reshape(n * count, -1)
    if bias is not None:
        ys = ys - bias
    return xs, ys
