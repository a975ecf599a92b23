"""Runs the pure classifier over a server's unclassified snapshots and stores the result.

A snapshot is never updated: its label is a row of its own (`monitoring_snapshotlabel`),
appended once. What is left to label is found from the server row's `unlabelled_from` (every
snapshot before it is labelled): ingest moves it back to the oldest sample it writes, in the
statement that writes it; a pass here labels the unlabelled snapshots from there, oldest first,
and moves it on past them, but only if no sample was written for the server meanwhile (its
`snapshot_count` is as the pass read it). Otherwise it stays, and the next pass (which that
sample's ingest asks for) starts from it again, skipping what is labelled.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import connection, transaction

from .. import catalogue, ingest, tiers
from ..db import prepared_cursor
from .classifier import (
    DEFAULT_THRESHOLDS,
    GPU_READING_METRICS,
    READING_METRICS,
    RULES_VERSION,
    GpuReading,
    Reading,
    classify,
)

BATCH_SIZE = 2000
# Namespace for pg_advisory_xact_lock(namespace, server_id): one classifier per server at a time.
LOCK_NAMESPACE = 7301

# Per server, its oldest `batch` unlabelled snapshots: the first and last time, how many, and the
# server's snapshot count as this statement saw it.
PENDING_SQL = """
SELECT m.id, min(p.collected_at), max(p.collected_at), count(p.collected_at), m.snapshot_count
FROM monitoring_monitoredserver m
LEFT JOIN LATERAL (
    SELECT s.collected_at FROM monitoring_snapshot s
    WHERE s.server_id = m.id AND s.collected_at >= m.unlabelled_from
      AND NOT EXISTS (SELECT FROM monitoring_snapshotlabel l
                      WHERE l.server_id = s.server_id AND l.collected_at = s.collected_at)
    ORDER BY s.collected_at LIMIT %s
) p ON true
WHERE m.id = ANY(%s::bigint[]) AND m.unlabelled_from IS NOT NULL
GROUP BY m.id, m.snapshot_count
"""
# The rows of each server's range (`r`: server, from, to); constant bounds as well, so that
# TimescaleDB opens only the chunks in range.
_RANGES = """
JOIN unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS r (id, lo, hi)
    ON t.server_id = r.id AND t.collected_at BETWEEN r.lo AND r.hi
WHERE t.collected_at BETWEEN %s AND %s
"""
# What the classifier reads, as it names it (classifier.READING_METRICS and GPU_READING_METRICS).
SNAPSHOTS_SQL = f"""
SELECT t.server_id, t.collected_at, t.gpu_count,
       NOT EXISTS (SELECT FROM monitoring_snapshotlabel l
                   WHERE l.server_id = t.server_id AND l.collected_at = t.collected_at),
       {", ".join(f"t.{m}" for m in READING_METRICS.values())}
FROM monitoring_snapshot t {_RANGES}
ORDER BY t.server_id, t.collected_at
"""
GPUS_SQL = f"""
SELECT t.server_id, t.collected_at, t.gpu_index, {", ".join(f"t.{m}" for m in GPU_READING_METRICS.values())}
FROM monitoring_gpusample t {_RANGES}
ORDER BY t.server_id, t.collected_at, t.gpu_index
"""
# How a list column becomes what a reading holds: names as they are, processes by their names.
_LISTS = {
    "names": tuple,
    "processes": lambda processes: tuple(sorted({p.get("name") for p in processes if p.get("name")})),
}
GPU_CONVERT = {field: _LISTS.get(catalogue.metric("gpu", name).kind) for field, name in GPU_READING_METRICS.items()}
LABEL_SQL = """
INSERT INTO monitoring_snapshotlabel
    (server_id, collected_at, label, confidence, reason, rules_version, classified_at, gpu_count)
SELECT v.server_id, v.at, v.label, v.confidence, v.reason, %s, clock_timestamp(), v.gpu_count
FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[], %s::float8[], %s::text[], %s::smallint[])
    AS v (server_id, at, label, confidence, reason, gpu_count)
ON CONFLICT (server_id, collected_at) DO NOTHING
"""

# One lock per server, taken in id order (two classifiers never wait on each other in a cycle).
LOCK_SQL = "SELECT pg_advisory_xact_lock(%s::int4, id::int4) FROM unnest(%s::bigint[]) AS id"


def classify_pending(server_id: int, batch_size: int = BATCH_SIZE) -> tuple[int, bool]:
    """Classify up to batch_size unclassified snapshots of one server, oldest first.

    Returns (how many were classified, whether more are waiting).
    """
    return classify_servers([server_id], batch_size).get(server_id, (0, False))


def classify_servers(
    server_ids: list[int], batch_size: int = BATCH_SIZE, labelled: dict | None = None
) -> dict[int, tuple[int, bool]]:
    """Classify up to batch_size unclassified snapshots of each server, oldest first, with one set
    of statements for all of them. Returns, per server that had any, (how many were classified,
    whether more are waiting); `labelled` collects per server (collected_at, label, reason) of
    every snapshot labelled (for the alert rules)."""
    ids = sorted(set(server_ids))
    lookback = timedelta(seconds=DEFAULT_THRESHOLDS.idle_held_seconds + DEFAULT_THRESHOLDS.smooth_seconds)
    done: dict[int, tuple[int, bool]] = {}
    # The hot path of the worker: server-side binding and statements prepared once per connection.
    with transaction.atomic(), prepared_cursor() as cursor:
        cursor.execute(LOCK_SQL, [LOCK_NAMESPACE, ids], prepare=True)
        cursor.execute(PENDING_SQL, [batch_size, ids], prepare=True)
        pending = {row[0]: row[1:] for row in cursor.fetchall()}
        if not pending:
            return done
        servers = sorted(server_id for server_id, (_, _, count, _) in pending.items() if count)
        results = _label(cursor, servers, pending, lookback) if servers else {}
        for server_id, classified in results.items():
            done[server_id] = (len(classified), pending[server_id][2] >= batch_size)
            if labelled is not None:
                labelled.setdefault(server_id, []).extend((at, label, reason) for at, label, _, reason, _ in classified)
        # Where each server's unlabelled snapshots start after this pass: just past the newest it
        # labels (timestamps are whole microseconds) if it cannot take them all, else none left.
        ingest.record_pass(
            cursor,
            [
                (
                    server_id,
                    results.get(server_id),
                    last + timedelta(microseconds=1) if count >= batch_size else None,
                    seen,
                )
                for server_id, (_, last, count, seen) in sorted(pending.items())
            ],
        )
    return done


def _label(cursor, servers, pending, lookback: timedelta) -> dict[int, list[tuple]]:
    """Classify the pending snapshots of `servers`; write their labels and the tiers' dirty
    minutes. Returns, per server with any, what was labelled (see _classify_rows)."""
    starts = [pending[s][0] - lookback for s in servers]
    ends = [pending[s][1] for s in servers]
    ranges = [servers, starts, ends, min(starts), max(ends)]
    cursor.execute(SNAPSHOTS_SQL, ranges, prepare=True)
    snapshots = defaultdict(list)
    for server_id, *row in cursor.fetchall():
        snapshots[server_id].append(row)
    cursor.execute(GPUS_SQL, ranges, prepare=True)
    gpus = _gpu_readings(cursor.fetchall())
    results = {}
    for server_id in servers:
        classified = _classify_rows(snapshots[server_id], gpus[server_id], lookback)
        if classified:
            results[server_id] = classified
    if results:
        rows = [(server_id, *row) for server_id, classified in results.items() for row in classified]
        cursor.execute(LABEL_SQL, [RULES_VERSION, *(list(column) for column in zip(*rows))], prepare=True)
        tiers.mark_dirty_many(
            cursor, [(server_id, row[0]) for server_id, row in ((s, r) for s, c in results.items() for r in c)]
        )
    return results


def _gpu_readings(rows) -> dict[int, dict[datetime, list[GpuReading]]]:
    """Per server, per sample time, its GPUs' readings."""
    by_server: dict[int, dict[datetime, list[GpuReading]]] = defaultdict(lambda: defaultdict(list))
    for server_id, at, index, *values in rows:
        fields = {}
        for (field, convert), value in zip(GPU_CONVERT.items(), values):
            # Django hands jsonb columns of raw queries back as text.
            fields[field] = convert(_json(value) or ()) if convert else value
        by_server[server_id][at].append(GpuReading(gpu_index=index, **fields))
    return by_server


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _classify_rows(snapshots, gpus, lookback: timedelta) -> list[tuple]:
    """(collected_at, label, confidence, reason, GPU count) of every unlabelled snapshot."""
    readings: list[Reading] = []
    results = []
    window_start = 0
    for at, gpu_count, pending, *values in snapshots:
        reading = Reading(at=at.timestamp(), gpus=tuple(gpus.get(at, ())), **dict(zip(READING_METRICS, values)))
        readings.append(reading)
        while readings[window_start].at < reading.at - lookback.total_seconds():
            window_start += 1
        if pending:
            verdict = classify(readings[window_start:])
            results.append((at, verdict.label, verdict.confidence, verdict.reason, gpu_count))
    return results


def servers_with_stale_pending(grace_seconds: int) -> list[int]:
    """Servers holding snapshots that should have been classified by now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.id FROM monitoring_monitoredserver m WHERE m.unlabelled_from IS NOT NULL AND EXISTS ("
            "SELECT FROM monitoring_snapshot s WHERE s.server_id = m.id AND s.collected_at >= m.unlabelled_from "
            "AND s.received_at < clock_timestamp() - make_interval(secs => %s) "
            "AND NOT EXISTS (SELECT FROM monitoring_snapshotlabel l "
            "WHERE l.server_id = s.server_id AND l.collected_at = s.collected_at))",
            [grace_seconds],
        )
        return [row[0] for row in cursor.fetchall()]
