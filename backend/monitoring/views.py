"""The dashboard page. Everything on it comes from the dashboard APIs."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .auth import refuse_page, user_is_allowed
from .responses import error, json_response


def dashboard(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
    if not user_is_allowed(request.user):
        return refuse_page(request, request.user.email)
    config = {"maxHistoryMinutes": settings.MONITORING_MAX_HISTORY_MINUTES}
    return render(request, "monitoring/dashboard.html", {"dashboard_config": config})


def healthz(request: HttpRequest) -> HttpResponse:
    """For load balancers and container health checks: 200 when the database answers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return error(503, "the database is unavailable")
    return json_response({"ok": True})
