"""Wall time of a run's stages (set-up, the policy, final evaluation, comparison), logged as each ends and kept for
the summary, so a user sees where a command spends its time."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class StageClock:
    """Named stages timed in order: ``with clock.stage("set-up"): ...``; ``clock.seconds`` maps name -> seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            log.info("%s took %.1f s", name, self.seconds[name])

    def summary(self) -> str:
        """One line: every stage's seconds and the total."""
        parts = ", ".join(f"{name} {s:.1f} s" for name, s in self.seconds.items())
        return f"{parts}; total {sum(self.seconds.values()):.1f} s"
