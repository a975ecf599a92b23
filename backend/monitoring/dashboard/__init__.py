"""The dashboard: the page, the JSON APIs it reads, and who may see them. The rest of the project
imports this module only; its modules are:

- views.py: the page, /healthz, and the error pages (503 JSON under /api/ while the database is gone);
- api.py: the dashboard's JSON endpoints (servers, latest, history, alerts, fleet report, workloads);
- auth.py: Google sign-in limited to the allowlist, and the dashboard APIs' access and limits.
"""

from __future__ import annotations

from ..packages import public

PUBLIC = {
    "views": ("dashboard", "healthz", "mail_off", "server_error"),
    "api": ("alerts_view", "fleet_report_view", "history_view", "latest_view", "servers_view", "workloads_view"),
    "auth": ("AllowlistSocialAccountAdapter", "ClosedSignupAccountAdapter"),
}
__all__, __getattr__, __dir__ = public(__name__, PUBLIC)
