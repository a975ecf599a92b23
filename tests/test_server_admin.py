"""Servers in the Django admin, and what deleting one takes along."""

from __future__ import annotations

import pytest

from monitoring.models import DiskSample, GpuSample, MonitoredServer, Snapshot
from tests import samples
from tests.conftest import register

pytestmark = pytest.mark.django_db


def test_the_admin_never_shows_the_token(admin_client):
    node = register("gpu-box-01", "GPU Box 01")
    server, token = node.server, node.token
    page = admin_client.get(f"/admin/monitoring/monitoredserver/{server.id}/change/").content.decode()
    assert "gpu-box-01" in page
    assert server.token_hash not in page and token not in page


def test_deleting_a_server_deletes_its_samples(ingest):
    doomed, kept = register("doomed", "Doomed"), register("kept", "Kept")
    at = samples.now_minus(60)
    ingest.send(doomed, samples.body(at))
    ingest.send(kept, samples.body(at))
    MonitoredServer.objects.filter(slug="doomed").delete()
    for model in (Snapshot, GpuSample, DiskSample):
        assert set(model.objects.values_list("server_id", flat=True)) == {kept.server.id}


def test_the_admin_can_disable_servers(admin_client):
    node = register("gpu-box-01", "GPU Box 01")
    admin_client.post("/admin/monitoring/monitoredserver/", {"action": "disable", "_selected_action": [node.server.id]})
    assert node.refresh().is_active is False
