"""Celery tasks: thin, id-taking, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from . import retention, tiers
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
    """Roll up settled dirty buckets (rollup tables; continuous aggregates refresh themselves)."""
    if tiers.installed_backend() != "rollup":
        return {}
    return tiers.refresh_rollups()


@shared_task
def apply_retention() -> int:
    """Drop the chunks past each tier's retention policy."""
    dropped = retention.apply()
    if dropped:
        log.info("retention: dropped %d chunk(s), %d bytes", len(dropped), sum(c.bytes for c in dropped))
    return len(dropped)
