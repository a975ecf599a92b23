from __future__ import annotations

from django.urls import path

from . import dashboard, ingest

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("healthz", dashboard.healthz, name="healthz"),
    path("api/servers/", dashboard.servers_view, name="api-servers"),
    path("api/metrics/latest/", dashboard.latest_view, name="api-metrics-latest"),
    path("api/metrics/history/", dashboard.history_view, name="api-metrics-history"),
    path("api/alerts/", dashboard.alerts_view, name="api-alerts"),
    path("api/fleet/report/", dashboard.fleet_report_view, name="api-fleet-report"),
    path("api/workloads/", dashboard.workloads_view, name="api-workloads"),
    path("api/ingest/servers/<str:server_slug>/metrics/", ingest.ingest_metrics, name="ingest-metrics"),
]
