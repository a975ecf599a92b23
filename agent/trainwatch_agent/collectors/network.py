"""Network: bytes received and sent since boot, summed over every interface but loopback.

Totals, not rates: the server turns two consecutive totals into a rate, so a sample
replayed from the spool hours later still gives the right rate.
"""

from __future__ import annotations

from typing import Any

import psutil

from trainwatch_agent import values

SKIPPED_INTERFACES = frozenset({"lo"})


def collect() -> dict[str, Any]:
    try:
        interfaces = psutil.net_io_counters(pernic=True)
    except OSError:
        interfaces = {}
    if not interfaces:
        return {"network_rx_bytes_total": None, "network_tx_bytes_total": None}
    counted = [c for name, c in interfaces.items() if name not in SKIPPED_INTERFACES]
    return {
        "network_rx_bytes_total": values.counter(sum(c.bytes_recv for c in counted)),
        "network_tx_bytes_total": values.counter(sum(c.bytes_sent for c in counted)),
    }
