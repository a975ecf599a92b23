"""Who may see the dashboard: a signed-in user whose email is on the allowlist.

The allowlist is MONITORING_ALLOWED_EMAILS (exact addresses) and
MONITORING_ALLOWED_DOMAINS (every address of exactly that domain, so
`evilcorp.example` is not `corp.example`), both case-insensitive. Superusers are
always allowed: they can change everything in the admin anyway.
"""

from __future__ import annotations

from functools import wraps

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings
from django.http import HttpRequest
from django.shortcuts import render

from .responses import error


def is_allowlisted(email: str | None) -> bool:
    if not email or "@" not in email:
        return False
    email = email.strip().lower()
    domain = email.rsplit("@", 1)[1]
    return email in settings.MONITORING_ALLOWED_EMAILS or domain in settings.MONITORING_ALLOWED_DOMAINS


def user_is_allowed(user) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or is_allowlisted(user.email)


def dashboard_api(view):
    """GET only; 401 JSON when not signed in (never a redirect), 403 JSON when not allowlisted."""

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
        return view(request, *args, **kwargs)

    return wrapper


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


def _verified_email(sociallogin) -> str | None:
    for address in sociallogin.email_addresses:
        if address.verified:
            return address.email
    return None


def _any_email(sociallogin) -> str | None:
    return next((a.email for a in sociallogin.email_addresses), None) or sociallogin.user.email or None
