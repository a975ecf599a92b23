"""Reading workload ranges back: the dashboard's list, the workloads of one snapshot's GPU
processes, and retention."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from .models import Workload

# The list shows the workloads seen in the last week, the newest first, at most this many.
RECENT = timedelta(days=7)
LIMIT = 500


def as_dict(workload: Workload, running: bool) -> dict:
    return {
        "server": workload.server.slug,
        "kind": workload.kind,
        "id": workload.workload_id,
        "name": workload.name,
        "user": workload.username,
        "labels": workload.labels,
        "gpus": workload.gpus,
        "first_seen": workload.first_seen.isoformat(),
        "last_seen": workload.last_seen.isoformat(),
        "duration_seconds": round((workload.last_seen - workload.first_seen).total_seconds(), 3),
        "running": running,
    }


def listing(now: datetime, server_id: int | None = None, user: str = "", q: str = "") -> list[dict]:
    """Running and recent workloads of active servers, running first, then by last seen. A
    workload runs when its processes were on the GPUs in its server's newest sample (see _running).
    `user`: an exact user; `q`: a part of the id, the name or the user (any case)."""
    found = Workload.objects.select_related("server").filter(last_seen__gte=now - RECENT, server__is_active=True)
    if server_id is not None:
        found = found.filter(server_id=server_id)
    if user:
        found = found.filter(username=user)
    if q:
        found = found.filter(Q(workload_id__icontains=q) | Q(name__icontains=q) | Q(username__icontains=q))
    rows = [as_dict(w, _running(w)) for w in found[:LIMIT]]
    rows.sort(key=lambda row: not row["running"])  # stable: each part stays newest first
    return rows


def _resolution() -> timedelta:
    return timedelta(seconds=settings.MONITORING_WORKLOAD_RESOLUTION_SECONDS)


def _running(workload: Workload) -> bool:
    """On the GPUs in its server's newest sample, as far as the stored range says: a running range's
    end is written every MONITORING_WORKLOAD_RESOLUTION_SECONDS, and exactly once it has left."""
    newest = workload.server.latest_snapshot_at
    return newest is not None and workload.last_seen >= newest - _resolution()


def for_processes(server_id: int, at: datetime, refs: set[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """The workloads of a sample's GPU processes, by (kind, id): the range of each that holds the
    sample's time (a running range's stored end may be behind by the resolution)."""
    if not refs:
        return {}
    found = Workload.objects.filter(
        server_id=server_id,
        kind__in={kind for kind, _ in refs},
        workload_id__in={ident for _, ident in refs},
        first_seen__lte=at,
        last_seen__gte=at - _resolution(),
    )
    return {
        (w.kind, w.workload_id): {
            "kind": w.kind,
            "id": w.workload_id,
            "name": w.name,
            "user": w.username,
            "labels": w.labels,
        }
        for w in found
        if (w.kind, w.workload_id) in refs
    }


def prune(cutoff: datetime) -> int:
    """Forget the ranges that ended before cutoff (retention: as long as the longest tier keeps
    data, so that a report over any window the tiers answer finds its workloads). Returns how many."""
    deleted, _ = Workload.objects.filter(last_seen__lt=cutoff).delete()
    return deleted
