"""Who may see the dashboard: a signed-in user whose email is on the allowlist.

The allowlist is MONITORING_ALLOWED_EMAILS (exact addresses) and
MONITORING_ALLOWED_DOMAINS (every address of exactly that domain, so
`evilcorp.example` is not `corp.example`), both case-insensitive. Superusers are
always allowed: they can change everything in the admin anyway.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from functools import wraps

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.http import HttpRequest
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from psycopg.errors import QueryCanceled

from ..responses import error, unavailable

log = logging.getLogger(__name__)


def is_allowlisted(email: str | None) -> bool:
    if not email or "@" not in email:
        return False
    email = email.strip().lower()
    domain = email.rsplit("@", 1)[1]
    return email in settings.MONITORING_ALLOWED_EMAILS or domain in settings.MONITORING_ALLOWED_DOMAINS


def user_is_allowed(user) -> bool:
    """Only addresses the user proved are theirs count: Google's verified email, or an
    address confirmed by mail. `user.email` alone is whatever the user typed last."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    verified = EmailAddress.objects.filter(user=user, verified=True).values_list("email", flat=True)
    return any(is_allowlisted(email) for email in verified)


def dashboard_api(view):
    """GET only; 401 JSON when not signed in (never a redirect), 403 JSON when not allowlisted;
    then the view runs within the dashboard's limits (see `within_dashboard_limits`).

    Exempt from the CSRF check: these views change nothing and refuse every other method."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if request.method not in ("GET", "HEAD"):
            response = error(405, f"method {request.method} is not allowed; use GET")
            response["Allow"] = "GET, HEAD"
            return response
        if not request.user.is_authenticated:
            return error(401, "not signed in; sign in at /accounts/login/")
        if not user_is_allowed(request.user):
            return error(403, f"{request.user.email or request.user.get_username()} is not on the allowlist")
        return within_dashboard_limits(view, request, *args, **kwargs)

    return csrf_exempt(wrapper)


_slots: threading.BoundedSemaphore | None = None


def _dashboard_slots() -> threading.BoundedSemaphore:
    # Made on first use, after gunicorn's gevent worker has patched threading.
    global _slots
    if _slots is None:
        _slots = threading.BoundedSemaphore(settings.MONITORING_DASHBOARD_CONCURRENCY)
    return _slots


def within_dashboard_limits(view, request: HttpRequest, *args, **kwargs):
    """Expensive reads never starve ingest: at most MONITORING_DASHBOARD_CONCURRENCY dashboard
    requests per web worker use the database at once (the rest of its connection pool stays
    free for agents), and each one's queries run under a statement timeout."""
    limit = settings.MONITORING_DASHBOARD_STATEMENT_TIMEOUT_SECONDS
    slots = _dashboard_slots()
    if not slots.acquire(blocking=False):
        # Waiting for a slot, hold no connection (signing in used one): give it back to the pool.
        connection.close()
        if not slots.acquire(timeout=limit):
            return unavailable(f"the dashboard is busy with other queries for over {limit} s; retry shortly")
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {int(limit * 1000)}")
            return view(request, *args, **kwargs)
    except OperationalError as exc:
        if isinstance(exc.__cause__, QueryCanceled):
            return error(
                503, f"the query took longer than the dashboard's limit of {limit} s; ask for a shorter window"
            )
        log.warning("dashboard: database unavailable: %s", exc)
        return unavailable()
    finally:
        slots.release()


def refuse_page(request: HttpRequest, email: str | None):
    return render(request, "monitoring/not_allowed.html", {"email": email}, status=403)


class AllowlistSocialAccountAdapter(DefaultSocialAccountAdapter):
    """Google accounts outside the allowlist get a clear page, not an account."""

    def pre_social_login(self, request: HttpRequest, sociallogin) -> None:
        email = _verified_email(sociallogin)
        if sociallogin.user.pk and sociallogin.user.is_superuser:
            return
        if not is_allowlisted(email):
            raise ImmediateHttpResponse(refuse_page(request, email or _any_email(sociallogin)))
        super().pre_social_login(request, sociallogin)

    def is_open_for_signup(self, request: HttpRequest, sociallogin) -> bool:
        return is_allowlisted(_verified_email(sociallogin))


class ClosedSignupAccountAdapter(DefaultAccountAdapter):
    """Nobody signs up with a password: local users are made by an administrator."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        """A mail server that is down costs a logged error, never a 500."""
        try:
            super().send_mail(template_prefix, email, context)
        except (OSError, smtplib.SMTPException) as exc:
            log.error("mail to %s not sent (%s): %s", email, template_prefix, exc)


def _verified_email(sociallogin) -> str | None:
    for address in sociallogin.email_addresses:
        if address.verified:
            return address.email
    return None


def _any_email(sociallogin) -> str | None:
    return next((a.email for a in sociallogin.email_addresses), None) or sociallogin.user.email or None
