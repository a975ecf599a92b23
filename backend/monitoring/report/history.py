"""History of one server over a window, downsampled to at most MONITORING_HISTORY_MAX_POINTS.

The source is the finest that fits: raw rows when the window holds few enough samples
(consecutive samples then grouped `stride` at a time), else the 1-minute or the 1-hour
tier, re-bucketed on the fly to a round resolution (UTC buckets). The part of the
window a tier has not rolled up yet is read from the next finer tier and, last, from
raw rows, so the newest point is never stale. The same SQL serves continuous
aggregates and rollup tables: they have the same names and columns.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .. import catalogue, tiers
from ..catalogue import LABELS
from ..db import prepared_cursor
from ..models import MonitoredServer

SOURCES = ("auto", "raw", "1m", "1h")
# Resolutions a re-bucketed point may have, in seconds.
STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
DEFAULT_INTERVAL_SECONDS = 2.0


def _shown(block: str) -> tuple[tuple[str, str, int], ...]:
    """What a point shows of a block: (metric, how, part) for every tiered metric, in the order of
    its tier parts; `avg` over the point's span, or `sum` (e.g. a span's energy) where only summed."""
    shown = {m.name for m in catalogue.block(block) if m.history}
    return tuple(
        (m, "avg" if (m, "avg") in family.aggregates else "sum", part)
        for part, family in enumerate(tiers.PARTS[block])
        for m in family.metrics
        if m in shown
    )


SHOWN = {block: _shown(block) for block in tiers.PARTS}
SNAPSHOT_METRICS = tuple(m for m, _, _ in SHOWN["host"])
DEVICE_BLOCKS = ("gpu", "disk")
# The block whose points carry the bottleneck (from the labels' family).
LABELLED = "host"

RAW_SNAPSHOTS_SQL = f"""
SELECT s.collected_at, extract(epoch FROM s.collected_at)::float8, {", ".join(f"s.{m}" for m in SNAPSHOT_METRICS)},
       (SELECT l.label FROM monitoring_snapshotlabel l WHERE l.server_id = s.server_id AND l.collected_at = s.collected_at)
FROM monitoring_snapshot s
WHERE s.server_id = %(server)s AND s.collected_at > %(start)s AND s.collected_at <= %(end)s
ORDER BY s.collected_at DESC LIMIT %(limit)s
"""
RAW_DEVICES_SQL = """
SELECT extract(epoch FROM collected_at)::float8, {key}, {metrics} FROM {table}
WHERE server_id = %(server)s AND collected_at >= %(start)s AND collected_at <= %(end)s
ORDER BY collected_at, {key}
"""
# Up to this many seconds per point, raw rows are bucketed on the fly (a window of a few
# hours at most); beyond it the 1-minute tier is cheaper and as fine as needed.
RAW_MAX_RESOLUTION_SECONDS = 10.0
# Up to 5-minute points (windows of about three days) the 1-minute tier serves; beyond, reading
# tens of thousands of its rows costs more than hourly points from the 1-hour tier are worth.
TIER_1M_MAX_RESOLUTION_SECONDS = 300


class HistoryRequestError(ValueError):
    pass


def parse_minutes(value: str | None) -> int:
    if value is None or value.strip() == "":
        return 60
    try:
        minutes = int(value.strip())
    except ValueError:
        raise HistoryRequestError(f"minutes must be a whole number, not {value[:40]!r}") from None
    return max(1, min(minutes, settings.MONITORING_MAX_HISTORY_MINUTES))


def parse_source(value: str | None) -> str:
    source = (value or "auto").strip().lower()
    if source not in SOURCES:
        raise HistoryRequestError(f"source must be one of {', '.join(SOURCES)}, not {value[:20]!r}")
    return source


def history_for(server: MonitoredServer, minutes_param: str | None, source_param: str | None) -> dict:
    minutes = parse_minutes(minutes_param)
    source = parse_source(source_param)
    end = timezone.now()
    start = end - timedelta(minutes=minutes)
    max_points = settings.MONITORING_HISTORY_MAX_POINTS
    interval = server.sample_interval_seconds or DEFAULT_INTERVAL_SECONDS
    wanted = minutes * 60 / max_points  # seconds per point that would fit
    raw_max = settings.MONITORING_RAW_MAX_MINUTES
    if source == "auto":
        source = auto_source(wanted)
        if source == "raw" and minutes > raw_max:
            source = "1m"
    elif source == "raw" and minutes > raw_max:
        # Raw rows over weeks (compressed chunks on the full edition) take seconds to read.
        raise HistoryRequestError(
            f"source=raw serves windows of at most {raw_max} minutes; longer ones come from the tiers "
            "(source=auto, 1m or 1h)"
        )
    if source == "raw":
        stride = max(1, math.ceil(wanted / interval))
        resolution = stride * interval
        if stride == 1:
            points = raw_points(server.id, start, end, max_points)
        else:
            points = tier_points(server.id, "raw", resolution, start, end)
    else:
        resolution = max(tiers.WIDTH[source].total_seconds(), step_for(wanted))
        points = tier_points(server.id, source, resolution, start, end)
        stride = max(1, round(resolution / interval))
    return {
        "minutes": minutes,
        "point_count": len(points),
        "stride": stride,
        "source": source,
        "resolution_seconds": resolution,
        "points": points,
        "xid_errors": xid_errors(server.id, start, end),
    }


# At most this many XID errors in one history, the newest: markers beyond it would hide the chart.
MAX_XID_EVENTS = 500
XID_SQL = """
SELECT gpu_index, xid, occurred_at FROM monitoring_xiderror
WHERE server_id = %(server)s AND occurred_at > %(start)s AND occurred_at <= %(end)s
ORDER BY occurred_at DESC LIMIT %(limit)s
"""


def xid_errors(server_id: int, start: datetime, end: datetime) -> list[dict]:
    """The window's XID errors, oldest first, for the charts' markers."""
    with prepared_cursor() as cursor:
        cursor.execute(
            XID_SQL, {"server": server_id, "start": start, "end": end, "limit": MAX_XID_EVENTS}, prepare=True
        )
        rows = cursor.fetchall()[::-1]
    return [xid_event(*row) for row in rows]


def xid_event(gpu_index: int, xid: int, at: datetime) -> dict:
    """One XID error as the APIs show it, with what NVIDIA says the number means (null: not known here)."""
    return {"gpu_index": gpu_index, "xid": xid, "at": at.isoformat(), "meaning": catalogue.XID_MEANINGS.get(xid)}


def auto_source(seconds_per_point: float) -> str:
    """The finest source that fits: raw rows, then the 1-minute tier, then the 1-hour tier."""
    if seconds_per_point <= RAW_MAX_RESOLUTION_SECONDS:
        return "raw"
    return "1m" if step_for(seconds_per_point) <= TIER_1M_MAX_RESOLUTION_SECONDS else "1h"


def step_for(seconds: float) -> int:
    return next((step for step in STEPS if step >= seconds), STEPS[-1])


def raw_points(server_id: int, start: datetime, end: datetime, limit: int) -> list[dict]:
    """Samples as they are (stride 1): the newest `limit` of the window, oldest first."""
    params = {"server": server_id, "start": start, "end": end, "limit": limit}
    with transaction.atomic(), prepared_cursor() as cursor:
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute(RAW_SNAPSHOTS_SQL, params, prepare=True, binary=True)
        rows = cursor.fetchall()[::-1]
        if not rows:
            return []
        params["start"] = rows[0][0]
        devices = {}
        for block in DEVICE_BLOCKS:
            family, names = tiers.PARTS[block][0], [m for m, _, _ in SHOWN[block]]
            cursor.execute(
                RAW_DEVICES_SQL.format(key=family.key, metrics=", ".join(names), table=family.raw),
                params,
                prepare=True,
                binary=True,
            )
            by_time: dict[float, list[dict]] = {}
            for row in cursor.fetchall():
                by_time.setdefault(row[0], []).append({family.key: row[1], **_values(names, row[2:])})
            devices[block] = by_time
    points = []
    for row in rows:
        point = {"collected_at": row[0].isoformat(), **_values(SNAPSHOT_METRICS, row[2:-1])}
        point["bottleneck"] = row[-1]
        point["gpus"] = devices["gpu"].get(row[1], [])
        point["disks"] = devices["disk"].get(row[1], [])
        points.append(point)
    return points


# --- tiers ---------------------------------------------------------------------------------


def segments(server_id: int, source: str, start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    """(source, from, to) pieces that cover [start, end]: the tier, then finer tiers, then raw rows."""
    if source == "raw":
        return [("raw", start, end)]
    return tiers.split(tiers.horizons(server_id), source, start, end)


def _part(block: str, piece: tuple[str, datetime, datetime], index: int) -> str:
    """One piece as rows of (b, s_<m>[, w_<m>][, bn_<label>]) at the point resolution: the sum of a
    metric and, for averages, the weight behind it, so that pieces of any source add up correctly.
    A tier piece joins the block's tier parts on (server, device, bucket). Everything is float8:
    sums of integers would be numeric, several times slower to aggregate."""
    kind = piece[0]
    parts = tiers.PARTS[block]
    first = parts[0]
    key = f"r.{first.key}, " if first.key else ""
    labelled = block == LABELLED
    if kind == "raw":
        cols = ["time_bucket(%(res)s::interval, r.collected_at) AS b"]
        for m, how, _ in SHOWN[block]:
            cols.append(f"r.{m} AS s_{m}")
            if how == "avg":
                cols.append(f"(r.{m} IS NOT NULL)::int::float8 AS w_{m}")
        bounds = f"collected_at >= %(from_{index})s AND {{t}}.collected_at <= %(to_{index})s"
        joins = ""
        if labelled:
            cols += [f"(l.label = '{label}')::int::float8 AS {tiers.label_column(label)}" for label in LABELS]
            joins = (
                f" LEFT JOIN {tiers.LABEL.raw} l ON l.server_id = r.server_id AND l.collected_at = r.collected_at"
                f" AND l.{bounds.format(t='l')}"
            )
        return (
            f"SELECT {key}{', '.join(cols)} FROM {first.raw} r{joins} "
            f"WHERE r.server_id = %(server)s AND r.{bounds.format(t='r')}"
        )
    key = f"{first.key}, " if first.key else ""
    cols = ["time_bucket(%(res)s::interval, bucket) AS b"]
    for m, how, part in SHOWN[block]:
        if how == "sum":
            cols.append(f"t{part}.{m}_sum AS s_{m}")
            continue
        cols += [
            f"t{part}.{m}_avg * t{part}.sample_count AS s_{m}",
            f"CASE WHEN t{part}.{m}_avg IS NULL THEN 0 ELSE t{part}.sample_count END::float8 AS w_{m}",
        ]
    using = f"server_id, {key}bucket"
    used = {part for _, _, part in SHOWN[block]}
    joins = "".join(
        f" LEFT JOIN {p.relation(kind)} t{i} USING ({using})" for i, p in enumerate(parts[1:], 1) if i in used
    )
    if labelled:
        cols += [
            f"{tiers.label_read(first, label, 'tl', 't0')}::float8 AS {tiers.label_column(label)}" for label in LABELS
        ]
        joins += f" LEFT JOIN {tiers.LABEL.relation(kind)} tl USING ({using})"
    return (
        f"SELECT {key}{', '.join(cols)} FROM {first.relation(kind)} t0{joins} "
        f"WHERE t0.server_id = %(server)s AND t0.bucket >= %(from_{index})s AND t0.bucket < %(to_{index})s"
    )


def tier_sql(block: str, pieces) -> str:
    union = " UNION ALL ".join(_part(block, piece, i) for i, piece in enumerate(pieces))
    first = tiers.PARTS[block][0]
    key = f"{first.key}, " if first.key else ""
    # Epoch seconds, not timestamps: parsing thousands of timestamps costs more than the query.
    cols = ["extract(epoch FROM b)::float8"]
    for m, how, _ in SHOWN[block]:
        # Two decimals are finer than any chart shows, and halve the size of a history.
        value = f"sum(s_{m}) / NULLIF(sum(w_{m}), 0)" if how == "avg" else f"sum(s_{m})"
        cols.append(f"round(({value})::numeric, 2)::float8")
    if block == LABELLED:
        cols += [f"sum({tiers.label_column(label)})" for label in LABELS]
    order = f"b, {first.key}" if first.key else "b"
    return f"SELECT {key}{', '.join(cols)} FROM ({union}) parts GROUP BY {key}b ORDER BY {order}"


def tier_points(server_id: int, source: str, resolution: float, start: datetime, end: datetime) -> list[dict]:
    pieces = segments(server_id, source, start, end)
    params = {"server": server_id, "res": timedelta(seconds=resolution)}
    for i, (_, lo, hi) in enumerate(pieces):
        params[f"from_{i}"], params[f"to_{i}"] = lo, hi
    with transaction.atomic(), prepared_cursor() as cursor:
        if source != "raw":
            # A few thousand tier rows: starting parallel workers costs more than it saves.
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute(tier_sql("host", pieces), params, prepare=True, binary=True)
        rows = cursor.fetchall()
        devices = {}
        for block in DEVICE_BLOCKS:
            key, names = tiers.PARTS[block][0].key, [m for m, _, _ in SHOWN[block]]
            cursor.execute(tier_sql(block, pieces), params, prepare=True, binary=True)
            by_bucket: dict[float, list[dict]] = {}
            for row in cursor.fetchall():
                by_bucket.setdefault(row[1], []).append({key: row[0], **dict(zip(names, row[2:]))})
            devices[block] = by_bucket
    points = []
    metric_count = len(SNAPSHOT_METRICS)
    for row in rows:
        bucket = row[0]
        counts = row[1 + metric_count :]
        when = datetime.fromtimestamp(bucket, UTC).isoformat()
        point = {"collected_at": when, **dict(zip(SNAPSHOT_METRICS, row[1 : 1 + metric_count]))}
        point["bottleneck"] = _most_frequent(counts)
        point["gpus"] = devices["gpu"].get(bucket, [])
        point["disks"] = devices["disk"].get(bucket, [])
        points.append(point)
    return points


def _values(names, values) -> dict:
    # Two decimals, as tier_sql rounds them.
    return {name: None if value is None else round(value, 2) for name, value in zip(names, values)}


def _most_frequent(counts) -> str | None:
    best = max(range(len(LABELS)), key=lambda i: counts[i] or 0)
    return LABELS[best] if counts[best] else None
