"""CPU: busy shares measured between two samples, load averages, frequency, core counts.

Shares come from the deltas of psutil.cpu_times() between this sample and the one
before (the first call only primes), so each sample describes the whole interval,
not the instant it was taken.

- cpu_user_percent: user + nice
- cpu_system_percent: system + irq + softirq
- cpu_iowait_percent: iowait (idle while waiting for I/O)
- cpu_usage_percent: everything but idle and iowait (user, system and steal), as
  psutil.cpu_percent() and top count it; iowait is reported apart so that the
  server can tell an I/O-bound node from a CPU-bound one.
"""

from __future__ import annotations

from typing import Any

import psutil

from trainwatch_agent import values

# On Linux guest time is already included in user and nice; adding it again would count it twice.
_TOTAL_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


class CpuCollector:
    def __init__(self) -> None:
        self._previous: Any = None
        self._counts: tuple[int | None, int | None] | None = None

    def prime(self) -> None:
        self._previous = psutil.cpu_times()

    def collect(self) -> dict[str, Any]:
        times = psutil.cpu_times()
        shares = _shares(self._previous, times) if self._previous is not None else {}
        self._previous = times
        load = _load()
        logical, physical = self._core_counts()
        return {
            "cpu_usage_percent": shares.get("usage"),
            "cpu_user_percent": shares.get("user"),
            "cpu_system_percent": shares.get("system"),
            "cpu_iowait_percent": shares.get("iowait"),
            "cpu_load_1": load[0],
            "cpu_load_5": load[1],
            "cpu_load_15": load[2],
            "cpu_frequency_mhz": _frequency(),
            "cpu_count_logical": logical,
            "cpu_count_physical": physical,
        }

    def _core_counts(self) -> tuple[int | None, int | None]:
        # Counting physical cores walks the topology of every CPU: do it once.
        if self._counts is None:
            self._counts = (
                values.counter(psutil.cpu_count(logical=True)),
                values.counter(psutil.cpu_count(logical=False)),
            )
        return self._counts


def _shares(before: Any, after: Any) -> dict[str, float | None]:
    delta = {name: max(0.0, getattr(after, name, 0.0) - getattr(before, name, 0.0)) for name in _TOTAL_FIELDS}
    total = sum(delta.values())
    if total <= 0:
        return {}
    idle = delta["idle"] + delta["iowait"]
    return {
        "usage": values.percent(100.0 * (total - idle) / total),
        "user": values.percent(100.0 * (delta["user"] + delta["nice"]) / total),
        "system": values.percent(100.0 * (delta["system"] + delta["irq"] + delta["softirq"]) / total),
        "iowait": values.percent(100.0 * delta["iowait"] / total),
    }


def _load() -> tuple[float | None, float | None, float | None]:
    try:
        one, five, fifteen = psutil.getloadavg()
    except (OSError, AttributeError):
        return None, None, None
    return values.non_negative(one), values.non_negative(five), values.non_negative(fifteen)


def _frequency() -> float | None:
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        return None
    if freq is None or not freq.current:
        return None
    return values.non_negative(freq.current, digits=1)
