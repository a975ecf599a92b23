"""History of one server over a window, downsampled to at most MONITORING_HISTORY_MAX_POINTS.

From raw rows, consecutive samples are grouped `stride` at a time (the number of raw
samples a point stands for): each point carries the averages of its group, the
group's first timestamp and its most frequent bottleneck.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import MonitoredServer

SOURCES = ("auto", "raw")

SNAPSHOT_METRICS = (
    "cpu_usage_percent",
    "cpu_iowait_percent",
    "memory_percent",
    "swap_percent",
    "disk_read_bps",
    "disk_write_bps",
    "disk_util_percent",
    "gpu_top_util_percent",
    "network_rx_bps",
    "network_tx_bps",
)
GPU_METRICS = ("utilization_gpu_percent", "memory_percent", "temperature_c", "power_w")
DISK_METRICS = ("read_bps", "write_bps", "util_percent")

_GROUPS = """
SELECT collected_at, (row_number() OVER (ORDER BY collected_at) - 1) / %(stride)s AS g{extra}
FROM monitoring_snapshot
WHERE server_id = %(server)s AND collected_at > %(start)s AND collected_at <= %(end)s
"""
RAW_POINTS_SQL = f"""
WITH s AS ({_GROUPS.format(extra="".join(f", {m}" for m in SNAPSHOT_METRICS) + ", bottleneck_label")})
SELECT g, min(collected_at), {", ".join(f"avg({m})" for m in SNAPSHOT_METRICS)},
       mode() WITHIN GROUP (ORDER BY bottleneck_label)
FROM s GROUP BY g ORDER BY g
"""
RAW_DEVICES_SQL = """
WITH s AS ({groups})
SELECT s.g, d.{key}, {metrics}
FROM s JOIN {table} d ON d.server_id = %(server)s AND d.collected_at = s.collected_at
    AND d.collected_at > %(start)s AND d.collected_at <= %(end)s
GROUP BY s.g, d.{key} ORDER BY s.g, d.{key}
"""
RAW_COUNT_SQL = """
SELECT count(*) FROM monitoring_snapshot
WHERE server_id = %(server)s AND collected_at > %(start)s AND collected_at <= %(end)s
"""


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
    parse_source(source_param)
    end = timezone.now()
    start = end - timedelta(minutes=minutes)
    points, stride = raw_points(server.id, start, end, settings.MONITORING_HISTORY_MAX_POINTS)
    return {"minutes": minutes, "point_count": len(points), "stride": stride, "source": "raw", "points": points}


def raw_points(server_id: int, start: datetime, end: datetime, max_points: int) -> tuple[list[dict], int]:
    params = {"server": server_id, "start": start, "end": end}
    with connection.cursor() as cursor:
        cursor.execute(RAW_COUNT_SQL, params)
        count = cursor.fetchone()[0]
        stride = max(1, math.ceil(count / max_points))
        params["stride"] = stride
        cursor.execute(RAW_POINTS_SQL, params)
        rows = cursor.fetchall()
        gpus = _devices(cursor, params, "monitoring_gpusample", "gpu_index", GPU_METRICS)
        disks = _devices(cursor, params, "monitoring_disksample", "device", DISK_METRICS)
    points = []
    for row in rows:
        group = row[0]
        point = {"collected_at": row[1].isoformat()}
        point.update(zip(SNAPSHOT_METRICS, row[2:-1]))
        point["bottleneck"] = row[-1]
        point["gpus"] = gpus.get(group, [])
        point["disks"] = disks.get(group, [])
        points.append(point)
    return points, stride


def _devices(cursor, params: dict, table: str, key: str, metrics: tuple[str, ...]) -> dict[int, list[dict]]:
    sql = RAW_DEVICES_SQL.format(
        groups=_GROUPS.format(extra=""), key=key, table=table, metrics=", ".join(f"avg(d.{m})" for m in metrics)
    )
    cursor.execute(sql, params)
    by_group: dict[int, list[dict]] = {}
    for row in cursor.fetchall():
        by_group.setdefault(row[0], []).append({key: row[1], **dict(zip(metrics, row[2:]))})
    return by_group
