"""BatchNorm folded into the preceding convolution, for a faster evaluation of an eval-mode model.

``conv_bn_pairs`` finds the (conv, bn) module names once, on the unpruned network (torch.fx); channel pruning keeps
module names, so ``fold_bn`` folds the same pairs in every pruned copy: ``w' = w * g / sqrt(v + eps)`` per output
channel and ``b' = (b - m) * g / sqrt(v + eps) + beta``, and the BN becomes an ``nn.Identity``. Exact up to float
rounding, in eval mode only (BN statistics fixed: fold after any BN recalibration).
"""

from __future__ import annotations

import logging

import torch
from torch import fx, nn

log = logging.getLogger(__name__)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv name, bn name)`` for every BatchNorm2d whose only input is a Conv2d (groups any) whose output feeds
    nothing else. Empty when the model does not trace with torch.fx (nothing is folded then)."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as e:  # noqa: BLE001  (any tracing failure: user models may do anything in forward)
        log.info("BN folding off: %s does not trace with torch.fx (%s: %s)", type(model).__name__, type(e).__name__, e)
        return []
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0] if node.args else None
        if (isinstance(src, fx.Node) and src.op == "call_module" and isinstance(modules.get(src.target), nn.Conv2d)
                and len(src.users) == 1):
            pairs.append((str(src.target), str(node.target)))
    return pairs


@torch.no_grad()
def fold_bn(model: nn.Module, pairs: list[tuple[str, str]]) -> nn.Module:
    """Fold each pair's BN into its conv, in place (the model must be in eval mode); returns ``model``."""
    if model.training:
        raise ValueError("fold_bn needs an eval-mode model (BN statistics fixed); call model.eval() first")
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if not isinstance(bn, nn.BatchNorm2d) or not bn.track_running_stats:
            continue  # already folded, or no running statistics to fold
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)
        parent_name, _, attr = bn_name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, nn.Identity())
    return model
