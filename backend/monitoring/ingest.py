"""The ingest API: one sample from an agent into the hypertables.

One request, one transaction: the snapshot, its GPU and disk rows and the server's
bookkeeping are written together or not at all. A resent sample (same server and
`collected_at`) answers with what was stored the first time and writes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from psycopg.types.json import Jsonb

from .models import MonitoredServer
from .queue import request_classification
from .responses import error
from .validation import Sample, SampleError, check_not_in_future, parse_body

log = logging.getLogger(__name__)

HOST_COLUMNS = (
    "cpu_usage_percent",
    "cpu_user_percent",
    "cpu_system_percent",
    "cpu_iowait_percent",
    "cpu_load_1",
    "cpu_load_5",
    "cpu_load_15",
    "cpu_frequency_mhz",
    "cpu_count_logical",
    "cpu_count_physical",
    "memory_total_bytes",
    "memory_used_bytes",
    "memory_available_bytes",
    "memory_percent",
    "swap_total_bytes",
    "swap_used_bytes",
    "swap_percent",
    "network_rx_bytes_total",
    "network_tx_bytes_total",
    "process_count",
)
DERIVED_COLUMNS = (
    "network_rx_bps",
    "network_tx_bps",
    "disk_read_bps",
    "disk_write_bps",
    "disk_util_percent",
    "gpu_count",
    "gpu_top_util_percent",
)
GPU_COLUMNS = (
    "gpu_index",
    "name",
    "uuid",
    "utilization_gpu_percent",
    "utilization_memory_percent",
    "memory_total_bytes",
    "memory_used_bytes",
    "memory_percent",
    "temperature_c",
    "power_w",
    "power_limit_w",
    "fan_percent",
    "sm_clock_mhz",
    "sm_clock_max_mhz",
    "memory_clock_mhz",
    "memory_clock_max_mhz",
    "throttle_reasons",
    "ecc_errors_corrected",
    "ecc_errors_uncorrected",
    "processes",
)
JSON_GPU_COLUMNS = {"throttle_reasons", "processes"}
DISK_COLUMNS = (
    "device",
    "read_bytes_total",
    "write_bytes_total",
    "read_count_total",
    "write_count_total",
    "busy_time_ms_total",
    "read_bps",
    "write_bps",
    "read_iops",
    "write_iops",
    "util_percent",
)

SNAPSHOT_INSERT = (
    "INSERT INTO monitoring_snapshot (server_id, collected_at, received_at, {cols}) "
    "VALUES (%s, %s, %s, {params}) ON CONFLICT (server_id, collected_at) DO NOTHING RETURNING id"
).format(
    cols=", ".join(HOST_COLUMNS + DERIVED_COLUMNS),
    params=", ".join(["%s"] * len(HOST_COLUMNS + DERIVED_COLUMNS)),
)

SNAPSHOT_RESPONSE_SQL = (
    "SELECT id, collected_at, bottleneck_label, cpu_usage_percent, gpu_top_util_percent, disk_util_percent "
    "FROM monitoring_snapshot WHERE server_id = %s AND collected_at = %s"
)

PREVIOUS_SQL = """
SELECT collected_at, network_rx_bytes_total, network_tx_bytes_total
FROM monitoring_snapshot
WHERE server_id = %s AND collected_at < %s AND collected_at >= %s
ORDER BY collected_at DESC LIMIT 1
"""

PREVIOUS_DISKS_SQL = """
SELECT device, read_bytes_total, write_bytes_total, read_count_total, write_count_total, busy_time_ms_total
FROM monitoring_disksample WHERE server_id = %s AND collected_at = %s
"""

SERVER_UPDATE_SQL = """
UPDATE monitoring_monitoredserver SET
    last_seen_at = %s,
    snapshot_count = snapshot_count + %s,
    latest_snapshot_at = GREATEST(latest_snapshot_at, %s),
    last_agent_version = COALESCE(%s, last_agent_version),
    hostname = COALESCE(%s, hostname),
    agent_platform = COALESCE(%s, agent_platform),
    agent_python = COALESCE(%s, agent_python),
    agent_labels = COALESCE(%s, agent_labels)
WHERE id = %s
"""


def _token(request: HttpRequest) -> str:
    token = request.headers.get("X-Monitoring-Token", "").strip()
    if token:
        return token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _read_body(request: HttpRequest) -> bytes | None:
    """The body, or None when it is over the limit (checked before reading it all)."""
    limit = settings.MONITORING_INGEST_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    raw = request.read(limit + 1)
    return None if len(raw) > limit else raw


@csrf_exempt
def ingest_metrics(request: HttpRequest, server_slug: str) -> JsonResponse:
    if request.method != "POST":
        response = error(405, f"method {request.method} is not allowed; POST one sample")
        response["Allow"] = "POST"
        return response
    try:
        return _ingest(request, server_slug)
    except (OperationalError, InterfaceError) as exc:
        log.warning("ingest: database unavailable: %s", exc)
        response = error(503, "the database is unavailable; retry later")
        response["Retry-After"] = str(settings.MONITORING_RETRY_AFTER_SECONDS)
        return response


def _ingest(request: HttpRequest, server_slug: str) -> JsonResponse:
    server = MonitoredServer.objects.filter(slug=server_slug).first()
    if server is None:
        return error(404, f"unknown server {server_slug!r}; register it with manage.py register_server")
    token = _token(request)
    if not token:
        return error(401, "missing ingest token: send X-Monitoring-Token or Authorization: Bearer")
    if not server.check_token(token):
        return error(401, "invalid ingest token for this server")
    if not server.is_active:
        return error(403, f"server {server.slug!r} is disabled")

    raw = _read_body(request)
    if raw is None:
        return error(413, f"body is larger than {settings.MONITORING_INGEST_MAX_BODY_BYTES} bytes")
    now = timezone.now()
    try:
        sample = parse_body(raw)
        check_not_in_future(sample, now, settings.MONITORING_FUTURE_TOLERANCE_SECONDS)
    except SampleError as exc:
        return error(400, str(exc))
    if sample.collected_at is None:
        sample.collected_at = now

    try:
        snapshot, created = store_sample(server, sample, now)
    except DatabaseError as exc:
        if isinstance(exc, (OperationalError, InterfaceError)):
            raise
        # A value the validator let through but the database refused: the sample's fault.
        log.warning("ingest: %s refused by the database: %s", server.slug, exc)
        return error(400, "sample: refused by the database; check the values' ranges")
    if created or snapshot["bottleneck"] is None:
        transaction.on_commit(lambda: request_classification(server.id))
    return JsonResponse(
        {
            "ok": True,
            "server": {
                "id": server.id,
                "slug": server.slug,
                "name": server.name,
                "hostname": sample.agent.get("hostname", server.hostname),
                "is_active": server.is_active,
            },
            "snapshot": snapshot,
        }
    )


def store_sample(server: MonitoredServer, sample: Sample, now: datetime) -> tuple[dict, bool]:
    """Write one sample in one transaction; returns (the snapshot as the API shows it, created)."""
    at = sample.collected_at
    with transaction.atomic(), connection.cursor() as cursor:
        previous = _previous(cursor, server.id, at)
        disks = derive_disk_rates(sample.disks, previous, at)
        derived = derive_snapshot_fields(sample, disks, previous, at)
        host_values = [sample.host[c] for c in HOST_COLUMNS]
        cursor.execute(SNAPSHOT_INSERT, [server.id, at, now, *host_values, *[derived[c] for c in DERIVED_COLUMNS]])
        created = cursor.fetchone() is not None
        if created:
            _insert_children(cursor, server.id, at, sample.gpus, disks)
        _update_server(cursor, server, sample, now, created)
        cursor.execute(SNAPSHOT_RESPONSE_SQL, [server.id, at])
        row = cursor.fetchone()
    snapshot = {
        "id": row[0],
        "collected_at": row[1].isoformat(),
        "bottleneck": row[2],
        "cpu_usage_percent": row[3],
        "top_gpu_util_percent": row[4],
        "disk_util_percent": row[5],
    }
    return snapshot, created


def _previous(cursor, server_id: int, at: datetime) -> dict | None:
    """The newest earlier sample close enough to turn counters into rates."""
    gap = timedelta(seconds=settings.MONITORING_RATE_MAX_GAP_SECONDS)
    cursor.execute(PREVIOUS_SQL, [server_id, at, at - gap])
    row = cursor.fetchone()
    if row is None:
        return None
    cursor.execute(PREVIOUS_DISKS_SQL, [server_id, row[0]])
    disks = {
        d[0]: dict(
            zip(
                (
                    "read_bytes_total",
                    "write_bytes_total",
                    "read_count_total",
                    "write_count_total",
                    "busy_time_ms_total",
                ),
                d[1:],
                strict=False,
            )
        )
        for d in cursor.fetchall()
    }
    return {"collected_at": row[0], "network_rx_bytes_total": row[1], "network_tx_bytes_total": row[2], "disks": disks}


def rate(current: int | None, before: int | None, seconds: float) -> float | None:
    """Per-second rate of a counter; None when unknown or when it went backwards (a reboot)."""
    if current is None or before is None or seconds <= 0 or current < before:
        return None
    return (current - before) / seconds


def derive_disk_rates(disks: list[dict], previous: dict | None, at: datetime) -> list[dict]:
    seconds = (at - previous["collected_at"]).total_seconds() if previous else 0.0
    before_by_device = previous["disks"] if previous else {}
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
                # busy ms per second / 10 = percent of the time the device was busy.
                "util_percent": None if busy_ms is None else min(100.0, busy_ms / 10.0),
            }
        )
    return rows


def _sum(values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def derive_snapshot_fields(sample: Sample, disks: list[dict], previous: dict | None, at: datetime) -> dict:
    seconds = (at - previous["collected_at"]).total_seconds() if previous else 0.0
    before = previous or {}
    utils = [g["utilization_gpu_percent"] for g in sample.gpus if g["utilization_gpu_percent"] is not None]
    util_values = [d["util_percent"] for d in disks if d["util_percent"] is not None]
    return {
        "network_rx_bps": rate(sample.host["network_rx_bytes_total"], before.get("network_rx_bytes_total"), seconds),
        "network_tx_bps": rate(sample.host["network_tx_bytes_total"], before.get("network_tx_bytes_total"), seconds),
        "disk_read_bps": _sum(d["read_bps"] for d in disks),
        "disk_write_bps": _sum(d["write_bps"] for d in disks),
        # The busiest disk: one saturated device stalls whatever reads from it.
        "disk_util_percent": max(util_values) if util_values else None,
        "gpu_count": len(sample.gpus),
        "gpu_top_util_percent": max(utils) if utils else None,
    }


def _insert_children(cursor, server_id: int, at: datetime, gpus: list[dict], disks: list[dict]) -> None:
    if gpus:
        rows = [
            [server_id, at, *[Jsonb(g[c]) if c in JSON_GPU_COLUMNS and g[c] is not None else g[c] for c in GPU_COLUMNS]]
            for g in gpus
        ]
        _insert_many(cursor, "monitoring_gpusample", ("server_id", "collected_at", *GPU_COLUMNS), rows)
    if disks:
        rows = [[server_id, at, *[d[c] for c in DISK_COLUMNS]] for d in disks]
        _insert_many(cursor, "monitoring_disksample", ("server_id", "collected_at", *DISK_COLUMNS), rows)


def _insert_many(cursor, table: str, columns: tuple[str, ...], rows: list[list]) -> None:
    """One multi-row INSERT (one round trip) instead of a statement per device."""
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    cursor.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([placeholders] * len(rows))} "
        "ON CONFLICT DO NOTHING",
        [value for row in rows for value in row],
    )


def _update_server(cursor, server: MonitoredServer, sample: Sample, now: datetime, created: bool) -> None:
    agent = sample.agent
    labels = agent.get("labels")
    cursor.execute(
        SERVER_UPDATE_SQL,
        [
            now,
            1 if created else 0,
            sample.collected_at if created else None,
            agent.get("version"),
            agent.get("hostname"),
            agent.get("platform"),
            agent.get("python"),
            Jsonb(labels) if labels is not None else None,
            server.id,
        ],
    )
