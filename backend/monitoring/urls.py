from __future__ import annotations

from django.urls import path

from . import ingest

urlpatterns = [
    path("api/ingest/servers/<str:server_slug>/metrics/", ingest.ingest_metrics, name="ingest-metrics"),
]
