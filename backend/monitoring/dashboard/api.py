"""The dashboard APIs: /api/servers/, /api/metrics/latest/, /api/metrics/history/, and the alerts,
fleet report and workloads.

Signed-in, allowlisted users only (see auth.dashboard_api). Nothing here counts rows
of a hypertable: server counters live on the server row, and the latest snapshot is
found through the server's latest_snapshot_at, which bounds the search to one chunk.
"""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .. import catalogue, report, workloads
from ..catalogue import title_for
from ..models import AlertEpisode, DiskSample, GpuSample, MonitoredServer, Snapshot, SnapshotLabel, XidError
from ..report import HistoryRequestError, history_for, xid_event
from ..responses import error, gzipped, json_response
from .auth import dashboard_api

# Per device: every field the catalogue has of the device (what its agent sent, what ingest derived).
GPU_FIELDS = (catalogue.DEVICE_KEYS["gpu"][0], *catalogue.names(catalogue.columns("gpu")))
DISK_FIELDS = (catalogue.DEVICE_KEYS["disk"][0], *catalogue.names(catalogue.block("disk", derived=True)))
# XID errors count as recent for a day; a GPU shows its newest few.
RECENT_XIDS = timedelta(hours=24)
RECENT_XIDS_PER_GPU = 20
# The snapshot's own figures, by where the catalogue says the latest API shows them.
SHOWN = tuple(m for m in catalogue.block("host") if m.api)


class NoServer(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def select_server(request: HttpRequest) -> tuple[list[MonitoredServer], MonitoredServer]:
    """The `server` parameter (slug or numeric id), else the first server with snapshots, else the first."""
    servers = list(MonitoredServer.objects.filter(is_active=True))
    wanted = request.GET.get("server", "").strip()
    if wanted:
        match = next((s for s in servers if s.slug == wanted), None)
        # Only ASCII digits make an id: isdigit() is true for "²" and "①", which int() refuses.
        if match is None and wanted.isascii() and wanted.isdecimal():
            match = next((s for s in servers if s.id == int(wanted)), None)
        if match is None:
            raise NoServer(f"no active server {wanted!r}")
        return servers, match
    if not servers:
        raise NoServer("no servers yet; register one with manage.py register_server")
    return servers, next((s for s in servers if s.latest_snapshot_at), servers[0])


@gzipped
@dashboard_api
def servers_view(request: HttpRequest) -> HttpResponse:
    servers = MonitoredServer.objects.filter(is_active=True)
    return json_response({"ok": True, "servers": [s.to_dict() for s in servers]})


@gzipped
@dashboard_api
def latest_view(request: HttpRequest) -> HttpResponse:
    try:
        servers, server = select_server(request)
    except NoServer as exc:
        return error(404, exc.message)
    snapshots = _latest_two(server)
    if not snapshots:
        return error(404, f"server {server.slug!r} has no snapshots yet")
    gpus = list(GpuSample.objects.filter(server_id=server.id, collected_at=snapshots[0].collected_at))
    disks = list(DiskSample.objects.filter(server_id=server.id, collected_at=snapshots[0].collected_at))
    return json_response(
        {
            "ok": True,
            "servers": [s.to_dict() for s in servers],
            "selected_server": server.to_dict(),
            "snapshot": snapshot_block(server, snapshots[0], snapshots[1] if len(snapshots) > 1 else None, gpus, disks),
        }
    )


@gzipped
@dashboard_api
def history_view(request: HttpRequest) -> HttpResponse:
    try:
        servers, server = select_server(request)
    except NoServer as exc:
        return error(404, exc.message)
    try:
        body = history_for(server, request.GET.get("minutes"), request.GET.get("source"))
    except HistoryRequestError as exc:
        return error(400, str(exc))
    return json_response(
        {
            "ok": True,
            **body,
            "servers": [s.to_dict() for s in servers],
            "selected_server": server.to_dict(),
        }
    )


def _latest_two(server: MonitoredServer) -> list[Snapshot]:
    if server.latest_snapshot_at is None:
        return []
    newest = server.latest_snapshot_at
    # Bounded by time so that TimescaleDB opens one or two chunks, not all of them.
    return list(
        Snapshot.objects.filter(
            server_id=server.id, collected_at__lte=newest, collected_at__gte=newest - timedelta(days=1)
        ).order_by("-collected_at")[:2]
    )


def _bottleneck(snapshot: Snapshot, server: MonitoredServer) -> dict | None:
    verdict = SnapshotLabel.objects.filter(server_id=server.id, collected_at=snapshot.collected_at).first()
    if verdict is None:
        return None
    since = None
    if server.bottleneck_label == verdict.label and server.bottleneck_since is not None:
        since = server.bottleneck_since.isoformat()
    return {
        "label": verdict.label,
        "title": title_for(verdict.label),
        "confidence": verdict.confidence,
        "reason": verdict.reason,
        "since": since,
    }


def snapshot_block(server, snap: Snapshot, previous: Snapshot | None, gpus, disks) -> dict:
    now = timezone.now()
    block = {
        "id": snap.id,
        "server": server.to_dict(),
        "collected_at": snap.collected_at.isoformat(),
        "age_seconds": round((now - snap.collected_at).total_seconds(), 3),
        "interval_seconds": (snap.collected_at - previous.collected_at).total_seconds() if previous else None,
        "cpu": {},
        "memory": {},
        "disk": {},
        "network": {},
        "gpu": {"present": bool(gpus), "count": len(gpus)},
    }
    for metric in SHOWN:
        group, key = metric.api
        (block[group] if group else block)[key] = getattr(snap, metric.name)
    block["disk"]["devices"] = [{f: getattr(d, f) for f in DISK_FIELDS} for d in sorted(disks, key=lambda d: d.device)]
    xids = recent_xids(server, snap.collected_at)
    block["gpu"]["devices"] = [
        {**{f: getattr(g, f) for f in GPU_FIELDS}, "xid_errors": xids.get(g.gpu_index, [])}
        for g in sorted(gpus, key=lambda g: g.gpu_index)
    ]
    _with_workloads(server, snap.collected_at, block["gpu"]["devices"])
    block["bottleneck"] = _bottleneck(snap, server)
    return block


def _with_workloads(server: MonitoredServer, at, devices: list[dict]) -> None:
    """Each GPU process's workload in full (its row keeps the reference, kind and id; the rest is
    the workload's range). A process an older agent sent has none."""
    processes = [p for d in devices for p in (d["processes"] or ()) if isinstance(p.get("workload"), dict)]
    refs = {(p["workload"].get("kind"), p["workload"].get("id")) for p in processes}
    found = workloads.for_processes(server.id, at, refs)
    for process in processes:
        ref = process["workload"]
        process["workload"] = found.get(
            (ref.get("kind"), ref.get("id")),
            {"kind": ref.get("kind"), "id": ref.get("id"), "name": None, "user": None, "labels": {}},
        )


def recent_xids(server: MonitoredServer, newest) -> dict[int, list[dict]]:
    """Per GPU index, its XID errors of the day before the newest sample, newest first."""
    found: dict[int, list[dict]] = {}
    events = XidError.objects.filter(server_id=server.id, occurred_at__gt=newest - RECENT_XIDS).order_by("-occurred_at")
    for event in events[: RECENT_XIDS_PER_GPU * 64]:
        shown = found.setdefault(event.gpu_index, [])
        if len(shown) < RECENT_XIDS_PER_GPU:
            shown.append(xid_event(event.gpu_index, event.xid, event.occurred_at))
    return found


# Resolved episodes count as recent for a week; the API lists the newest of them.
RECENT_ALERTS = timedelta(days=7)
RECENT_ALERTS_LIMIT = 200


def episode_block(episode: AlertEpisode) -> dict:
    return {
        "id": episode.pk,
        "rule": episode.rule.name,
        "server": episode.server.slug,
        "status": episode.state,
        "started_at": episode.started_at.isoformat(),
        "fired_at": episode.fired_at.isoformat() if episode.fired_at else None,
        "ended_at": episode.ended_at.isoformat() if episode.ended_at else None,
        "value": episode.value,
        "label": episode.label or None,
        "reason": episode.reason or None,
        "silenced": episode.silenced,
    }


@gzipped
@dashboard_api
def alerts_view(request: HttpRequest) -> HttpResponse:
    """Firing and pending episodes, and those resolved in the last week (`server`: one server's)."""
    episodes = AlertEpisode.objects.select_related("rule", "server")
    wanted = request.GET.get("server", "").strip()
    if wanted:
        episodes = episodes.filter(server__slug=wanted)
    since = timezone.now() - RECENT_ALERTS
    recent = episodes.filter(state=AlertEpisode.RESOLVED, ended_at__gte=since).order_by("-ended_at")
    return json_response(
        {
            "ok": True,
            "firing": [episode_block(e) for e in episodes.filter(state=AlertEpisode.FIRING).order_by("-fired_at")],
            "pending": [episode_block(e) for e in episodes.filter(state=AlertEpisode.PENDING).order_by("started_at")],
            "recent": [episode_block(e) for e in recent[:RECENT_ALERTS_LIMIT]],
        }
    )


# What a list filter of the workloads API may hold.
MAX_FILTER = 200


@gzipped
@dashboard_api
def workloads_view(request: HttpRequest) -> HttpResponse:
    """Running and recent workloads (`server`: one server's, by slug or id; `user`: one user's; `q`: a
    part of the id, name or user)."""
    server_id = None
    if request.GET.get("server", "").strip():
        try:
            server_id = select_server(request)[1].id
        except NoServer as exc:
            return error(404, exc.message)
    filters = {}
    for name in ("user", "q"):
        value = request.GET.get(name, "")
        if len(value) > MAX_FILTER:
            return error(400, f"{name}: must be at most {MAX_FILTER} characters")
        if "\x00" in value:
            return error(400, f"{name}: must not contain NUL")
        filters[name] = value.strip()
    return json_response(
        {"ok": True, "workloads": workloads.listing(timezone.now(), server_id, filters["user"], filters["q"])}
    )


@gzipped
@dashboard_api
def fleet_report_view(request: HttpRequest) -> HttpResponse:
    """Where the fleet's GPU-hours went: `days` (7) or `from`/`to`; `format=csv` for spreadsheets."""
    try:
        window = report.parse_window(request.GET)
    except report.ReportRequestError as exc:
        return error(400, str(exc))
    fmt = request.GET.get("format", "json").strip().lower()
    if fmt not in ("json", "csv"):
        return error(400, f"format must be json or csv, not {fmt[:20]!r}")
    body = report.fleet_report(window)
    if fmt == "csv":
        response = HttpResponse(report.as_csv(body), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="trainwatch-fleet-report.csv"'
        return response
    return json_response(body)
