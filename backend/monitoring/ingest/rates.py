"""What ingest derives from a sample and the one before it, as the catalogue says: rates of
counters, amounts since the previous sample, busy percentages, and sums or maxima over devices.
Pure functions; store.py reads the previous sample and writes the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .. import catalogue

HOST_DERIVED = catalogue.block("host", derived=True)
DEVICE_DERIVED = {b: catalogue.block(b, derived=True) for b in catalogue.DEVICE_KEYS}


@dataclass
class Previous:
    collected_at: datetime
    host: dict  # the host counters
    devices: dict[str, dict]  # per device block, device key: its counters


def rate(current: float | None, before: float | None, seconds: float) -> float | None:
    """Per-second rate of a counter; None when unknown or when it went backwards (a reboot)."""
    if current is None or before is None or seconds <= 0 or current < before:
        return None
    return (current - before) / seconds


def _from_counter(metric: catalogue.Metric, now: dict, before: dict, seconds: float) -> float | None:
    """What the catalogue derives from a counter: per second; the amount since the previous
    sample (delta); or (busy milliseconds per second / 10) the percent of the time a device was busy."""
    how, counter = metric.derived
    per_second = rate(now.get(counter), before.get(counter), seconds)
    if per_second is None:
        return None
    if how == "delta":
        return per_second * seconds
    if how == "busy":
        return min(100.0, per_second / 10.0)
    return per_second


def derive_device_fields(block: str, rows: list[dict], previous: Previous | None, at: datetime) -> list[dict]:
    """A device block's rows with the metrics ingest derives from the previous sample's counters."""
    derived = DEVICE_DERIVED[block]
    seconds = (at - previous.collected_at).total_seconds() if previous else 0.0
    key = catalogue.DEVICE_KEYS[block][0]
    before = previous.devices[block] if previous else {}
    return [
        {
            **row,
            "collected_at": at,
            **{m.name: _from_counter(m, row, before.get(row[key], {}), seconds) for m in derived},
        }
        for row in rows
    ]


def _over_devices(how: str, values: list) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    # The busiest device for "max": one saturated disk stalls whatever reads from it.
    return sum(present) if how == "sum" else max(present)


def derive_snapshot_fields(host: dict, devices: dict[str, list[dict]], previous: Previous | None, at: datetime) -> dict:
    """The host's derived figures, as the catalogue defines them."""
    seconds = (at - previous.collected_at).total_seconds() if previous else 0.0
    derived = {}
    for metric in HOST_DERIVED:
        how, *source = metric.derived
        if how in ("rate", "busy", "delta"):
            derived[metric.name] = _from_counter(metric, host, previous.host if previous else {}, seconds)
        elif how == "count":
            derived[metric.name] = len(devices[source[0]])
        else:
            derived[metric.name] = _over_devices(how, [row[source[1]] for row in devices[source[0]]])
    return derived
