"""Writing one sample: rates derived from the previous sample, then every row in one statement.

The hot path of ingest, so it talks to psycopg directly with server-side binding and
prepared statements: one query reads the previous sample (with its disks), one
statement writes the snapshot, its GPU and disk rows and the server's bookkeeping
(data-modifying CTEs), all inside the request's transaction.
"""

from __future__ import annotations

import json
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
HOST_COLUMNS = catalogue.names(catalogue.columns("host", derived=False))
DERIVED_COLUMNS = catalogue.names(catalogue.columns("host", derived=True))
HOST_DERIVED = catalogue.block("host", derived=True)
# Per device block: (column, PostgreSQL array type) for unnest(), one statement whatever the
# device count; the metrics ingest derives; the counters they derive from.
DEVICE_BLOCKS = tuple(catalogue.DEVICE_KEYS)
DEVICE_COLUMNS = {
    b: (catalogue.DEVICE_KEYS[b], *((m.name, m.sql) for m in catalogue.columns(b))) for b in DEVICE_BLOCKS
}
DEVICE_DERIVED = {b: catalogue.block(b, derived=True) for b in DEVICE_BLOCKS}
DEVICE_COUNTERS = {b: tuple(dict.fromkeys(m.derived[1] for m in DEVICE_DERIVED[b])) for b in DEVICE_BLOCKS}
TABLES = {"gpu": "monitoring_gpusample", "disk": "monitoring_disksample"}
# The GPU events a sample carries, stored once each in their own table.
XID_COLUMNS = (("gpu_index", "smallint"), ("xid", "integer"), ("occurred_at", "timestamptz"))


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
{_unnest_insert("gpus", TABLES["gpu"], DEVICE_COLUMNS["gpu"])},
{_unnest_insert("disks", TABLES["disk"], DEVICE_COLUMNS["disk"])},
{_unnest_insert("xids", "monitoring_xiderror", XID_COLUMNS)},
{server_counters.INGEST_CTES}
SELECT id FROM snap
"""

HOST_COUNTERS = catalogue.counters("host")


def _device_counters(block: str) -> str:
    """One device block's counters at the previous sample, as the text of a JSON list of
    [key, counter, ...] (Django's connection reads jsonb as text)."""
    key = catalogue.DEVICE_KEYS[block][0]
    values = ", ".join(f"d.{c}" for c in (key, *DEVICE_COUNTERS[block]))
    return (
        f"(SELECT jsonb_agg(jsonb_build_array({values}))::text FROM {TABLES[block]} d "
        "WHERE d.server_id = %(server)s AND d.collected_at = s.collected_at "
        # Constant bounds as well, so that TimescaleDB opens only the chunks in range.
        "AND d.collected_at < %(at)s AND d.collected_at >= %(since)s)"
    )


PREVIOUS_SQL = f"""
SELECT s.collected_at, {", ".join(f"s.{c}" for c in HOST_COUNTERS)},
       {", ".join(_device_counters(b) for b in DEVICE_BLOCKS)}
FROM monitoring_snapshot s
WHERE s.server_id = %(server)s AND s.collected_at < %(at)s AND s.collected_at >= %(since)s
ORDER BY s.collected_at DESC LIMIT 1
"""

# The figures the ingest response's snapshot echoes, as the catalogue names them there.
ECHOED = tuple(m for m in catalogue.block("host") if m.echo)
STORED_SQL = f"""
SELECT id, bottleneck_label, {", ".join(m.name for m in ECHOED)}
FROM monitoring_snapshot WHERE server_id = %(server)s AND collected_at = %(at)s
"""


@dataclass
class Previous:
    collected_at: datetime
    host: dict  # the host counters
    devices: dict[str, dict]  # per device block, device key: its counters


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
        gpus = derive_device_fields("gpu", sample.gpus, previous, at)
        disks = derive_device_fields("disk", sample.disks, previous, at)
        derived = derive_snapshot_fields(sample.host, {"gpu": gpus, "disk": disks}, previous, at)
        interval = (at - previous.collected_at).total_seconds() if previous else None
        params = {"server": server_id, "at": at, "now": now, "interval": interval, **sample.host, **derived}
        params.update(_arrays("gpus", DEVICE_COLUMNS["gpu"], gpus))
        params.update(_arrays("disks", DEVICE_COLUMNS["disk"], disks))
        params.update(_arrays("xids", XID_COLUMNS, xid_rows(gpus)))
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
            snapshot = {"id": row[0], "bottleneck": None, **{m.echo: params[m.name] for m in ECHOED}}
        else:
            # Already stored: answer with what was stored the first time.
            cursor.execute(STORED_SQL, {"server": server_id, "at": at}, prepare=True)
            snapshot = dict(zip(("id", "bottleneck", *(m.echo for m in ECHOED)), cursor.fetchone()))
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


def xid_rows(gpus: list[dict]) -> list[dict]:
    return [
        {"gpu_index": gpu["gpu_index"], "xid": event["xid"], "occurred_at": event["at"]}
        for gpu in gpus
        for event in gpu.get("xid_errors") or ()
    ]


def _previous(cursor: psycopg.Cursor, server_id: int, at: datetime) -> Previous | None:
    """The newest earlier sample close enough to turn counters into rates, with its devices'."""
    since = at - timedelta(seconds=settings.MONITORING_RATE_MAX_GAP_SECONDS)
    cursor.execute(PREVIOUS_SQL, {"server": server_id, "at": at, "since": since}, prepare=True)
    row = cursor.fetchone()
    if row is None:
        return None
    host_end = 1 + len(HOST_COUNTERS)
    devices = {
        block: {item[0]: dict(zip(DEVICE_COUNTERS[block], item[1:])) for item in json.loads(found or "[]")}
        for block, found in zip(DEVICE_BLOCKS, row[host_end:])
    }
    return Previous(row[0], dict(zip(HOST_COUNTERS, row[1:host_end])), devices)


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
    if not derived:
        return rows
    seconds = (at - previous.collected_at).total_seconds() if previous else 0.0
    key = catalogue.DEVICE_KEYS[block][0]
    before = previous.devices[block] if previous else {}
    return [
        {**row, **{m.name: _from_counter(m, row, before.get(row[key], {}), seconds) for m in derived}} for row in rows
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
