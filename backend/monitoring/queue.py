"""Asking the Celery worker to classify servers, without ever slowing ingest down.

A server with new samples joins a Redis set of waiting servers; one task at a time is queued for
the whole set (a key set with NX marks it). The task clears the mark as it starts, so servers
that arrive while it runs queue the next one, and takes the waiting servers in groups: one set of
statements classifies a group, however many servers it holds. If Redis is unreachable the request
is skipped (for a few seconds, without trying again) and the beat sweeper classifies the samples
once the broker is back.
"""

from __future__ import annotations

import contextlib
import logging
import time

import redis
from celery import current_app
from django.conf import settings

log = logging.getLogger(__name__)

# By name, so that this module does not import tasks (whose classify_waiting clears the mark).
CLASSIFY_TASK = "monitoring.tasks.classify_waiting"
# A queued task that never ran (a worker killed) stops blocking the next one after this long.
PENDING_TTL_SECONDS = 60
BROKER_DOWN_BACKOFF_SECONDS = 5.0

_client: redis.Redis | None = None
_skip_until = 0.0


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _client


def broker_answers() -> bool:
    """Whether Redis answers now (for /healthz), on the client the queue already holds."""
    try:
        return bool(_redis().ping())
    except redis.RedisError:
        return False


def waiting_key() -> str:
    """The Redis set of servers with samples to classify."""
    return f"{settings.MONITORING_REDIS_PREFIX}:classify-waiting"


def queued_key() -> str:
    """Set while a classify_waiting task is queued and has not started."""
    return f"{settings.MONITORING_REDIS_PREFIX}:classify-queued"


def clear_queued() -> None:
    try:
        _redis().delete(queued_key())
    except redis.RedisError as exc:
        log.warning("could not clear the classification mark: %s", exc)


def take_waiting(count: int) -> list[int]:
    """Up to `count` waiting servers, each taken by one caller only."""
    return sorted(int(member) for member in _redis().spop(waiting_key(), count) or ())


def request_classification(server_id: int) -> bool:
    """Add the server to the waiting ones and queue classify_waiting unless one is queued;
    True when a task was queued."""
    global _skip_until
    if time.monotonic() < _skip_until:
        return False
    key = queued_key()
    try:
        # One round trip for both.
        pipe = _redis().pipeline(transaction=False)
        pipe.sadd(waiting_key(), server_id)
        pipe.set(key, "1", nx=True, ex=PENDING_TTL_SECONDS)
        if not pipe.execute()[1]:
            return False
        current_app.send_task(CLASSIFY_TASK, retry=False)
        return True
    except Exception as exc:  # redis.RedisError or kombu's OperationalError: the broker is down
        _skip_until = time.monotonic() + BROKER_DOWN_BACKOFF_SECONDS
        log.warning("broker unavailable, classification of server %s left to the sweeper: %s", server_id, exc)
        with contextlib.suppress(redis.RedisError):
            _redis().delete(key)
        return False
