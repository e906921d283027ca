"""The model zoo; every builder takes ``in_channels`` and ``num_classes``.

Any other ``nn.Module`` factory can be named by its import path (``package.module.function``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from amc.models.mobilenet import mobilenet_v1, mobilenet_v2
from amc.models.resnet import plain20, resnet20, resnet32, resnet56
from amc.models.vgg import vgg16

ZOO: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "plain20": plain20,
    "vgg16": vgg16,
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
}

__all__ = ["ZOO", "build_model", "resolve_target", *ZOO]


def resolve_target(target: str) -> Callable[..., Any]:
    """Import ``package.module.attr`` (or a zoo name) without evaluating any code string."""
    if target in ZOO:
        return ZOO[target]
    module_name, _, attr = target.rpartition(".")
    if not module_name:
        raise ValueError(f"unknown model {target!r}: use a zoo name ({', '.join(ZOO)}) or an import path 'pkg.module.fn'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import module {module_name!r} for model {target!r}: {e}") from e
    if not hasattr(module, attr):
        raise ValueError(f"module {module_name!r} has no attribute {attr!r} (model {target!r})")
    return getattr(module, attr)


def build_model(target: str, *, in_channels: int, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a model by zoo name or import path; the builder must accept in_channels and num_classes."""
    fn = resolve_target(target)
    try:
        model = fn(in_channels=in_channels, num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise TypeError(f"model {target!r} could not be built with in_channels, num_classes and {kwargs}: {e}") from e
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {target!r} returned {type(model).__name__}, expected an nn.Module")
    return model
