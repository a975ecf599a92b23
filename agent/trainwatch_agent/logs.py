"""Logging set-up, and a limiter so that a problem that repeats every sample is logged
once a minute with a count instead of 30 times."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # requests/urllib3 would log every retry and reconnect at WARNING/DEBUG; the agent says it itself.
    logging.getLogger("urllib3").setLevel(logging.ERROR)


class Limiter:
    """`ready(key)` is true at most once per `seconds` per key; `suppressed(key)` counts the others."""

    def __init__(self, seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def ready(self, key: str) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.seconds:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return False
        self._last[key] = now
        return True

    def suppressed(self, key: str) -> int:
        """How many times `ready(key)` said no since it last said yes (and reset that count)."""
        return self._skipped.pop(key, 0)

    def forget(self, key: str) -> None:
        self._last.pop(key, None)
        self._skipped.pop(key, None)
