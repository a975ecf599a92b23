from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from monitoring.dashboard import mail_off

# The admin has no password form of its own: it signs in through allauth's (Google, or the
# rate-limited password form where that is on), then checks is_staff.
admin.site.login = secure_admin_login(admin.site.login)

# An exception nobody caught: 503 while the database is out of reach, else Django's 500.
handler500 = "monitoring.dashboard.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
]
if settings.MONITORING_MAIL == "off":
    # Pages that only work by sending mail are not there when no mail can be sent.
    urlpatterns += [
        path("accounts/email/", mail_off),
        path("accounts/password/reset/", mail_off),
    ]
urlpatterns += [
    path("accounts/", include("allauth.urls")),
    path("", include("monitoring.urls")),
]
