"""The model zoo (every builder takes ``in_channels`` and ``num_classes``) and the resolution of other model builders.

Zoo builders are named ``resnet20`` or ``amc.models.resnet20`` (or their defining path). Other ``nn.Module``
factories are named by import path (``package.module.function``) and are imported only when the caller allows them:
``allow`` lists module or attribute prefixes, matched on whole dotted components. A name read from a file
(checkpoint, plan) must never choose code to run unless the user said so.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
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

# Every spelling of a zoo builder a config or checkpoint uses: ``resnet20``, ``amc.models.resnet20`` (conf/model/*.yaml,
# so every trained checkpoint) and its defining path ``amc.models.resnet.resnet20``. A dict lookup, never an import.
_ZOO_PATHS: dict[str, Callable[..., nn.Module]] = {
    spelling: fn
    for name, fn in ZOO.items()
    for spelling in (name, f"{__name__}.{name}", f"{fn.__module__}.{fn.__qualname__}")
}

__all__ = ["ZOO", "TargetNotAllowedError", "accepted_io_args", "build_model", "check_target", "resolve_target", *ZOO]


class TargetNotAllowedError(ValueError):
    """A model name is neither a zoo name nor under an import path the caller allowed."""


def _components(name: str, what: str) -> list[str]:
    parts = name.split(".")
    if not all(p.isidentifier() for p in parts):
        raise ValueError(f"{what} {name!r} is not a dotted import path such as 'pkg.module' or 'pkg.module.fn'")
    return parts


def _is_allowed(target: str, allow: Sequence[str]) -> bool:
    """``target`` is a zoo name or starts with one of ``allow`` on whole dotted components; nothing is imported."""
    if target in _ZOO_PATHS:
        return True
    parts = target.split(".")
    if not all(p.isidentifier() for p in parts):
        return False
    for prefix in allow:
        if not isinstance(prefix, str):
            raise TypeError(f"allow entries must be import prefixes (str), got {prefix!r}")
        p = _components(prefix, "allowed model prefix")
        if parts[: len(p)] == p:
            return True
    return False


def check_target(target: object, allow: Sequence[str] = ()) -> None:
    """Refuse ``target`` unless it is a zoo name or under an ``allow`` prefix, saying how to allow it.

    ``allow=["pkg.models"]`` allows ``pkg.models.resnet.make`` but not ``pkg.modelsX.f``. Nothing is imported.
    """
    if isinstance(allow, str):
        raise TypeError(f"allow must be a list of import prefixes, not the string {allow!r}; use [{allow!r}]")
    if isinstance(target, str) and _is_allowed(target, allow):
        return
    module = target.rpartition(".")[0] if isinstance(target, str) else ""
    how = (f"if you trust it, allow it with model_allow=[{module}] on the command line or in the config "
           f"(allow=[{module!r}] in Python)" if module else "use a zoo name or an allowed import path 'pkg.module.fn'")
    allowed = f" (allowed: {list(allow)})" if allow else ""
    raise TargetNotAllowedError(
        f"model {target!r} is neither a zoo model ({', '.join(ZOO)}, also as amc.models.<name>) nor under an allowed "
        f"import path{allowed}; {how}")


def resolve_target(target: str, *, allow: Sequence[str] = ()) -> Callable[..., Any]:
    """A zoo builder, or the attribute ``package.module.attr`` if it is under an ``allow`` prefix.

    The check comes before any import, so a refused name runs no module code. No code string is evaluated.
    """
    check_target(target, allow)
    if target in _ZOO_PATHS:
        return _ZOO_PATHS[target]
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


def accepted_io_args(fn: Callable[..., Any]) -> set[str]:
    """Which of ``in_channels`` / ``num_classes`` the builder ``fn`` takes (by name, or through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature: pass both, the call says if that is wrong
        return {"in_channels", "num_classes"}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {"in_channels", "num_classes"}
    return {"in_channels", "num_classes"} & set(params)


def build_model(target: str, *, in_channels: int, num_classes: int, allow: Sequence[str] = (), **kwargs: Any) -> nn.Module:
    """Build a model by zoo name or allowed import path.

    The builder gets ``in_channels`` and ``num_classes`` when its signature takes them (a third-party class such as
    ``MyNet(width=2)`` need not); kwargs given explicitly win. Callers check the output width against the data.
    """
    fn = resolve_target(target, allow=allow)
    io = {"in_channels": in_channels, "num_classes": num_classes}
    io = {k: v for k, v in io.items() if k in accepted_io_args(fn) and k not in kwargs}
    try:
        model = fn(**io, **kwargs)
    except TypeError as e:
        raise TypeError(f"model {target!r} could not be built with {sorted(io)} and {kwargs}: {e}") from e
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {target!r} returned {type(model).__name__}, expected an nn.Module")
    return model
