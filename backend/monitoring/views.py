"""The dashboard page. Everything on it comes from the dashboard APIs."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .auth import refuse_page, user_is_allowed


def dashboard(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
    if not user_is_allowed(request.user):
        return refuse_page(request, request.user.email)
    return render(request, "monitoring/dashboard.html", {})
