"""Resident memory of this process, and handing freed heap memory back to the operating system.

Each search episode deep-copies and prunes the model; glibc's allocator keeps the freed blocks of those copies
in its arenas, so a long search's resident memory climbs (ResNet-20: 0.5 -> 1.15 GB over 70 episodes) although
nothing leaks. ``release_memory()`` once per episode (a collection, then ``malloc_trim(0)``) keeps it flat.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import os
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)


def rss_bytes() -> int:
    """Current resident set size of this process in bytes (Linux: /proc/self/statm).

    Elsewhere falls back to the peak resident size from ``getrusage`` (an upper bound of the current one), and to
    0 where neither exists (Windows without /proc).
    """
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB elsewhere


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` from the running process, or None (musl, macOS, Windows)."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def release_memory(*, generation: int = 1) -> bool:
    """Collect garbage up to ``generation``, then return the allocator's free heap memory to the OS.

    Returns True if ``malloc_trim`` ran. The default young-generation collection is cheap (well under a
    millisecond; a full one takes 0.1-1 s in a process that imported torch and SB3) and enough per episode: the
    episode's model copy is freed by reference counting, what keeps it resident is the allocator, which the trim
    fixes. Safe anywhere: a no-op (False) where glibc's ``malloc_trim`` is unavailable; never raises.
    """
    try:
        gc.collect(generation)
        trim = _malloc_trim()
        if trim is None:
            return False
        trim(0)
        return True
    except Exception as e:  # noqa: BLE001 - releasing memory is best effort and must never break a search
        log.debug("release_memory failed: %s", e)
        return False
