"""Writing one sample: rates derived from the previous sample, then every row in one statement.

The hot path of ingest, so it talks to psycopg directly with server-side binding and
prepared statements: one query reads the previous sample (with its disks), one
statement writes the snapshot, its GPU and disk rows and the server's bookkeeping
(data-modifying CTEs), all inside the request's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import connection, transaction
from psycopg.types.json import Jsonb

from . import catalogue, server_counters
from .validation import Sample

# Columns come from the catalogue: what the agent sends, then what ingest derives.
HOST_COLUMNS = catalogue.names(catalogue.block("host", derived=False))
DERIVED_COLUMNS = catalogue.names(catalogue.block("host", derived=True))
# (column, PostgreSQL array type) for unnest(): one statement whatever the device count.
GPU_COLUMNS = (catalogue.DEVICE_KEYS["gpu"], *((m.name, m.sql) for m in catalogue.block("gpu")))
DISK_COUNTERS = catalogue.counters("disk")
DISK_COLUMNS = (catalogue.DEVICE_KEYS["disk"], *((m.name, m.sql) for m in catalogue.block("disk")))


def _unnest_insert(name: str, table: str, columns) -> str:
    names = ", ".join(c for c, _ in columns)
    arrays = ", ".join(f"%({name}_{c})s::{t}[]" for c, t in columns)
    return (
        f"{name} AS (INSERT INTO {table} (server_id, collected_at, {names}) "
        f"SELECT %(server)s, %(at)s, * FROM unnest({arrays}) WHERE EXISTS (SELECT FROM snap) "
        "ON CONFLICT DO NOTHING)"
    )


_SNAPSHOT_COLUMNS = HOST_COLUMNS + DERIVED_COLUMNS
WRITE_SQL = f"""
WITH snap AS (
    INSERT INTO monitoring_snapshot (server_id, collected_at, received_at, {", ".join(_SNAPSHOT_COLUMNS)})
    VALUES (%(server)s, %(at)s, %(now)s, {", ".join(f"%({c})s" for c in _SNAPSHOT_COLUMNS)})
    ON CONFLICT (server_id, collected_at) DO NOTHING
    RETURNING id
),
{_unnest_insert("gpus", "monitoring_gpusample", GPU_COLUMNS)},
{_unnest_insert("disks", "monitoring_disksample", DISK_COLUMNS)},
{server_counters.INGEST_CTES}
SELECT id FROM snap
"""

PREVIOUS_SQL = f"""
SELECT s.collected_at, s.network_rx_bytes_total, s.network_tx_bytes_total,
       d.device, {", ".join(f"d.{c}" for c in DISK_COUNTERS)}
FROM (
    SELECT collected_at, network_rx_bytes_total, network_tx_bytes_total
    FROM monitoring_snapshot
    WHERE server_id = %(server)s AND collected_at < %(at)s AND collected_at >= %(since)s
    ORDER BY collected_at DESC LIMIT 1
) s
LEFT JOIN monitoring_disksample d
    ON d.server_id = %(server)s AND d.collected_at = s.collected_at
    AND d.collected_at < %(at)s AND d.collected_at >= %(since)s
"""

STORED_SQL = """
SELECT id, bottleneck_label, cpu_usage_percent, gpu_top_util_percent, disk_util_percent
FROM monitoring_snapshot WHERE server_id = %(server)s AND collected_at = %(at)s
"""


@dataclass
class Previous:
    collected_at: datetime
    network_rx_bytes_total: int | None
    network_tx_bytes_total: int | None
    disks: dict[str, dict]


@contextmanager
def prepared_cursor() -> Iterator[psycopg.Cursor]:
    """A cursor on Django's connection that binds parameters server-side, so that the hot
    path's statements are parsed and planned once per connection (Django's own cursors bind
    client-side). psycopg's errors come out as Django's, as from Django's cursors."""
    with connection.wrap_database_errors:
        # As Django's own cursors do: a connection that broke (a database restart) is replaced.
        connection.close_if_health_check_failed()
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            yield cursor


def store_sample(server_id: int, sample: Sample, agent: dict, now: datetime) -> tuple[dict, bool]:
    """Write one sample atomically; returns (the snapshot as the ingest API shows it, created)."""
    at = sample.collected_at
    with transaction.atomic(), prepared_cursor() as cursor:
        previous = _previous(cursor, server_id, at)
        disks = derive_disk_rates(sample.disks, previous, at)
        derived = derive_snapshot_fields(sample, disks, previous, at)
        interval = (at - previous.collected_at).total_seconds() if previous else None
        params = {"server": server_id, "at": at, "now": now, "interval": interval, **sample.host, **derived}
        params.update(_arrays("gpus", GPU_COLUMNS, sample.gpus))
        params.update(_arrays("disks", DISK_COLUMNS, disks))
        labels = agent.get("labels")
        params.update(
            agent_version=agent.get("version"),
            agent_hostname=agent.get("hostname"),
            agent_platform=agent.get("platform"),
            agent_python=agent.get("python"),
            agent_labels=Jsonb(labels) if labels is not None else None,
        )
        cursor.execute(WRITE_SQL, params, prepare=True)
        row = cursor.fetchone()
        if row is not None:
            snapshot = {
                "id": row[0],
                "bottleneck": None,
                "cpu_usage_percent": sample.host["cpu_usage_percent"],
                "top_gpu_util_percent": derived["gpu_top_util_percent"],
                "disk_util_percent": derived["disk_util_percent"],
            }
        else:
            # Already stored: answer with what was stored the first time.
            cursor.execute(STORED_SQL, {"server": server_id, "at": at}, prepare=True)
            stored = cursor.fetchone()
            snapshot = dict(
                zip(("id", "bottleneck", "cpu_usage_percent", "top_gpu_util_percent", "disk_util_percent"), stored)
            )
    snapshot["collected_at"] = at.isoformat()
    return snapshot, row is not None


def _arrays(prefix: str, columns, rows: list[dict]) -> dict:
    params = {}
    for column, kind in columns:
        values = [row[column] for row in rows]
        if kind == "jsonb":
            values = [None if v is None else Jsonb(v) for v in values]
        params[f"{prefix}_{column}"] = values
    return params


def _previous(cursor: psycopg.Cursor, server_id: int, at: datetime) -> Previous | None:
    """The newest earlier sample close enough to turn counters into rates, with its disks."""
    since = at - timedelta(seconds=settings.MONITORING_RATE_MAX_GAP_SECONDS)
    cursor.execute(PREVIOUS_SQL, {"server": server_id, "at": at, "since": since}, prepare=True)
    rows = cursor.fetchall()
    if not rows:
        return None
    first = rows[0]
    disks = {row[3]: dict(zip(DISK_COUNTERS, row[4:])) for row in rows if row[3] is not None}
    return Previous(first[0], first[1], first[2], disks)


def rate(current: int | None, before: int | None, seconds: float) -> float | None:
    """Per-second rate of a counter; None when unknown or when it went backwards (a reboot)."""
    if current is None or before is None or seconds <= 0 or current < before:
        return None
    return (current - before) / seconds


def derive_disk_rates(disks: list[dict], previous: Previous | None, at: datetime) -> list[dict]:
    seconds = (at - previous.collected_at).total_seconds() if previous else 0.0
    before_by_device = previous.disks if previous else {}
    rows = []
    for disk in disks:
        before = before_by_device.get(disk["device"], {})
        busy_ms = rate(disk["busy_time_ms_total"], before.get("busy_time_ms_total"), seconds)
        rows.append(
            {
                **disk,
                "read_bps": rate(disk["read_bytes_total"], before.get("read_bytes_total"), seconds),
                "write_bps": rate(disk["write_bytes_total"], before.get("write_bytes_total"), seconds),
                "read_iops": rate(disk["read_count_total"], before.get("read_count_total"), seconds),
                "write_iops": rate(disk["write_count_total"], before.get("write_count_total"), seconds),
                # Busy milliseconds per second / 10 = percent of the time the device was busy.
                "util_percent": None if busy_ms is None else min(100.0, busy_ms / 10.0),
            }
        )
    return rows


def _sum(values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def derive_snapshot_fields(sample: Sample, disks: list[dict], previous: Previous | None, at: datetime) -> dict:
    seconds = (at - previous.collected_at).total_seconds() if previous else 0.0
    utils = [g["utilization_gpu_percent"] for g in sample.gpus if g["utilization_gpu_percent"] is not None]
    disk_utils = [d["util_percent"] for d in disks if d["util_percent"] is not None]
    return {
        "network_rx_bps": rate(
            sample.host["network_rx_bytes_total"], previous and previous.network_rx_bytes_total, seconds
        ),
        "network_tx_bps": rate(
            sample.host["network_tx_bytes_total"], previous and previous.network_tx_bytes_total, seconds
        ),
        "disk_read_bps": _sum(d["read_bps"] for d in disks),
        "disk_write_bps": _sum(d["write_bps"] for d in disks),
        # The busiest disk: one saturated device stalls whatever reads from it.
        "disk_util_percent": max(disk_utils) if disk_utils else None,
        "gpu_count": len(sample.gpus),
        "gpu_top_util_percent": max(utils) if utils else None,
    }
