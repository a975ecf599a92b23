"""Under /api/, every answer that is not a success is the contract's one-line JSON error.

Views answer JSON themselves; this catches what Django makes on its own: the 404 of an
unknown path, the 403 of a failed CSRF check, the 400 of a disallowed Host, the 500 of a
crash. Outside /api/ (the page, sign-in, the admin) people read HTML, and get it.

A header line longer than HEADER_LIMIT is refused here with 431, not by gunicorn, whose own
answer is an HTML page: gunicorn.conf.py lets longer ones through to Django (up to its own,
higher limit), and nginx in production answers the same JSON for those its buffers refuse.
"""

from __future__ import annotations

from http import HTTPStatus

from django.http import HttpRequest, HttpResponse
from django.urls import resolve
from django.utils.html import escape

from .responses import error

API_PREFIX = "/api/"
# The longest header line ("Name: value" and its CRLF) a request may carry: gunicorn's default
# and one of nginx's header buffers (8k).
HEADER_LIMIT = 8190


def _message(request: HttpRequest, status: int) -> str:
    if status == 404:
        return f"no such endpoint: {request.method} {request.path}; see docs/api.md"
    if status == 403:
        return "forbidden: the request failed the CSRF check (send the csrftoken cookie's value as X-CSRFToken)"
    if status >= 500:
        return "internal error; the server's log has the details"
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return f"HTTP {status}"


INGEST_PREFIX = "/api/ingest/"


class IngestFastPathMiddleware:
    """Agents' samples skip the middleware they have no use for: sessions, users, messages,
    CSRF, CSP, static files and the account's. Next after ApiErrorsMiddleware; the Host is
    still checked against ALLOWED_HOSTS (a bad one is the usual 400)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(INGEST_PREFIX):
            return self.get_response(request)
        request.get_host()
        match = resolve(request.path_info)
        return match.func(request, *match.args, **match.kwargs)


def _oversized_header(request: HttpRequest) -> tuple[str, int] | None:
    """The first header whose line is longer than HEADER_LIMIT, as (name, bytes of its line)."""
    for key, value in request.META.items():
        if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key.removeprefix("HTTP_").replace("_", "-").title()
            # The WSGI server decoded the line as Latin-1: one character per byte sent.
            size = len(name) + 2 + len(value) + 2
            if size > HEADER_LIMIT:
                return name, size
    return None


class HeaderLimitMiddleware:
    """431 for a request with a header line longer than HEADER_LIMIT: the contract's JSON under
    /api/ (ingest included, so it runs before IngestFastPathMiddleware), a short page elsewhere."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        found = _oversized_header(request)
        if found is None:
            return self.get_response(request)
        name, size = found
        message = f"request header fields too large: {name} is {size} bytes; at most {HEADER_LIMIT} per header line"
        if request.path_info.startswith(API_PREFIX):
            return error(431, message)
        return HttpResponse(f"<!doctype html><title>431</title><p>{escape(message)}</p>", status=431)


class ApiErrorsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and request.path_info.startswith(API_PREFIX)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            replacement = error(response.status_code, _message(request, response.status_code))
            for header in ("Allow", "Retry-After"):
                if response.has_header(header):
                    replacement[header] = response[header]
            return replacement
        return response
