"""A steady sampling schedule on the monotonic clock.

Tick k is due at start + k * interval, whatever each sample cost, so the schedule never
drifts. When a tick is missed (the machine was suspended, a sample took longer than an
interval), the schedule skips to the next tick still in the future instead of taking
the missed ones in a burst.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class Schedule:
    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._start = clock()
        self._tick = 0
        self.skipped = 0

    def next_due(self) -> float:
        """The monotonic time of the next tick, skipping any already past."""
        now = self._clock()
        self._tick += 1
        due = self._start + self._tick * self.interval
        if due < now:
            # Missed: jump to the first tick after now (not the ones in between).
            late_ticks = math.floor((now - self._start) / self.interval) + 1
            self.skipped += late_ticks - self._tick
            self._tick = late_ticks
            due = self._start + self._tick * self.interval
        return due

    def wait(self, stop: threading.Event) -> bool:
        """Sleep until the next tick; False when `stop` was set meanwhile."""
        due = self.next_due()
        return not stop.wait(max(0.0, due - self._clock()))
