"""When to try the server again after a failure: exponential backoff with jitter.

The n-th failure in a row waits base * 2**(n-1) seconds, capped, and then a random
share of its second half ("equal jitter"), so that many nodes coming back from the
same outage do not all knock at the same instant. A Retry-After from the server is a
floor: the agent never comes back sooner than the server asked.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        base: float = 1.0,
        cap: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.base = base
        self.cap = max(cap, base)
        self.failures = 0
        self.retry_at = 0.0
        self._clock = clock
        self._rng = rng or random.Random()

    @property
    def waiting(self) -> bool:
        """True while the last failure's wait has not run out."""
        return self.failures > 0 and self._clock() < self.retry_at

    def delay(self) -> float:
        """The wait before the next try, for the current number of failures in a row."""
        ceiling = min(self.cap, self.base * 2 ** min(self.failures - 1, 30))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def fail(self, retry_after: float | None = None) -> float:
        """Record a failure; returns the seconds until the next try."""
        self.failures += 1
        wait = self.delay()
        if retry_after is not None:
            wait = max(wait, retry_after)
        self.retry_at = self._clock() + wait
        return wait

    def succeed(self) -> None:
        self.failures = 0
        self.retry_at = 0.0
