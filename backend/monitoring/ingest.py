"""The ingest API: one sample from an agent into the hypertables.

One request, one transaction: the snapshot, its GPU and disk rows and the server's
bookkeeping are written together or not at all. A resent sample (same server and
`collected_at`) answers with what was stored the first time and writes nothing.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.validators import slug_re
from django.db import DatabaseError, DataError, IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from .models import MonitoredServer
from .queue import request_classification
from .responses import error, json_response, unavailable
from .store import prepared_cursor, store_sample
from .validation import SampleError, check_not_in_future, parse_body

log = logging.getLogger(__name__)

SLUG_MAX_LENGTH = MonitoredServer._meta.get_field("slug").max_length
SERVER_SQL = """
SELECT id, slug, name, hostname, is_active, token_hash FROM monitoring_monitoredserver WHERE slug = %s
"""


def _find_server(slug: str) -> MonitoredServer | None:
    # Anything but a slug (a NUL, say) names no server: the database is not asked.
    if len(slug) > SLUG_MAX_LENGTH or not slug_re.fullmatch(slug):
        return None
    with prepared_cursor() as cursor:
        cursor.execute(SERVER_SQL, [slug], prepare=True)
        row = cursor.fetchone()
    if row is None:
        return None
    return MonitoredServer(id=row[0], slug=row[1], name=row[2], hostname=row[3], is_active=row[4], token_hash=row[5])


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
    if not declared and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # No Content-Length: Django sees an empty body, but the server decodes the chunks.
        raw = request.META["wsgi.input"].read(limit + 1)
    else:
        raw = request.read(limit + 1)
    return None if len(raw) > limit else raw


@csrf_exempt
def ingest_metrics(request: HttpRequest, server_slug: str) -> HttpResponse:
    if request.method != "POST":
        response = error(405, f"method {request.method} is not allowed; POST one sample")
        response["Allow"] = "POST"
        return response
    try:
        return _ingest(request, server_slug)
    except DatabaseError as exc:
        # Unreachable, or refusing for reasons of its own (e.g. a schema behind the code):
        # not the sample's fault, so the agent keeps it and retries.
        log.warning("ingest: database unavailable: %s", exc)
        return unavailable("the database is unavailable; retry later")


def _ingest(request: HttpRequest, server_slug: str) -> HttpResponse:
    # The body first, while no database connection is held: a client that sends it slowly
    # must not keep one of the pool's connections from everyone else.
    raw = _read_body(request)
    server = _find_server(server_slug)
    if server is None:
        return error(404, f"unknown server {server_slug!r}; register it with manage.py register_server")
    token = _token(request)
    if not token:
        return error(401, "missing ingest token: send X-Monitoring-Token or Authorization: Bearer")
    if not server.check_token(token):
        return error(401, "invalid ingest token for this server")
    if not server.is_active:
        return error(403, f"server {server.slug!r} is disabled")

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
        snapshot, created = store_sample(server.id, sample, sample.agent, now)
    except (DataError, IntegrityError) as exc:
        # A value the validator let through but the database refused: the sample's fault.
        log.warning("ingest: %s refused by the database: %s", server.slug, exc)
        return error(400, "sample: refused by the database; check the values' ranges")
    if created or snapshot["bottleneck"] is None:
        transaction.on_commit(lambda: request_classification(server.id))
    return json_response(
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
