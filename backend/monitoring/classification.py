"""Runs the pure classifier over a server's unclassified snapshots and stores the result."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import connection, transaction

from . import catalogue, server_counters, tier_refresh
from .bottleneck import (
    DEFAULT_THRESHOLDS,
    GPU_READING_METRICS,
    READING_METRICS,
    RULES_VERSION,
    GpuReading,
    Reading,
    classify,
)
from .store import prepared_cursor

BATCH_SIZE = 2000
# Namespace for pg_advisory_xact_lock(namespace, server_id): one classifier per server at a time.
LOCK_NAMESPACE = 7301

PENDING_SQL = """
SELECT min(collected_at), max(collected_at), count(*) FROM (
    SELECT collected_at FROM monitoring_snapshot
    WHERE server_id = %s AND bottleneck_label IS NULL
    ORDER BY collected_at LIMIT %s
) pending
"""
# What the classifier reads, as it names it (bottleneck.READING_METRICS and GPU_READING_METRICS).
SNAPSHOTS_SQL = f"""
SELECT collected_at, bottleneck_label IS NULL, {", ".join(READING_METRICS.values())}
FROM monitoring_snapshot
WHERE server_id = %s AND collected_at BETWEEN %s AND %s
ORDER BY collected_at
"""
GPUS_SQL = f"""
SELECT collected_at, gpu_index, {", ".join(GPU_READING_METRICS.values())}
FROM monitoring_gpusample
WHERE server_id = %s AND collected_at BETWEEN %s AND %s
ORDER BY collected_at, gpu_index
"""
# How a list column becomes what a reading holds: names as they are, processes by their names.
_LISTS = {
    "names": tuple,
    "processes": lambda processes: tuple(sorted({p.get("name") for p in processes if p.get("name")})),
}
GPU_CONVERT = {field: _LISTS.get(catalogue.metric("gpu", name).kind) for field, name in GPU_READING_METRICS.items()}
UPDATE_SQL = """
UPDATE monitoring_snapshot AS s SET
    bottleneck_label = v.label, bottleneck_confidence = v.confidence,
    bottleneck_reason = v.reason, bottleneck_rules_version = %s, classified_at = clock_timestamp()
FROM unnest(%s::timestamptz[], %s::text[], %s::float8[], %s::text[]) AS v (at, label, confidence, reason)
WHERE s.server_id = %s AND s.collected_at = v.at AND s.collected_at BETWEEN %s AND %s
"""
LOCK_SQL = "SELECT pg_advisory_xact_lock(%s::int4, %s::int4)"


def classify_pending(server_id: int, batch_size: int = BATCH_SIZE) -> tuple[int, bool]:
    """Classify up to batch_size unclassified snapshots, oldest first.

    Returns (how many were classified, whether more are waiting).
    """
    lookback = timedelta(seconds=DEFAULT_THRESHOLDS.idle_held_seconds + DEFAULT_THRESHOLDS.smooth_seconds)
    # The hot path of the worker: server-side binding and statements prepared once per connection.
    with transaction.atomic(), prepared_cursor() as cursor:
        cursor.execute(LOCK_SQL, [LOCK_NAMESPACE, server_id], prepare=True)
        cursor.execute(PENDING_SQL, [server_id, batch_size], prepare=True)
        first, last, count = cursor.fetchone()
        if not count:
            return 0, False
        start = first - lookback
        cursor.execute(SNAPSHOTS_SQL, [server_id, start, last], prepare=True)
        snapshots = cursor.fetchall()
        cursor.execute(GPUS_SQL, [server_id, start, last], prepare=True)
        gpus = _gpu_readings(cursor.fetchall())
        results = _classify_rows(snapshots, gpus, lookback)
        if results:
            columns = [list(column) for column in zip(*results)]
            cursor.execute(UPDATE_SQL, [RULES_VERSION, *columns, server_id, first, last], prepare=True)
            server_counters.record_bottleneck(cursor, server_id, results)
            tier_refresh.mark_dirty(cursor, server_id, [row[0] for row in results])
    return len(results), count >= batch_size


def _gpu_readings(rows) -> dict[datetime, list[GpuReading]]:
    by_time: dict[datetime, list[GpuReading]] = defaultdict(list)
    for at, index, *values in rows:
        fields = {}
        for (field, convert), value in zip(GPU_CONVERT.items(), values):
            # Django hands jsonb columns of raw queries back as text.
            fields[field] = convert(_json(value) or ()) if convert else value
        by_time[at].append(GpuReading(gpu_index=index, **fields))
    return by_time


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _classify_rows(snapshots, gpus, lookback: timedelta) -> list[tuple]:
    readings: list[Reading] = []
    results = []
    window_start = 0
    for at, pending, *values in snapshots:
        reading = Reading(at=at.timestamp(), gpus=tuple(gpus.get(at, ())), **dict(zip(READING_METRICS, values)))
        readings.append(reading)
        while readings[window_start].at < reading.at - lookback.total_seconds():
            window_start += 1
        if pending:
            verdict = classify(readings[window_start:])
            results.append((at, verdict.label, verdict.confidence, verdict.reason))
    return results


def servers_with_stale_pending(grace_seconds: int) -> list[int]:
    """Servers holding snapshots that should have been classified by now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT server_id FROM monitoring_snapshot "
            "WHERE bottleneck_label IS NULL AND received_at < clock_timestamp() - make_interval(secs => %s)",
            [grace_seconds],
        )
        return [row[0] for row in cursor.fetchall()]
