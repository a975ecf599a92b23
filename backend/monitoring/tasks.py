"""Celery tasks: thin, id-taking, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from . import alerts, classify, maintenance, queue, tiers

log = logging.getLogger(__name__)


# Servers classified together by one set of statements.
SERVERS_PER_PASS = 200


@shared_task(autoretry_for=(Exception,), retry_backoff=True, retry_kwargs={"max_retries": 5})
def classify_waiting() -> int:
    """Classify every server waiting in Redis (see queue.py), a group at a time."""
    # Cleared first: servers that get samples while this runs queue the next task.
    queue.clear_queued()
    total = 0
    while servers := queue.take_waiting(SERVERS_PER_PASS):
        try:
            total += _classify(servers)
        except Exception:
            # Left to the retry, and to the sweeper should the retries fail too.
            for server_id in servers:
                queue.request_classification(server_id)
            raise
    return total


@shared_task(autoretry_for=(Exception,), retry_backoff=True, retry_kwargs={"max_retries": 5})
def classify_server(server_id: int) -> int:
    """Classify every unclassified snapshot of one server (a vanished server has none)."""
    return _classify([server_id])


def _classify(servers: list[int]) -> int:
    """Classify the servers' pending snapshots, a pass at a time while any has more, then
    evaluate the alert rules over what was labelled."""
    total, labelled = 0, {}
    while servers:
        done = classify.classify_servers(servers, labelled=labelled)
        total += sum(count for count, _ in done.values())
        # A server with more than one pass of backlog goes round again.
        servers = [server_id for server_id, (_, more) in done.items() if more]
    try:
        alerts.evaluate_labelled(labelled)
    except Exception:
        # The labels are stored; a rule that cannot be evaluated must not undo them.
        log.exception("alert rules could not be evaluated for servers %s", sorted(labelled))
    return total


@shared_task
def evaluate_offline_alerts() -> int:
    """Offline rules: servers without a sample for a rule's `for` fire, those back resolve; and
    episodes of rules or servers since disabled (or no longer selected) resolve."""
    return alerts.evaluate_offline()


@shared_task
def deliver_alert(delivery_id: int) -> str:
    return alerts.deliver(delivery_id)


@shared_task
def deliver_due_alerts() -> int:
    """Notices whose try is due: failed before, or never handed to the worker."""
    ids = alerts.due()
    for delivery_id in ids:
        alerts.deliver(delivery_id)
    return len(ids)


@shared_task
def sweep_unclassified() -> int:
    """Catch what a lost classify_server left behind (broker down, worker killed)."""
    servers = classify.servers_with_stale_pending(settings.MONITORING_SWEEP_GRACE_SECONDS)
    for server_id in servers:
        classify_server.apply_async((server_id,))
    if servers:
        log.info("sweeper: classification requested for %d server(s)", len(servers))
    return len(servers)


@shared_task
def refresh_tiers() -> dict:
    """Bring the tiers up to date, whichever backend made them (see tiers/)."""
    with maintenance.recorded(maintenance.REFRESH) as run:
        backend = tiers.installed_backend()
        refresher = {"rollup": tiers.refresh_rollups, "continuous": tiers.refresh_continuous}
        if backend not in refresher:
            return {}
        done = refresher[backend]()
        run.skipped = done is None
        return done or {}


@shared_task
def compress_chunks() -> int:
    """Compress raw chunks past MONITORING_COMPRESS_AFTER_DAYS (full edition; nothing elsewhere)."""
    with maintenance.recorded(maintenance.COMPRESS) as run:
        done = tiers.compress_old_chunks()
        run.skipped = done is None
    if done:
        log.info("compression: compressed %d chunk(s)", len(done))
    return len(done or [])


@shared_task
def apply_retention() -> int:
    """Drop the chunks past each tier's retention policy, and resolved alert episodes past
    MONITORING_ALERT_HISTORY_DAYS."""
    with maintenance.recorded(maintenance.RETENTION):
        episodes = alerts.prune()
        dropped = tiers.apply_retention()
    if dropped:
        log.info("retention: dropped %d chunk(s), %d bytes", len(dropped), sum(c.bytes for c in dropped))
    if episodes:
        log.info("retention: deleted %d resolved alert episode(s)", episodes)
    return len(dropped)
