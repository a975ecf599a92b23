"""GET /api/servers/: the active servers, for allowlisted users only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from monitoring.tasks import classify_server
from tests import samples
from tests.conftest import client_for, make_user

pytestmark = pytest.mark.django_db

CONTRACT_FIELDS = {
    "id",
    "slug",
    "name",
    "hostname",
    "description",
    "is_active",
    "last_seen_at",
    "last_agent_version",
    "snapshot_count",
    "latest_snapshot_at",
}


def test_it_lists_active_servers_with_every_contract_field(alice, box, other_box, retired_box, ingest):
    start = samples.now_minus(20)
    for i in range(3):
        ingest.send(box, samples.body(start + timedelta(seconds=2 * i), step=i))
    response = client_for(alice).get("/api/servers/")
    assert response.status_code == 200
    data = response.json()
    assert data["ok"] is True
    assert [s["slug"] for s in data["servers"]] == ["gpu-box-01", "gpu-box-02"]
    first = data["servers"][0]
    assert set(first) >= CONTRACT_FIELDS
    assert first["id"] == box.server.id and first["name"] == "GPU Box 01"
    assert first["hostname"] == "train01" and first["description"] == "" and first["is_active"] is True
    assert first["last_agent_version"] == "0.1.0"
    assert first["agent_packaging"] == ""  # the test agent does not say how it was installed
    assert first["snapshot_count"] == 3
    assert first["latest_snapshot_at"] == (start + timedelta(seconds=4)).isoformat()
    assert first["last_seen_at"] is not None
    assert data["servers"][1]["snapshot_count"] == 0 and data["servers"][1]["latest_snapshot_at"] is None


def test_the_count_is_exact_right_after_ingest_and_ignores_resends(carol, box, ingest):
    at = samples.now_minus(10)
    ingest.send(box, samples.body(at))
    ingest.send(box, samples.body(at))
    assert client_for(carol).get("/api/servers/").json()["servers"][0]["snapshot_count"] == 1


def test_it_carries_the_overview_figures(alice, box, ingest):
    start = samples.now_minus(20)
    for i in range(3):
        ingest.send(box, samples.body(start + timedelta(seconds=2 * i), step=i))
    classify_server(box.server.id)
    server = client_for(alice).get("/api/servers/").json()["servers"][0]
    assert server["interval_seconds"] == 2.0
    assert server["gpu_top_util_percent"] == 98.0
    assert server["bottleneck"] == {"label": "gpu-bound", "title": "Gpu Bound", "since": start.isoformat()}
    assert server["labels"] == {"rack": "r1", "role": "trainer"}


def test_anonymous_gets_401_json_not_a_redirect(box):
    response = Client().get("/api/servers/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["ok"] is False


def test_bob_is_signed_in_but_not_allowlisted(bob, box):
    response = client_for(bob).get("/api/servers/")
    assert response.status_code == 403
    assert response.json() == {"ok": False, "error": "bob@elsewhere.example is not on the allowlist"}


def test_a_look_alike_domain_is_not_the_allowlisted_one(db):
    eve = make_user("eve@evilcorp.example")
    mallory = make_user("mallory@sub.corp.example")
    assert client_for(eve).get("/api/servers/").status_code == 403
    assert client_for(mallory).get("/api/servers/").status_code == 403


def test_the_allowlist_ignores_case(db, settings):
    settings.MONITORING_ALLOWED_EMAILS = ["dave@example.com"]
    settings.MONITORING_ALLOWED_DOMAINS = ["corp.example"]
    dave = make_user("Dave@Example.COM")
    erin = make_user("erin@CORP.Example")
    assert client_for(dave).get("/api/servers/").status_code == 200
    assert client_for(erin).get("/api/servers/").status_code == 200


def test_a_superuser_needs_no_allowlist(db):
    root = make_user("root@localhost.localdomain", is_superuser=True, is_staff=True)
    assert client_for(root).get("/api/servers/").status_code == 200


def test_an_empty_fleet_is_an_empty_list(alice):
    assert client_for(alice).get("/api/servers/").json() == {"ok": True, "servers": []}


def test_it_refuses_other_methods(alice):
    response = client_for(alice).post("/api/servers/")
    assert response.status_code == 405


def test_it_never_counts_rows_of_a_hypertable(alice, box, ingest):
    ingest.send(box, samples.body(samples.now_minus(5)))
    client = client_for(alice)
    with CaptureQueriesContext(connection) as queries:
        client.get("/api/servers/")
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "monitoring_snapshot" not in sql
