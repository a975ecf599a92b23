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
HOST_DERIVED = catalogue.block("host", derived=True)
DISK_DERIVED = catalogue.block("disk", derived=True)


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

HOST_COUNTERS = catalogue.counters("host")
PREVIOUS_SQL = f"""
SELECT s.collected_at, {", ".join(f"s.{c}" for c in HOST_COUNTERS)},
       d.device, {", ".join(f"d.{c}" for c in DISK_COUNTERS)}
FROM (
    SELECT collected_at, {", ".join(HOST_COUNTERS)}
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
    host: dict  # the host counters
    disks: dict[str, dict]  # device: its counters


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
    first, devices = rows[0], 1 + len(HOST_COUNTERS)
    disks = {row[devices]: dict(zip(DISK_COUNTERS, row[devices + 1 :])) for row in rows if row[devices] is not None}
    return Previous(first[0], dict(zip(HOST_COUNTERS, first[1:devices])), disks)


def rate(current: int | None, before: int | None, seconds: float) -> float | None:
    """Per-second rate of a counter; None when unknown or when it went backwards (a reboot)."""
    if current is None or before is None or seconds <= 0 or current < before:
        return None
    return (current - before) / seconds


def _from_counter(metric: catalogue.Metric, now: dict, before: dict, seconds: float) -> float | None:
    """A rate the catalogue derives from a counter: per second, or (busy milliseconds per
    second / 10) the percent of the time a device was busy."""
    how, counter = metric.derived
    per_second = rate(now.get(counter), before.get(counter), seconds)
    if how == "busy" and per_second is not None:
        return min(100.0, per_second / 10.0)
    return per_second


def derive_disk_rates(disks: list[dict], previous: Previous | None, at: datetime) -> list[dict]:
    seconds = (at - previous.collected_at).total_seconds() if previous else 0.0
    before_by_device = previous.disks if previous else {}
    return [
        {
            **disk,
            **{m.name: _from_counter(m, disk, before_by_device.get(disk["device"], {}), seconds) for m in DISK_DERIVED},
        }
        for disk in disks
    ]


def _over_devices(how: str, values: list) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    # The busiest device for "max": one saturated disk stalls whatever reads from it.
    return sum(present) if how == "sum" else max(present)


def derive_snapshot_fields(sample: Sample, disks: list[dict], previous: Previous | None, at: datetime) -> dict:
    """The host's derived figures, as the catalogue defines them."""
    seconds = (at - previous.collected_at).total_seconds() if previous else 0.0
    devices = {"gpu": sample.gpus, "disk": disks}
    derived = {}
    for metric in HOST_DERIVED:
        how, *source = metric.derived
        if how in ("rate", "busy"):
            derived[metric.name] = _from_counter(metric, sample.host, previous.host if previous else {}, seconds)
        elif how == "count":
            derived[metric.name] = len(devices[source[0]])
        else:
            derived[metric.name] = _over_devices(how, [row[source[1]] for row in devices[source[0]]])
    return derived
