"""Celery tasks: thin, id-taking, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from . import compression, maintenance, retention, tier_refresh, tiers
from .classification import classify_pending, servers_with_stale_pending
from .queue import clear_pending

log = logging.getLogger(__name__)


@shared_task(autoretry_for=(Exception,), retry_backoff=True, retry_kwargs={"max_retries": 5})
def classify_server(server_id: int) -> int:
    """Classify every unclassified snapshot of one server (a vanished server has none)."""
    # Cleared first: samples stored while this runs ask for another pass.
    clear_pending(server_id)
    total, more = 0, True
    while more:
        done, more = classify_pending(server_id)
        total += done
    return total


@shared_task
def sweep_unclassified() -> int:
    """Catch what a lost classify_server left behind (broker down, worker killed)."""
    servers = servers_with_stale_pending(settings.MONITORING_SWEEP_GRACE_SECONDS)
    for server_id in servers:
        classify_server.apply_async((server_id,))
    if servers:
        log.info("sweeper: classification requested for %d server(s)", len(servers))
    return len(servers)


@shared_task
def refresh_tiers() -> dict:
    """Bring the tiers up to date, whichever backend made them (see tiers.py)."""
    with maintenance.recorded(maintenance.REFRESH) as run:
        backend = tiers.installed_backend()
        if backend == "rollup":
            done = tier_refresh.refresh_rollups()
            run.skipped = done is None
            return done or {}
        if backend == "continuous":
            run.skipped = not tier_refresh.refresh_continuous()
        return {}


@shared_task
def compress_chunks() -> int:
    """Compress raw chunks past MONITORING_COMPRESS_AFTER_DAYS (full edition; nothing elsewhere)."""
    with maintenance.recorded(maintenance.COMPRESS) as run:
        done = compression.compress_old_chunks()
        run.skipped = done is None
    if done:
        log.info("compression: compressed %d chunk(s)", len(done))
    return len(done or [])


@shared_task
def apply_retention() -> int:
    """Drop the chunks past each tier's retention policy."""
    with maintenance.recorded(maintenance.RETENTION):
        dropped = retention.apply()
    if dropped:
        log.info("retention: dropped %d chunk(s), %d bytes", len(dropped), sum(c.bytes for c in dropped))
    return len(dropped)
