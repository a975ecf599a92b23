"""Writing samples: rates derived from the previous sample (rates.py), then every row in one statement.

The hot path of ingest, so it talks to psycopg directly with server-side binding and
prepared statements. One sample or a batch of them goes the same way: rates are derived in time
order (each sample from the one before it, in the batch or stored), and one statement writes
every snapshot, GPU, disk and XID row, the server's bookkeeping and the ranges of the workloads
its GPU processes belong to (data-modifying CTEs over arrays), all inside the request's
transaction.

The stored sample before the first: each web process keeps the counters of the newest sample it
wrote per server (an agent's keep-alive connection stays on one process); the server row keeps
them too (`latest_counters`, written by the same statement), for a process that does not (after a
restart, or behind a proxy that spreads an agent's requests over the processes): one small read
of that row. The statement writes only if that sample is still the server's newest (`guard`,
under the server row's lock); if not (another process wrote since) it writes nothing and returns
the newest sample's counters, and runs again with them. Only a late sample (older than the
server's newest) reads the stored sample before it from the hypertables. Either way the rates are
the same.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from datetime import datetime, timedelta

import msgspec
import psycopg
from django.conf import settings
from django.db import transaction
from psycopg.types.json import Jsonb

from .. import catalogue, workloads
from ..db import prepared_cursor
from . import counters
from .rates import DEVICE_DERIVED, Previous, derive_device_fields, derive_snapshot_fields
from .validation import Sample

# Columns come from the catalogue: what the agent sends, then what ingest derives.
HOST_COLUMNS = catalogue.names(catalogue.columns("host", derived=False))
DERIVED_COLUMNS = catalogue.names(catalogue.columns("host", derived=True))
# Per device block: (column, PostgreSQL array type) for unnest(), one statement whatever the
# device count; the metrics ingest derives; the counters they derive from.
DEVICE_BLOCKS = tuple(catalogue.DEVICE_KEYS)
DEVICE_COLUMNS = {
    b: (catalogue.DEVICE_KEYS[b], *((m.name, m.sql) for m in catalogue.columns(b))) for b in DEVICE_BLOCKS
}
DEVICE_COUNTERS = {b: tuple(dict.fromkeys(m.derived[1] for m in DEVICE_DERIVED[b])) for b in DEVICE_BLOCKS}
TABLES = {"gpu": "monitoring_gpusample", "disk": "monitoring_disksample"}
# The GPU events a sample carries, stored once each in their own table.
XID_COLUMNS = (("gpu_index", "smallint"), ("xid", "integer"), ("occurred_at", "timestamptz"))


def _recordset(name: str, columns) -> str:
    """The rows of one table as one JSON parameter: psycopg dumps a single string instead of an
    array per column, and PostgreSQL reads it back typed (jsonb columns as they are)."""
    return f"jsonb_to_recordset(%({name})s::jsonb) AS r ({', '.join(f'{c} {t}' for c, t in columns)})"


def _rows_insert(name: str, table: str, columns) -> str:
    """Insert the rows of every sample (`collected_at` first), keeping only those of snapshots
    this statement wrote: a resent sample writes nothing."""
    names = ", ".join(c for c, _ in columns)
    return (
        f"{name} AS (INSERT INTO {table} (server_id, {names}) "
        f"SELECT %(server)s, r.* FROM {_recordset(name, columns)} "
        "WHERE r.collected_at IN (SELECT collected_at FROM snap) ON CONFLICT DO NOTHING)"
    )


AT = (("collected_at", "timestamptz"),)
# The ids of WRITE_SQL's rows that are not snapshots (a snapshot's id is positive).
LATEST, GUARD_FAILED = 0, -1
SNAPSHOT_COLUMNS = (
    *AT,
    *((m.name, m.sql) for m in (*catalogue.columns("host", derived=False), *catalogue.columns("host", derived=True))),
)
SNAPSHOT_NAMES = ", ".join(c for c, _ in SNAPSHOT_COLUMNS)
# `sent`: every sample's snapshot row, and the seconds since its previous sample (`interval`).
# `expected`: the newest stored sample's time as this process knows it, or null (then the
# previous sample was read in this transaction). The last rows say what happened besides the
# snapshots written: (the server's newest sample after this statement, 0, its counters), and
# (null, -1) if the guard failed and nothing was written.
WRITE_SQL = f"""
WITH guard AS (
    SELECT FROM monitoring_monitoredserver
    WHERE id = %(server)s AND latest_snapshot_at = %(expected)s::timestamptz
    FOR UPDATE
),
sent AS (
    SELECT * FROM {_recordset("snap", (*SNAPSHOT_COLUMNS, ("interval", "float8")))}
    WHERE %(expected)s::timestamptz IS NULL OR EXISTS (SELECT FROM guard)
),
snap AS (
    INSERT INTO monitoring_snapshot (server_id, received_at, {SNAPSHOT_NAMES})
    SELECT %(server)s, %(now)s, {SNAPSHOT_NAMES} FROM sent
    ON CONFLICT (server_id, collected_at) DO NOTHING
    RETURNING id, collected_at, {counters.LATEST_COLUMNS}
),
{_rows_insert("gpus", TABLES["gpu"], (*AT, *DEVICE_COLUMNS["gpu"]))},
{_rows_insert("disks", TABLES["disk"], (*AT, *DEVICE_COLUMNS["disk"]))},
{_rows_insert("xids", "monitoring_xiderror", (*AT, *XID_COLUMNS))},
{counters.INGEST_CTES},
{workloads.INGEST_CTES}
SELECT collected_at, id, NULL::jsonb FROM snap
UNION ALL SELECT latest_snapshot_at, {LATEST}, latest_counters FROM server
UNION ALL SELECT NULL, {GUARD_FAILED}, NULL WHERE %(expected)s::timestamptz IS NOT NULL AND NOT EXISTS (SELECT FROM guard)
"""
# The server's newest sample and its counters, as the last statement that wrote it left them.
HELD_SQL = "SELECT latest_snapshot_at, latest_counters FROM monitoring_monitoredserver WHERE id = %s"

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
STORED_INSIDE_SQL = """
SELECT collected_at FROM monitoring_snapshot
WHERE server_id = %(server)s AND collected_at > %(first)s AND collected_at <= %(last)s
"""
STORED_SQL = f"""
SELECT s.id, l.label, {", ".join(f"s.{m.name}" for m in ECHOED)}
FROM monitoring_snapshot s
LEFT JOIN monitoring_snapshotlabel l ON l.server_id = s.server_id AND l.collected_at = s.collected_at
WHERE s.server_id = %(server)s AND s.collected_at = %(at)s
"""


def store_sample(server_id: int, sample: Sample, agent: dict, now: datetime) -> tuple[dict, bool]:
    """Write one sample atomically; returns (the snapshot as the ingest API shows it, created)."""
    with transaction.atomic():
        written = store_samples(server_id, [sample], agent, now)
        at = sample.collected_at
        if at in written:
            snapshot_id, echoed = written[at]
            snapshot = {"id": snapshot_id, "bottleneck": None, **echoed}
        else:
            # Already stored: answer with what was stored the first time.
            with prepared_cursor() as cursor:
                cursor.execute(STORED_SQL, {"server": server_id, "at": at}, prepare=True)
                snapshot = dict(zip(("id", "bottleneck", *(m.echo for m in ECHOED)), cursor.fetchone()))
    snapshot["collected_at"] = at.isoformat()
    return snapshot, at in written


# Per process, server id: the counters of the newest sample this process wrote for it.
_newest: dict[int, Previous] = {}


def store_samples(server_id: int, samples: list[Sample], agent: dict, now: datetime) -> dict[datetime, tuple]:
    """Write samples (in any order, each with its collected_at) in one statement, inside the
    caller's transaction or one of its own. A sample already stored, or twice in `samples`, is
    written once. Returns, per collected_at written now, (snapshot id, the echoed figures)."""
    unique = sorted({s.collected_at: s for s in reversed(samples)}.values(), key=lambda s: s.collected_at)
    first, newest = unique[0].collected_at, _as_previous(unique[-1])
    known, asked = _newest.pop(server_id, None), False
    # No savepoint inside the caller's transaction: it would cost two round trips per request.
    with transaction.atomic(savepoint=False), prepared_cursor() as cursor:
        if known is None:
            # Not held here (a restart, or another process wrote the last one): the server row
            # has the newest sample's counters.
            cursor.execute(HELD_SQL, [server_id], prepare=True)
            known, asked = _held(*cursor.fetchone()), True
        while True:
            if known is not None and known.collected_at >= first:
                known = None  # a late sample: what lies before it is in the database
            rows = _derive(cursor, server_id, unique, known)
            written, latest, held = _write(cursor, server_id, rows, agent, now, known, newest)
            if written is not None:
                break
            # Another process wrote a newer sample since: the statement said which, once; after
            # that, read what is stored.
            known, asked = (held, True) if not asked else (None, True)
    if newest.collected_at in written and newest.collected_at == latest:
        if len(_newest) > 100_000:
            _newest.clear()
        _newest[server_id] = newest
    return {
        sample.collected_at: (written[sample.collected_at], _echo(sample.host, derived))
        for sample, _, derived, _ in rows
        if sample.collected_at in written
    }


def _write(
    cursor, server_id: int, rows: list[tuple], agent: dict, now: datetime, known: Previous | None, newest: Previous
):
    """Run WRITE_SQL; returns ({collected_at: snapshot id} written, or None if `known` was no
    longer the server's newest and nothing was written; the server's newest sample after it; what
    the server row holds of it). `newest`: the counters of the newest sample in `rows`."""
    params = {"server": server_id, "now": now, "expected": known.collected_at if known else None}
    params["newest_at"], params["newest_counters"] = newest.collected_at, _counters_json(newest)
    params["snap"] = _json_rows([{"collected_at": s.collected_at, **s.host, **d, "interval": i} for s, _, d, i in rows])
    # A GPU process keeps its workload's reference; the workload itself goes to its range, when
    # the range needs writing (what this process wrote of it before is remembered).
    gap = settings.MONITORING_RATE_MAX_GAP_SECONDS
    processes, ranges = workloads.split_processes([(s.collected_at, dev["gpu"]) for s, dev, _, _ in rows], gap)
    gpu_rows = [g for _, dev, _, _ in rows for g in dev["gpu"]]
    params["gpus"] = _json_rows([{**g, "processes": p} for g, p in zip(gpu_rows, processes)])
    sent = workloads.changes(
        server_id, ranges, newest.collected_at, gap, settings.MONITORING_WORKLOAD_RESOLUTION_SECONDS
    )
    params["workloads"], params["workload_gap"] = _json_rows(sent), gap
    params["disks"] = _json_rows([d for _, dev, _, _ in rows for d in dev["disk"]])
    params["xids"] = _json_rows([x for _, dev, _, _ in rows for x in xid_rows(dev["gpu"])])
    params.update(_agent_params(agent))
    cursor.execute(WRITE_SQL, params, prepare=True)
    written, latest, held, failed = {}, None, None, False
    for at, snapshot_id, kept in cursor.fetchall():
        if snapshot_id == GUARD_FAILED:
            failed = True
        elif snapshot_id == LATEST:
            latest, held = at, _held(at, kept)
        else:
            written[at] = snapshot_id
    if written and not failed:
        workloads.written(server_id, ranges, sent, newest.collected_at, gap)
    return (None if failed else written), latest, held


def _counters_json(previous: Previous) -> str:
    """A sample's counters as the server row keeps them (`latest_counters`)."""
    return msgspec.json.encode(
        {
            "at": previous.collected_at,
            "host": [previous.host.get(c) for c in HOST_COUNTERS],
            **{
                block: [
                    [key, *(row.get(c) for c in DEVICE_COUNTERS[block])] for key, row in previous.devices[block].items()
                ]
                for block in DEVICE_BLOCKS
            },
        }
    ).decode()


def _held(latest: datetime | None, kept) -> Previous | None:
    """What the server row holds of its newest sample, if it is that sample's (a bulk load or
    retention may have moved the newest time without it)."""
    if latest is None or kept is None:
        return None
    kept = json.loads(kept) if isinstance(kept, str) else kept
    if datetime.fromisoformat(kept["at"]) != latest:
        return None
    devices = {
        block: {item[0]: dict(zip(DEVICE_COUNTERS[block], item[1:])) for item in kept[block]} for block in DEVICE_BLOCKS
    }
    return Previous(latest, dict(zip(HOST_COUNTERS, kept["host"])), devices)


def _echo(host: dict, derived: dict) -> dict:
    return {m.echo: host[m.name] if m.name in host else derived[m.name] for m in ECHOED}


def _agent_params(agent: dict) -> dict:
    labels = agent.get("labels")
    packaging = agent.get("packaging")
    if packaging is None and agent.get("version") is not None:
        # An agent that names its version but not its packaging predates the field: whatever an
        # earlier agent on this server said no longer holds.
        packaging = ""
    return {
        "agent_version": agent.get("version"),
        "agent_packaging": packaging,
        "agent_hostname": agent.get("hostname"),
        "agent_platform": agent.get("platform"),
        "agent_python": agent.get("python"),
        "agent_labels": Jsonb(labels) if labels is not None else None,
    }


def _derive(
    cursor: psycopg.Cursor, server_id: int, samples: list[Sample], known: Previous | None = None
) -> list[tuple]:
    """Per sample, oldest first: (sample, its device rows with what ingest derives, its derived
    host figures, seconds since the previous sample or None). Each sample's previous is the one
    before it in the batch, unless a stored sample lies between them; the first's is stored:
    `known` if given (the server's newest, older than every sample; nothing is read), else read."""
    gap = timedelta(seconds=settings.MONITORING_RATE_MAX_GAP_SECONDS)
    stored_inside: list[datetime] = []
    if len(samples) > 1 and known is None:
        cursor.execute(
            STORED_INSIDE_SQL,
            {"server": server_id, "first": samples[0].collected_at, "last": samples[-1].collected_at},
            prepare=True,
        )
        stored_inside = sorted(row[0] for row in cursor.fetchall())
    rows, before = [], None
    for sample in samples:
        at = sample.collected_at
        # A stored sample strictly between the one before and this one: two bisections, not a scan
        # (a resent batch can hold hundreds of samples that are stored already).
        if before is None and known is not None:
            previous = known if at - known.collected_at <= gap else None
        elif before is None or bisect_right(stored_inside, before.collected_at) < bisect_left(stored_inside, at):
            previous = _previous(cursor, server_id, at)
        else:
            previous = before if at - before.collected_at <= gap else None
        devices = {
            block: derive_device_fields(block, getattr(sample, f"{block}s"), previous, at) for block in DEVICE_BLOCKS
        }
        derived = derive_snapshot_fields(sample.host, devices, previous, at)
        interval = (at - previous.collected_at).total_seconds() if previous else None
        rows.append((sample, devices, derived, interval))
        before = _as_previous(sample)
    return rows


def _as_previous(sample: Sample) -> Previous:
    """A sample's counters, as the next sample of a batch takes its rates from them."""
    devices = {}
    for block in DEVICE_BLOCKS:
        key = catalogue.DEVICE_KEYS[block][0]
        devices[block] = {
            row[key]: {c: row.get(c) for c in DEVICE_COUNTERS[block]} for row in getattr(sample, f"{block}s")
        }
    return Previous(sample.collected_at, {c: sample.host.get(c) for c in HOST_COUNTERS}, devices)


def _json_rows(rows: list[dict]) -> str:
    """Rows as JSON text for jsonb_to_recordset (keys it does not name are ignored)."""
    return msgspec.json.encode(rows).decode()


def xid_rows(gpus: list[dict]) -> list[dict]:
    return [
        {
            "collected_at": gpu["collected_at"],
            "gpu_index": gpu["gpu_index"],
            "xid": event["xid"],
            "occurred_at": event["at"],
        }
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
