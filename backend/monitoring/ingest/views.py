"""The ingest API: one sample, or a batch of them, from an agent into the hypertables.

One request, one transaction: the snapshots, their GPU, disk and XID rows and the server's
bookkeeping are written together or not at all. A resent sample (same server and
`collected_at`) writes nothing; alone, it answers with what was stored the first time. In a
batch each sample is checked on its own: the refused are listed, the rest stored.
"""

from __future__ import annotations

import logging
import time
import zlib

from django.conf import settings
from django.core.validators import slug_re
from django.db import DatabaseError, DataError, IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from ..db import prepared_cursor
from ..models import MonitoredServer
from ..queue import request_classification
from ..responses import error, json_response, unavailable
from .body import Batch, TooLarge, parse_any
from .store import store_sample, store_samples
from .validation import SampleError, check_not_in_future

log = logging.getLogger(__name__)

SLUG_MAX_LENGTH = MonitoredServer._meta.get_field("slug").max_length
SERVER_SQL = """
SELECT id, slug, name, hostname, is_active, token_hash FROM monitoring_monitoredserver WHERE slug = %s
"""


# slug: (the server as read, when it was read). Per process; a few hundred bytes per server.
_servers: dict[str, tuple[MonitoredServer | None, float]] = {}
# A token that the cached row refuses, or a server it says is disabled, is checked against the
# database before it is refused, at most once per server in this many seconds: a new token or a
# re-enabled server works at once, and wrong tokens cannot make every request a lookup.
RECHECK_SECONDS = 1.0
_rechecked: dict[str, float] = {}


def _find_server(slug: str, fresh: bool = False) -> MonitoredServer | None:
    """The server of a slug, read at most MONITORING_INGEST_SERVER_CACHE_SECONDS ago (`fresh`:
    now): an agent's samples cost no lookup in between. What the cached row would refuse is
    asked again first (_recheck), so only an old token or a newly disabled server may keep
    working within that time."""
    # Anything but a slug (a NUL, say) names no server: the database is not asked.
    if len(slug) > SLUG_MAX_LENGTH or not slug_re.fullmatch(slug):
        return None
    now = time.monotonic()
    cached = _servers.get(slug)
    if not fresh and cached is not None and now - cached[1] < settings.MONITORING_INGEST_SERVER_CACHE_SECONDS:
        return cached[0]
    with prepared_cursor() as cursor:
        cursor.execute(SERVER_SQL, [slug], prepare=True)
        row = cursor.fetchone()
    server = None
    if row is not None:
        server = MonitoredServer(
            id=row[0], slug=row[1], name=row[2], hostname=row[3], is_active=row[4], token_hash=row[5]
        )
    if len(_servers) > 100_000:  # slugs that name nothing, sent on purpose: start over
        _servers.clear()
    _servers[slug] = (server, now)
    return server


def _recheck(slug: str, cached: MonitoredServer | None) -> MonitoredServer | None:
    """The server as the database has it now, unless it was asked within RECHECK_SECONDS (then
    the cached row): the cache may predate a rotated token or a re-enabled server."""
    now = time.monotonic()
    if now - _rechecked.get(slug, -RECHECK_SECONDS) < RECHECK_SECONDS:
        return cached
    if len(_rechecked) > 100_000:
        _rechecked.clear()
    _rechecked[slug] = now
    return _find_server(slug, fresh=True)


def _token(request: HttpRequest) -> str:
    token = request.headers.get("X-Monitoring-Token", "").strip()
    if token:
        return token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


class BodyError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def body_limit() -> int:
    """The most bytes a body may have (inflated): a batch's limit while batches are on."""
    single = settings.MONITORING_INGEST_MAX_BODY_BYTES
    return max(single, settings.MONITORING_INGEST_MAX_BATCH_BYTES) if settings.MONITORING_INGEST_MAX_BATCH else single


def _read_body(request: HttpRequest) -> bytes:
    """The body, inflated if gzip; BodyError when it is over the limit (checked before reading it
    all, and while inflating) or cannot be inflated."""
    limit = body_limit()
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise BodyError(413, f"body is larger than {limit} bytes")
    if not declared and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # No Content-Length: Django sees an empty body, but the server decodes the chunks.
        raw = request.META["wsgi.input"].read(limit + 1)
    else:
        raw = request.read(limit + 1)
    if len(raw) > limit:
        raise BodyError(413, f"body is larger than {limit} bytes")
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding in ("gzip", "x-gzip"):
        return inflate(raw, limit)
    raise BodyError(415, f"Content-Encoding {encoding[:20]!r} is not supported; send gzip or nothing")


def inflate(data: bytes, limit: int) -> bytes:
    """A gzip body inflated, stopping as soon as it passes `limit` bytes (a small body that
    inflates to gigabytes costs at most limit bytes of memory). Several members are read on."""
    out = bytearray()
    try:
        while data:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            out += inflater.decompress(data, limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise BodyError(413, f"body inflates to more than {limit} bytes")
            if not inflater.eof:
                raise BodyError(400, "body: the gzip data is cut short")
            data = inflater.unused_data
    except zlib.error as exc:
        raise BodyError(400, f"body: not valid gzip ({exc})") from None
    return bytes(out)


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
        return unavailable()


def _ingest(request: HttpRequest, server_slug: str) -> HttpResponse:
    # The body first, while no database connection is held: a client that sends it slowly
    # must not keep one of the pool's connections from everyone else.
    try:
        raw, body_error = _read_body(request), None
    except BodyError as exc:
        raw, body_error = b"", exc
    server = _find_server(server_slug) or _recheck(server_slug, None)
    if server is None:
        return error(404, f"unknown server {server_slug!r}; register it with manage.py register_server")
    token = _token(request)
    if not token:
        return error(401, "missing ingest token: send X-Monitoring-Token or Authorization: Bearer")
    if not (server.check_token(token) and server.is_active):
        server = _recheck(server_slug, server)
        if server is None:
            return error(404, f"unknown server {server_slug!r}; register it with manage.py register_server")
    if not server.check_token(token):
        return error(401, "invalid ingest token for this server")
    if not server.is_active:
        return error(403, f"server {server.slug!r} is disabled")

    if body_error is not None:
        return error(body_error.status, str(body_error))
    now = timezone.now()
    try:
        parsed = parse_any(
            raw,
            now,
            settings.MONITORING_FUTURE_TOLERANCE_SECONDS,
            settings.MONITORING_INGEST_MAX_BATCH,
            settings.MONITORING_INGEST_MAX_BODY_BYTES,
        )
    except TooLarge as exc:
        return error(413, str(exc))
    except SampleError as exc:
        return error(400, str(exc))
    if isinstance(parsed, Batch):
        return _ingest_batch(server, parsed, now)
    sample = parsed
    try:
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
    return json_response({"ok": True, "server": _server_block(server, sample.agent), "snapshot": snapshot})


def _server_block(server: MonitoredServer, agent: dict) -> dict:
    return {
        "id": server.id,
        "slug": server.slug,
        "name": server.name,
        "hostname": agent.get("hostname", server.hostname),
        "is_active": server.is_active,
    }


def _ingest_batch(server: MonitoredServer, batch: Batch, now) -> HttpResponse:
    """Store every sample of a batch that passed, in one transaction; list the refused."""
    refused = list(batch.refused)
    samples = [sample for _, sample in batch.samples]
    written: dict = {}
    if samples:
        try:
            with transaction.atomic():
                written = store_samples(server.id, samples, batch.agent, now)
        except (DataError, IntegrityError) as exc:
            # A value the validator let through but the database refused: find it by storing the
            # samples one at a time, in time order, each in a savepoint of its own.
            log.warning("ingest: a batch of %s refused by the database: %s", server.slug, exc)
            written = {}
            for index, sample in sorted(batch.samples, key=lambda item: item[1].collected_at):
                try:
                    with transaction.atomic():
                        written.update(store_samples(server.id, [sample], batch.agent, now))
                except (DataError, IntegrityError):
                    refused.append({"index": index, "error": f"samples[{index}]: refused by the database"})
            refused.sort(key=lambda item: item["index"])
            samples = [s for i, s in batch.samples if all(r["index"] != i for r in refused)]
    if written:
        transaction.on_commit(lambda: request_classification(server.id))
    body = {
        "ok": bool(samples),
        "server": _server_block(server, batch.agent),
        "accepted": len(written),
        "duplicates": len(samples) - len(written),
        "refused": refused,
    }
    return json_response(body, status=200 if samples else 400)
