"""A small on-disk cache of JSON results keyed by everything that determines them (atomic writes, readable files)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def cached_json(cache_dir: str | Path | None, kind: str, key: dict[str, Any],
                compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], Path | None]:
    """``compute()``'s result for ``key``: read from ``cache_dir`` when an earlier call stored it (the path is
    returned), else computed now and stored (None returned). ``cache_dir`` None: always computed, never stored."""
    if cache_dir is None:
        return compute(), None
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"{kind}-{digest}.json"
    if path.is_file():
        try:
            record = json.loads(path.read_text())
            if record.get("key") == json.loads(json.dumps(key, default=str)):
                return record["value"], path
        except (json.JSONDecodeError, KeyError):
            pass
        log.warning("cache file %s is unreadable or holds another key: computing again", path)
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": key, "value": value, "stored": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                              indent=1, default=str))
    tmp.replace(path)  # atomic: a concurrent run never reads half a file
    return value, None
