"""The dashboard page. Everything on it comes from the dashboard APIs."""

from __future__ import annotations

import logging
import sys

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views import defaults

from .. import catalogue, maintenance, queue, report, tiers
from ..catalogue import DISPLAY_NAMES
from ..middleware import API_PREFIX
from ..responses import json_response, one_line, unavailable
from .auth import refuse_page, user_is_allowed

log = logging.getLogger(__name__)


def dashboard(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
    if not user_is_allowed(request.user):
        return refuse_page(request, request.user.email)
    config = {
        "maxHistoryMinutes": settings.MONITORING_MAX_HISTORY_MINUTES,
        # The page's labels come from the classifier, in its order, by the names people read; their
        # colours are the page's.
        "labels": [{"name": label, "display": name} for label, name in DISPLAY_NAMES.items()],
        # The fleet report's labels of GPU time that did its job; every other one counts as lost,
        # unused (nothing ran) or wasted (a job held the GPUs and waited).
        "usefulLabels": list(report.USEFUL),
        "unusedLabels": list(report.UNUSED),
        "wastedLabels": list(report.WASTED),
        # How people read each metric, from the catalogue: the charts' titles and units.
        "metrics": {
            block: {m.name: {"title": m.title, "unit": m.unit} for m in catalogue.block(block)}
            for block in ("host", "gpu", "disk")
        },
    }
    return render(request, "monitoring/dashboard.html", {"dashboard_config": config})


def healthz(request: HttpRequest) -> HttpResponse:
    """For load balancers and container health checks: 200 when the database answers, else 503;
    either way it says which part is down (`database`, `broker`: "up" or "down").

    It also reports what needs a person but not another web node, still with 200: the
    database's own jobs that fail, and beat's tier refresh falling behind.
    """
    parts = {"broker": "up" if queue.broker_answers() else "down"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return unavailable(f"the database is unavailable: {_first_line(exc)}", database="down", **parts)
    body = {"ok": True, "database": "up", **parts}
    try:
        body["database_jobs"] = {"failing": [job.to_dict() for job in tiers.failing_jobs()]}
        body["tier_refresh"] = maintenance.refresh_state().to_dict()
    except DatabaseError as exc:
        # E.g. before the migrations ran: the database answers, which is what is asked.
        body["report_error"] = _first_line(exc)
    return json_response(body)


def _first_line(exc: Exception) -> str:
    return one_line((str(exc).strip().splitlines() or [repr(exc)])[0])


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's answer to an exception no view caught (handler500): 503 while the database cannot be
    reached, wherever it was needed (the session, the user, a view), else the usual 500."""
    exc = sys.exception()
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return defaults.server_error(request)
    log.warning("%s %s: database unavailable: %s", request.method, request.path, _first_line(exc))
    response = unavailable()
    if not request.path_info.startswith(API_PREFIX):
        response.content = render_to_string("monitoring/unavailable.html")
        response["Content-Type"] = "text/html; charset=utf-8"
    return response


def mail_off(request: HttpRequest) -> HttpResponse:
    """Password reset and adding an address send mail; with MONITORING_MAIL=off they are not offered."""
    return render(request, "monitoring/mail_off.html", status=404)
