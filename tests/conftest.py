"""Shared fixtures: one torch thread (tiny models are faster, and parallel jobs don't oversubscribe); an AVX2 CPU
as far as the channel grid goes (``round_to=auto`` = 8 whatever the host: a budget a test reaches on one machine is
reachable on every one; tests/test_runtime.py covers the grid of each CPU)."""

from __future__ import annotations

import pytest
import torch

from amc.measure import runtime


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def _avx2_grid():
    with pytest.MonkeyPatch.context() as patch:  # session-wide: module-scoped fixtures search too
        patch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx", "avx2", "fma"}))
        yield
