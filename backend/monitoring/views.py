"""The dashboard page. Everything on it comes from the dashboard APIs."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from . import catalogue, dbjobs, maintenance, report
from .auth import refuse_page, user_is_allowed
from .bottleneck import LABELS, title_for
from .responses import error, json_response


def dashboard(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
    if not user_is_allowed(request.user):
        return refuse_page(request, request.user.email)
    config = {
        "maxHistoryMinutes": settings.MONITORING_MAX_HISTORY_MINUTES,
        # The page's labels come from the classifier, in its order; their colours are the page's.
        "labels": [{"name": label, "title": title_for(label)} for label in LABELS],
        # The fleet report's labels of GPU time that did its job; every other one counts as lost.
        "usefulLabels": list(report.USEFUL),
        # How people read each metric, from the catalogue: the charts' titles and units.
        "metrics": {
            block: {m.name: {"title": m.title, "unit": m.unit} for m in catalogue.block(block)}
            for block in ("host", "gpu", "disk")
        },
    }
    return render(request, "monitoring/dashboard.html", {"dashboard_config": config})


def healthz(request: HttpRequest) -> HttpResponse:
    """For load balancers and container health checks: 200 when the database answers.

    It also reports what needs a person but not another web node, still with 200: the
    database's own jobs that fail, and beat's tier refresh falling behind.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return error(503, "the database is unavailable")
    body = {"ok": True}
    try:
        body["database_jobs"] = {"failing": [job.to_dict() for job in dbjobs.failing()]}
        body["tier_refresh"] = maintenance.refresh_state().to_dict()
    except DatabaseError as exc:
        # E.g. before the migrations ran: the database answers, which is what is asked.
        body["report_error"] = (str(exc).strip().splitlines() or [repr(exc)])[0]
    return json_response(body)


def mail_off(request: HttpRequest) -> HttpResponse:
    """Password reset and adding an address send mail; with MONITORING_MAIL=off they are not offered."""
    return render(request, "monitoring/mail_off.html", status=404)
