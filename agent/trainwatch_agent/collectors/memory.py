"""Memory and swap, from psutil.virtual_memory() and psutil.swap_memory()."""

from __future__ import annotations

from typing import Any

import psutil

from trainwatch_agent import values


def collect() -> dict[str, Any]:
    sample: dict[str, Any] = {}
    try:
        memory = psutil.virtual_memory()
    except OSError:
        memory = None
    sample["memory_total_bytes"] = values.counter(getattr(memory, "total", None))
    sample["memory_used_bytes"] = values.counter(getattr(memory, "used", None))
    sample["memory_available_bytes"] = values.counter(getattr(memory, "available", None))
    sample["memory_percent"] = values.percent(getattr(memory, "percent", None))
    try:
        swap = psutil.swap_memory()
    except OSError:
        swap = None
    sample["swap_total_bytes"] = values.counter(getattr(swap, "total", None))
    sample["swap_used_bytes"] = values.counter(getattr(swap, "used", None))
    sample["swap_percent"] = values.percent(getattr(swap, "percent", None))
    return sample
