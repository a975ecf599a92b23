"""System checks that catch a deployment nobody could sign in to."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Warning, register


@register(deploy=True)
def sign_in_is_possible(app_configs, **kwargs):
    problems = []
    if not settings.GOOGLE_CLIENT_ID and not settings.MONITORING_PASSWORD_LOGIN:
        problems.append(
            Warning(
                "Neither Google sign-in (GOOGLE_CLIENT_ID) nor MONITORING_PASSWORD_LOGIN is configured",
                hint="Set GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET; only superusers can use the admin otherwise.",
                id="trainwatch.W001",
            )
        )
    if settings.GOOGLE_CLIENT_ID and not (settings.MONITORING_ALLOWED_EMAILS or settings.MONITORING_ALLOWED_DOMAINS):
        problems.append(
            Warning(
                "The allowlist is empty: every Google account will be refused",
                hint="Set MONITORING_ALLOWED_EMAILS and/or MONITORING_ALLOWED_DOMAINS.",
                id="trainwatch.W002",
            )
        )
    return problems
