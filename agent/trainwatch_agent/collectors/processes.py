"""How many processes the node runs."""

from __future__ import annotations

from typing import Any

import psutil

from trainwatch_agent import values


def collect() -> dict[str, Any]:
    try:
        count = len(psutil.pids())
    except OSError:
        count = None
    return {"process_count": values.counter(count)}
