"""What beat does to the database, and when it last managed to.

Beat refreshes the tiers, compresses old raw chunks and applies retention itself, on both
editions: TrainWatch does not rely on TimescaleDB's background jobs (see tiers/dbjobs.py). Each
task records when it last succeeded and failed (`monitoring_maintenancerun`), so that
`manage.py tiers status` and /healthz can say when the tiers stop being refreshed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import Error
from django.utils import timezone

from .models import MaintenanceRun

log = logging.getLogger(__name__)

REFRESH = "refresh_tiers"
COMPRESS = "compress_chunks"
RETENTION = "apply_retention"


@dataclass
class Run:
    task: str
    skipped: bool = False  # another worker holds the task's lock and records its own run


@contextmanager
def recorded(task: str) -> Iterator[Run]:
    """Record the outcome of one run of a beat task (a skipped run records nothing)."""
    run = Run(task)
    try:
        yield run
    except Exception as exc:
        _record(task, failed_at=timezone.now(), error=(str(exc).strip().splitlines() or [repr(exc)])[0][:1000])
        raise
    if not run.skipped:
        _record(task, succeeded_at=timezone.now())


def _record(task: str, **fields) -> None:
    try:
        MaintenanceRun.objects.update_or_create(task=task, defaults=fields)
    except Error:
        # The database the task failed on may be gone too; the worker's log has the error.
        log.warning("could not record the outcome of %s", task, exc_info=True)


def refresh_due() -> timedelta:
    """How old the last successful refresh may be before the tiers count as behind."""
    every = settings.CELERY_BEAT_SCHEDULE["refresh-tiers"]["schedule"]  # MONITORING_TIER_REFRESH_SECONDS
    return max(timedelta(seconds=5 * every), timedelta(minutes=5))


@dataclass(frozen=True)
class RefreshState:
    succeeded_at: datetime | None
    failed_at: datetime | None
    error: str
    behind: bool

    def to_dict(self) -> dict:
        data = {
            "succeeded_at": self.succeeded_at.isoformat() if self.succeeded_at else None,
            "behind": self.behind,
        }
        if self.error:
            data["error"] = self.error
            data["failed_at"] = self.failed_at.isoformat()
        return data


def refresh_state(now: datetime | None = None) -> RefreshState:
    """Beat's tier refresh: when it last succeeded, and whether that is too long ago
    (never having succeeded counts as behind: beat is not running, or not yet)."""
    now = now or timezone.now()
    run = MaintenanceRun.objects.filter(task=REFRESH).first()
    succeeded = run.succeeded_at if run else None
    behind = succeeded is None or now - succeeded > refresh_due()
    error = run.error if run is not None and run.failing else ""
    return RefreshState(succeeded, run.failed_at if run else None, error, behind or bool(error))


def runs() -> list[MaintenanceRun]:
    return list(MaintenanceRun.objects.order_by("task"))
