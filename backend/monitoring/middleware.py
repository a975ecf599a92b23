"""Under /api/, every answer that is not a success is the contract's one-line JSON error.

Views answer JSON themselves; this catches what Django makes on its own: the 404 of an
unknown path, the 403 of a failed CSRF check, the 400 of a disallowed Host, the 500 of a
crash. Outside /api/ (the page, sign-in, the admin) people read HTML, and get it.
"""

from __future__ import annotations

from http import HTTPStatus

from django.http import HttpRequest, HttpResponse
from django.urls import resolve

from .responses import error

API_PREFIX = "/api/"


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
