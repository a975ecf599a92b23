from __future__ import annotations

from django.urls import path

from . import api, ingest, views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("api/servers/", api.servers_view, name="api-servers"),
    path("api/metrics/latest/", api.latest_view, name="api-metrics-latest"),
    path("api/metrics/history/", api.history_view, name="api-metrics-history"),
    path("api/alerts/", api.alerts_view, name="api-alerts"),
    path("api/fleet/report/", api.fleet_report_view, name="api-fleet-report"),
    path("api/ingest/servers/<str:server_slug>/metrics/", ingest.ingest_metrics, name="ingest-metrics"),
]
