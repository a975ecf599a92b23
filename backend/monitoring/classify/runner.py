"""Runs the pure classifier over a server's unclassified snapshots and stores the result."""

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

# Per server, its oldest `batch` unclassified snapshots: the first and last time, and how many.
PENDING_SQL = """
SELECT p.server_id, min(p.collected_at), max(p.collected_at), count(*) FROM unnest(%s::bigint[]) AS w (id)
CROSS JOIN LATERAL (
    SELECT server_id, collected_at FROM monitoring_snapshot
    WHERE server_id = w.id AND bottleneck_label IS NULL
    ORDER BY collected_at LIMIT %s
) p
GROUP BY p.server_id
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
SELECT t.server_id, t.collected_at, t.bottleneck_label IS NULL, {", ".join(f"t.{m}" for m in READING_METRICS.values())}
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
UPDATE_SQL = """
UPDATE monitoring_snapshot AS s SET
    bottleneck_label = v.label, bottleneck_confidence = v.confidence,
    bottleneck_reason = v.reason, bottleneck_rules_version = %s, classified_at = clock_timestamp()
FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[], %s::float8[], %s::text[])
    AS v (server_id, at, label, confidence, reason)
WHERE s.server_id = v.server_id AND s.collected_at = v.at AND s.collected_at BETWEEN %s AND %s
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
        cursor.execute(PENDING_SQL, [ids, batch_size], prepare=True)
        pending = {row[0]: row[1:] for row in cursor.fetchall()}
        if not pending:
            return done
        servers = sorted(pending)
        starts = [pending[s][0] - lookback for s in servers]
        ends = [pending[s][1] for s in servers]
        ranges = [servers, starts, ends, min(starts), max(ends)]
        cursor.execute(SNAPSHOTS_SQL, ranges, prepare=True)
        snapshots = defaultdict(list)
        for server_id, *row in cursor.fetchall():
            snapshots[server_id].append(row)
        cursor.execute(GPUS_SQL, ranges, prepare=True)
        gpus = _gpu_readings(cursor.fetchall())
        results = []
        for server_id in servers:
            classified = _classify_rows(snapshots[server_id], gpus[server_id], lookback)
            done[server_id] = (len(classified), pending[server_id][2] >= batch_size)
            if classified:
                results.append((server_id, classified))
        if results:
            rows = [(server_id, *row) for server_id, classified in results for row in classified]
            columns = [list(column) for column in zip(*rows)]
            cursor.execute(UPDATE_SQL, [RULES_VERSION, *columns, min(starts), max(ends)], prepare=True)
            for server_id, classified in results:
                ingest.record_bottleneck(cursor, server_id, classified)
                if labelled is not None:
                    labelled.setdefault(server_id, []).extend(
                        (at, label, reason) for at, label, _, reason in classified
                    )
            tiers.mark_dirty_many(
                cursor, [(server_id, row[0]) for server_id, classified in results for row in classified]
            )
    return done


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
