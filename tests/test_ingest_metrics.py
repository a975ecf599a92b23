"""POST /api/ingest/servers/<slug>/metrics/: auth, both body forms, the response, errors."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from monitoring.models import DiskSample, GpuSample, MonitoredServer, Snapshot
from monitoring.tasks import classify_server
from tests import samples
from tests.samples import utc

pytestmark = pytest.mark.django_db

T0 = utc(2026, 2, 26, 2, 37, 49, 120000)


def counts() -> tuple[int, int, int]:
    return Snapshot.objects.count(), GpuSample.objects.count(), DiskSample.objects.count()


def test_it_stores_a_sample_and_answers_with_the_contract_shape(ingest, box):
    response = ingest.send(box, samples.body(T0))
    assert response.status_code == 200
    data = response.json()
    assert data["ok"] is True
    assert data["server"] == {
        "id": box.server.id,
        "slug": "gpu-box-01",
        "name": "GPU Box 01",
        "hostname": "train01",
        "is_active": True,
    }
    snap = data["snapshot"]
    assert set(snap) == {
        "id",
        "collected_at",
        "bottleneck",
        "cpu_usage_percent",
        "top_gpu_util_percent",
        "disk_util_percent",
    }
    assert snap["collected_at"] == "2026-02-26T02:37:49.120000+00:00"
    assert snap["cpu_usage_percent"] == 32.1
    assert snap["top_gpu_util_percent"] == 98.0
    assert snap["bottleneck"] is None  # classification happens after the response
    assert isinstance(snap["id"], int)
    assert counts() == (1, 4, 2)


def test_it_stores_every_field_of_the_sample(ingest, box):
    ingest.send(box, samples.body(T0))
    row = Snapshot.objects.get()
    for field, value in samples.BASE_SAMPLE.items():
        assert getattr(row, field) == value, field
    assert row.gpu_count == 4
    gpu = GpuSample.objects.get(gpu_index=2)
    expected = samples.gpu(2)
    assert expected.pop("xid_errors") == []  # events: a table of their own
    for field, value in expected.items():
        assert getattr(gpu, field) == value, field
    assert gpu.energy_w is None  # no earlier sample to derive it from
    nvme = DiskSample.objects.get(device="nvme0n1")
    for field, value in samples.disk("nvme0n1").items():
        assert getattr(nvme, field) == value, field


def test_it_accepts_the_bearer_header(ingest, box):
    response = ingest.send(box, samples.body(T0), header="authorization")
    assert response.status_code == 200


def test_it_accepts_the_raw_sample_form(ingest, box):
    response = ingest.send(box, samples.sample(T0, gpus=1, disks=0))
    assert response.status_code == 200
    assert counts() == (1, 1, 0)


def test_it_uses_now_when_collected_at_is_missing(ingest, box):
    before = timezone.now()
    response = ingest.send(box, samples.sample(None, gpus=0, disks=0))
    assert response.status_code == 200
    stored = Snapshot.objects.get().collected_at
    assert before <= stored <= timezone.now()


def test_it_updates_the_server_from_the_agent_block(ingest, box):
    ingest.send(box, samples.body(T0))
    server = box.refresh()
    assert server.hostname == "train01"
    assert server.last_agent_version == "0.1.0"
    assert server.agent_platform.startswith("Linux-")
    assert server.agent_python == "3.12.3"
    assert server.agent_labels == {"rack": "r1", "role": "trainer"}
    assert server.last_seen_at is not None
    assert server.snapshot_count == 1
    assert server.latest_snapshot_at == T0


def test_it_keeps_how_the_agent_was_installed(ingest, box):
    body = samples.body(T0)
    body["agent"]["packaging"] = "deb"
    assert ingest.send(box, body).status_code == 200
    assert box.refresh().agent_packaging == "deb"
    # A sample without the agent block says nothing about the agent: what is stored stays.
    assert ingest.send(box, samples.sample(T0 + timedelta(seconds=2))).status_code == 200
    assert box.refresh().agent_packaging == "deb"
    # An agent that names its version but not its packaging is an older one, put in the deb's place.
    assert ingest.send(box, samples.body(T0 + timedelta(seconds=4))).status_code == 200
    server = box.refresh()
    assert (server.last_agent_version, server.agent_packaging) == ("0.1.0", "")


def test_it_refuses_a_packaging_longer_than_32_characters(ingest, box):
    body = samples.body(T0)
    body["agent"]["packaging"] = "x" * 33
    response = ingest.send(box, body)
    assert response.status_code == 400
    assert "agent.packaging" in response.json()["error"]
    assert box.refresh().agent_packaging == ""


def test_it_rejects_a_missing_token(ingest, box):
    response = ingest.post(box.slug, samples.body(T0))
    assert response.status_code == 401
    assert response.json() == {"ok": False, "error": response.json()["error"]}
    assert "token" in response.json()["error"]
    assert counts() == (0, 0, 0)


def test_it_rejects_a_wrong_token(ingest, box):
    response = ingest.post(box.slug, samples.body(T0), token=box.token + "x")
    assert response.status_code == 401
    assert counts() == (0, 0, 0)


def test_it_rejects_another_servers_token(ingest, box, other_box):
    response = ingest.post(box.slug, samples.body(T0), token=other_box.token)
    assert response.status_code == 401
    assert counts() == (0, 0, 0)


def test_it_answers_404_for_an_unknown_slug(ingest, box):
    response = ingest.post("no-such-box", samples.body(T0), token=box.token)
    assert response.status_code == 404
    assert response.json()["ok"] is False


def test_it_answers_403_for_a_disabled_server(ingest, retired_box):
    response = ingest.send(retired_box, samples.body(T0))
    assert response.status_code == 403
    assert "disabled" in response.json()["error"]
    assert counts() == (0, 0, 0)


def test_it_checks_the_token_before_saying_a_server_is_disabled(ingest, retired_box):
    response = ingest.post(retired_box.slug, samples.body(T0), token="tw_wrong")
    assert response.status_code == 401


def test_it_answers_400_for_invalid_json(ingest, box):
    response = ingest.send(box, None, raw=b'{"sample": {')
    assert response.status_code == 400
    assert response.json()["error"].startswith("body: invalid JSON")


def test_it_names_the_offending_field(ingest, box):
    payload = samples.body(T0)
    payload["sample"]["gpus"][1]["memory_percent"] = 180.0
    response = ingest.send(box, payload)
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error": "sample.gpus[1].memory_percent: must be between 0 and 100"}
    assert counts() == (0, 0, 0)


def test_it_answers_405_for_other_methods(ingest, box):
    response = ingest.client.get(f"/api/ingest/servers/{box.slug}/metrics/")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["ok"] is False


def test_it_answers_413_for_a_body_over_the_limit(ingest, box, settings):
    settings.MONITORING_INGEST_MAX_BODY_BYTES = 2048
    payload = samples.body(T0)
    payload["padding"] = "x" * 4096
    response = ingest.send(box, payload)
    assert response.status_code == 413
    assert counts() == (0, 0, 0)


def test_it_ignores_unknown_fields(ingest, box):
    payload = samples.body(T0)
    payload["sample"]["future_metric"] = {"nested": [1, 2]}
    payload["sample"]["gpus"][0]["nvlink_bandwidth"] = 12
    payload["agent"]["features"] = ["x"]
    assert ingest.send(box, payload).status_code == 200


def test_a_resent_sample_is_stored_once_and_answers_the_stored_snapshot(ingest, box):
    first = ingest.send(box, samples.body(T0)).json()
    changed = samples.body(T0, cpu_usage_percent=99.0)
    second = ingest.send(box, changed)
    assert second.status_code == 200
    assert second.json()["snapshot"] == first["snapshot"]
    assert counts() == (1, 4, 2)
    assert box.refresh().snapshot_count == 1


def test_a_resent_sample_reports_its_bottleneck_once_known(ingest, box):
    ingest.send(box, samples.body(T0))
    assert ingest.send(box, samples.body(T0)).json()["snapshot"]["bottleneck"] is None
    classify_server(box.server.id)
    assert ingest.send(box, samples.body(T0)).json()["snapshot"]["bottleneck"] == "gpu-bound"


def test_the_same_time_on_two_servers_is_two_snapshots(ingest, box, other_box):
    ingest.send(box, samples.body(T0))
    ingest.send(other_box, samples.body(T0))
    assert counts() == (2, 8, 4)


def test_it_derives_rates_from_the_previous_sample(ingest, box):
    ingest.send(box, samples.body(T0, step=0))
    ingest.send(box, samples.body(T0 + timedelta(seconds=2), step=1))
    latest = Snapshot.objects.get(collected_at=T0 + timedelta(seconds=2))
    assert latest.network_rx_bps == pytest.approx(50_000_000)
    assert latest.network_tx_bps == pytest.approx(1_000_000)
    nvme = DiskSample.objects.get(device="nvme0n1", collected_at=latest.collected_at)
    assert nvme.read_bps == pytest.approx(100_000_000)
    assert nvme.write_bps == pytest.approx(5_000_000)
    assert nvme.read_iops == pytest.approx(800)
    assert nvme.util_percent == pytest.approx(60.0)
    assert latest.disk_read_bps == pytest.approx(200_000_000)  # two disks
    assert latest.disk_util_percent == pytest.approx(60.0)
    first = Snapshot.objects.get(collected_at=T0)
    assert first.network_rx_bps is None and first.disk_util_percent is None


def test_a_counter_that_went_backwards_gives_no_rate(ingest, box):
    ingest.send(box, samples.body(T0, step=5))
    response = ingest.send(box, samples.body(T0 + timedelta(seconds=2), step=0))  # the node rebooted
    assert response.status_code == 200
    latest = Snapshot.objects.get(collected_at=T0 + timedelta(seconds=2))
    assert latest.network_rx_bps is None
    assert latest.disk_read_bps is None
    assert DiskSample.objects.filter(collected_at=latest.collected_at, read_bps__isnull=False).count() == 0


def test_a_late_sample_takes_its_rates_from_the_sample_before_it(ingest, box):
    ingest.send(box, samples.body(T0, step=0))
    ingest.send(box, samples.body(T0 + timedelta(seconds=4), step=2))
    ingest.send(box, samples.body(T0 + timedelta(seconds=2), step=1))  # replayed from a spool
    late = Snapshot.objects.get(collected_at=T0 + timedelta(seconds=2))
    assert late.network_rx_bps == pytest.approx(50_000_000)


def test_it_gives_no_rate_across_a_long_gap(ingest, box, settings):
    settings.MONITORING_RATE_MAX_GAP_SECONDS = 60
    ingest.send(box, samples.body(T0, step=0))
    ingest.send(box, samples.body(T0 + timedelta(seconds=120), step=60))
    assert Snapshot.objects.get(collected_at=T0 + timedelta(seconds=120)).network_rx_bps is None


def test_it_refuses_a_sample_from_the_far_future(ingest, box):
    response = ingest.send(box, samples.body(samples.now_minus(-3600)))
    assert response.status_code == 400
    assert "future" in response.json()["error"]
    assert counts() == (0, 0, 0)


def test_nothing_is_half_written_when_the_database_refuses_a_child_row(ingest, box):
    # Force a failure in the middle of the transaction: the snapshot and GPU rows are
    # written before the disk rows, which the database now refuses.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE monitoring_disksample ADD CONSTRAINT no_sdz CHECK (device <> 'sdz')")
    payload = samples.body(T0)
    payload["sample"]["disks"][1]["device"] = "sdz"
    response = ingest.send(box, payload)
    assert response.status_code == 400
    assert counts() == (0, 0, 0)
    server = box.refresh()
    assert server.snapshot_count == 0 and server.last_seen_at is None


def test_the_error_is_one_line_of_json(ingest, box):
    response = ingest.send(box, None, raw=b"[1, 2]")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    data = json.loads(response.content)
    assert data == {"ok": False, "error": "body: must be a JSON object"}
    assert "\n" not in data["error"]


def test_unknown_slug_leaves_servers_untouched(ingest, box):
    ingest.post("gpu-box-99", samples.body(T0), token=box.token)
    assert MonitoredServer.objects.count() == 1


def test_a_database_fault_that_is_not_the_samples_is_503_so_the_agent_retries(ingest, box):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE monitoring_gpusample RENAME COLUMN fan_percent TO fan_percent_old")
    response = ingest.send(box, samples.body(T0))
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert counts() == (0, 0, 0)
