"""A small on-disk cache of results keyed by everything that determines them (atomic writes; JSON for figures,
safetensors for tensors, so nothing read back is ever unpickled)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

log = logging.getLogger(__name__)


def _path(cache_dir: str | Path, kind: str, key: dict[str, Any], suffix: str) -> tuple[Path, Any]:
    """The cache file of ``key`` and the key as it reads back from JSON (what a stored file must hold)."""
    plain = json.loads(json.dumps(key, default=str))
    digest = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"{kind}-{digest}{suffix}", plain


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _store(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temporary file beside ``path``, then move it there: a concurrent run never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    write(tmp)
    tmp.replace(path)


def cached_json(cache_dir: str | Path | None, kind: str, key: dict[str, Any],
                compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], Path | None]:
    """``compute()``'s result for ``key``: read from ``cache_dir`` when an earlier call stored it (the path is
    returned), else computed now and stored (None returned). ``cache_dir`` None: always computed, never stored."""
    if cache_dir is None:
        return compute(), None
    path, plain = _path(cache_dir, kind, key, ".json")
    if path.is_file():
        try:
            record = json.loads(path.read_text())
            if record.get("key") == plain:
                return record["value"], path
        except (json.JSONDecodeError, KeyError):
            pass
        log.warning("cache file %s is unreadable or holds another key: computing again", path)
    value = compute()
    _store(path, lambda tmp: tmp.write_text(json.dumps({"key": key, "value": value, "stored": _now()}, indent=1,
                                                       default=str)))
    return value, None


def cached_tensors(cache_dir: str | Path | None, kind: str, key: dict[str, Any],
                   compute: Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]],
                   ) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path | None]:
    """Like :func:`cached_json` for ``compute() -> (tensors, info)``: tensors stored as safetensors, ``info`` (plain
    JSON data) and the key in its metadata. Returns (tensors, info, the cache file if read from it, else None)."""
    if cache_dir is None:
        return *compute(), None
    path, plain = _path(cache_dir, kind, key, ".safetensors")
    if path.is_file():
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            if json.loads(meta.get("key", "null")) == plain:
                return load_file(str(path)), json.loads(meta["info"]), path
        except (SafetensorError, OSError, json.JSONDecodeError, KeyError):
            pass
        log.warning("cache file %s is unreadable or holds another key: computing again", path)
    tensors, info = compute()
    _store(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                                       metadata={"key": json.dumps(plain), "info": json.dumps(info), "stored": _now()}))
    return tensors, info, None
