"""Asking the Celery worker to classify a server, without ever slowing ingest down.

At most one request is pending per server: a Redis key set with NX marks it, and
the task deletes the key as it starts, so samples that arrive while it runs ask
again. If Redis is unreachable the request is skipped (for a few seconds, without
trying again) and the beat sweeper classifies the samples once the broker is back.
"""

from __future__ import annotations

import contextlib
import logging
import time

import redis
from celery import current_app
from django.conf import settings

log = logging.getLogger(__name__)

# By name, so that this module does not import tasks (whose classify_server clears the mark).
CLASSIFY_TASK = "monitoring.tasks.classify_server"
PENDING_TTL_SECONDS = 60
BROKER_DOWN_BACKOFF_SECONDS = 5.0

_client: redis.Redis | None = None
_skip_until = 0.0


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _client


def pending_key(server_id: int) -> str:
    return f"{settings.MONITORING_REDIS_PREFIX}:classify-pending:{server_id}"


def clear_pending(server_id: int) -> None:
    try:
        _redis().delete(pending_key(server_id))
    except redis.RedisError as exc:
        log.warning("could not clear the pending mark of server %s: %s", server_id, exc)


def request_classification(server_id: int) -> bool:
    """Enqueue classify_server(server_id) unless one is pending; True when enqueued."""
    global _skip_until
    if time.monotonic() < _skip_until:
        return False
    key = pending_key(server_id)
    try:
        if not _redis().set(key, "1", nx=True, ex=PENDING_TTL_SECONDS):
            return False
        current_app.send_task(CLASSIFY_TASK, args=(server_id,), retry=False)
        return True
    except Exception as exc:  # redis.RedisError or kombu's OperationalError: the broker is down
        _skip_until = time.monotonic() + BROKER_DOWN_BACKOFF_SECONDS
        log.warning("broker unavailable, classification of server %s left to the sweeper: %s", server_id, exc)
        with contextlib.suppress(redis.RedisError):
            _redis().delete(key)
        return False
