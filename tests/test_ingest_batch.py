"""The batch form of ingest and gzip bodies: each sample checked as a single one, the refused
listed, duplicates stored once, rates in time order across the batch and what is stored, one
transaction and one classification request per batch; and gzip inflated under the limit."""

from __future__ import annotations

import gzip
import json
import time
from datetime import timedelta

import pytest
import requests

from monitoring.models import DiskSample, GpuSample, MonitoredServer, Snapshot, XidError
from monitoring.tasks import classify_server
from tests import samples
from tests.conftest import process_env, register
from tests.labelled import unlabelled

pytestmark = pytest.mark.django_db

T0 = samples.now_minus(600).replace(microsecond=0)


def batch(steps, *, gpus: int = 2, disks: int = 1, start=T0) -> dict:
    """A batch of the samples at these steps (2 s apart, counters advancing with the step)."""
    return {
        "samples": [
            samples.sample(start + timedelta(seconds=2 * step), step=step, gpus=gpus, disks=disks) for step in steps
        ],
        "agent": samples.body()["agent"],
    }


def post(ingest, box, payload, **headers):
    return ingest.client.post(
        f"/api/ingest/servers/{box.slug}/metrics/",
        data=payload if isinstance(payload, bytes) else json.dumps(payload),
        content_type="application/json",
        HTTP_X_MONITORING_TOKEN=box.token,
        **headers,
    )


def stored_times(box) -> list:
    return list(
        Snapshot.objects.filter(server=box.server).order_by("collected_at").values_list("collected_at", flat=True)
    )


def test_a_batch_is_stored_whole_with_its_devices(ingest, box):
    response = post(ingest, box, batch(range(5)))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True and body["accepted"] == 5 and body["duplicates"] == 0 and body["refused"] == []
    assert body["server"]["slug"] == box.slug and body["server"]["hostname"] == "train01"
    assert len(stored_times(box)) == 5
    assert GpuSample.objects.filter(server=box.server).count() == 10
    assert DiskSample.objects.filter(server=box.server).count() == 5
    server = MonitoredServer.objects.get(pk=box.server.pk)
    assert server.snapshot_count == 5 and server.latest_snapshot_at == T0 + timedelta(seconds=8)
    assert server.sample_interval_seconds == 2.0 and server.agent_labels == {"rack": "r1", "role": "trainer"}


def test_one_bad_sample_costs_only_itself(ingest, box):
    payload = batch(range(4))
    payload["samples"][1]["cpu_usage_percent"] = 140
    payload["samples"][2]["gpus"][1]["temperature_c"] = "hot"
    response = post(ingest, box, payload)
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0
    assert body["refused"] == [
        {"index": 1, "error": "samples[1].cpu_usage_percent: must be between 0 and 100"},
        {"index": 2, "error": "samples[2].gpus[1].temperature_c: must be a number"},
    ]
    assert stored_times(box) == [T0, T0 + timedelta(seconds=6)]


def test_every_sample_refused_is_400_with_the_same_fields(ingest, box):
    payload = batch(range(2))
    for item in payload["samples"]:
        del item["collected_at"]
    response = post(ingest, box, payload)
    assert response.status_code == 400
    body = response.json()
    assert body["ok"] is False and body["accepted"] == 0 and body["duplicates"] == 0
    assert [r["error"] for r in body["refused"]] == [
        f"samples[{i}].collected_at: is required in a batch" for i in range(2)
    ]
    assert stored_times(box) == []


@pytest.mark.parametrize(
    ("samples_value", "message"),
    [
        ([], "samples: must have at least one sample"),
        ({"a": 1}, "samples: must be a list of samples"),
        ("x", "samples: must be a list of samples"),
    ],
)
def test_an_empty_or_non_list_batch_is_400(ingest, box, samples_value, message):
    response = post(ingest, box, {"samples": samples_value})
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error": message}


def test_a_batch_over_the_limit_is_400(ingest, box, settings):
    settings.MONITORING_INGEST_MAX_BATCH = 3
    response = post(ingest, box, batch(range(4)))
    assert response.status_code == 400
    assert response.json()["error"] == "samples: must have at most 3 samples"
    assert stored_times(box) == []


def test_with_batches_off_a_batch_is_refused_as_an_older_server_would(ingest, box, settings):
    settings.MONITORING_INGEST_MAX_BATCH = 0
    response = post(ingest, box, batch(range(2)))
    assert response.status_code == 400 and "accepted" not in response.json()
    assert response.json()["error"].startswith("samples: this server takes one sample per request")


def test_a_bad_item_and_a_sample_in_the_future_are_refused_alone(ingest, box):
    payload = batch(range(2))
    payload["samples"].append("not a sample")
    future = samples.sample(samples.now_minus(-3600))
    payload["samples"].append(future)
    body = post(ingest, box, payload).json()
    assert body["accepted"] == 2
    assert body["refused"][0] == {"index": 2, "error": "samples[2]: must be an object"}
    assert body["refused"][1]["index"] == 3 and "in the future" in body["refused"][1]["error"]


def test_resent_and_repeated_samples_are_stored_once(ingest, box):
    assert post(ingest, box, batch(range(3))).json()["accepted"] == 3
    again = batch(range(5))
    again["samples"].append(dict(again["samples"][4]))  # the same sample twice in one batch
    body = post(ingest, box, again).json()
    assert body["accepted"] == 2 and body["duplicates"] == 4 and body["refused"] == []
    assert len(stored_times(box)) == 5
    assert GpuSample.objects.filter(server=box.server).count() == 10
    assert MonitoredServer.objects.get(pk=box.server.pk).snapshot_count == 5


def test_xid_errors_of_a_batch_are_stored_once(ingest, box):
    payload = batch(range(2))
    payload["samples"][1]["gpus"][0]["xid_errors"] = [{"xid": 48, "at": (T0 + timedelta(seconds=1)).isoformat()}]
    post(ingest, box, payload)
    post(ingest, box, payload)
    assert list(XidError.objects.values_list("gpu_index", "xid")) == [(0, 48)]


def test_rates_follow_time_order_across_the_batch_and_what_is_stored(ingest, box):
    # Stored first: steps 0 and 3. The batch, out of order, fills 1, 2, 4.
    post(ingest, box, batch([0, 3]))
    post(ingest, box, batch([4, 2, 1]))
    rates = dict(
        Snapshot.objects.filter(server=box.server)
        .order_by("collected_at")
        .values_list("collected_at", "network_rx_bps")
    )
    assert list(rates.values())[0] is None
    assert list(rates.values())[1:] == [pytest.approx(50_000_000)] * 4
    # Each GPU's power from its energy counter, whichever sample came before it.
    energy = list(
        GpuSample.objects.filter(server=box.server, gpu_index=0)
        .order_by("collected_at")
        .values_list("energy_w", flat=True)
    )
    assert energy[0] is None and energy[1:] == [pytest.approx(300.0)] * 4
    disks = list(
        DiskSample.objects.filter(server=box.server).order_by("collected_at").values_list("read_bps", flat=True)
    )
    assert disks[1:] == [pytest.approx(100_000_000)] * 4


def test_a_gap_longer_than_the_rate_limit_gives_no_rate(ingest, box, settings):
    settings.MONITORING_RATE_MAX_GAP_SECONDS = 3
    post(ingest, box, batch([0, 1, 5]))
    rates = list(
        Snapshot.objects.filter(server=box.server).order_by("collected_at").values_list("network_rx_bps", flat=True)
    )
    assert rates == [None, pytest.approx(50_000_000), None]


def test_one_classification_request_for_a_batch(ingest, box, monkeypatch, django_capture_on_commit_callbacks):
    requested = []
    monkeypatch.setattr("monitoring.ingest.views.request_classification", requested.append)
    with django_capture_on_commit_callbacks(execute=True):
        post(ingest, box, batch(range(20)))
    assert requested == [box.server.id]
    classify_server(box.server.id)
    assert unlabelled(box.server) == 0


def test_gzip_bodies_are_read_in_every_form(ingest, box):
    single = samples.body(T0)
    assert (
        post(ingest, box, gzip.compress(json.dumps(single).encode()), HTTP_CONTENT_ENCODING="gzip").status_code == 200
    )
    minimal = samples.sample(T0 + timedelta(seconds=2), step=1)
    assert (
        post(ingest, box, gzip.compress(json.dumps(minimal).encode()), HTTP_CONTENT_ENCODING="gzip").status_code == 200
    )
    response = post(ingest, box, gzip.compress(json.dumps(batch([2, 3])).encode()), HTTP_CONTENT_ENCODING="gzip")
    assert response.json()["accepted"] == 2
    assert len(stored_times(box)) == 4


def test_a_small_body_that_inflates_past_the_limit_is_413(ingest, box, settings):
    settings.MONITORING_INGEST_MAX_BATCH_BYTES = 100_000
    settings.MONITORING_INGEST_MAX_BODY_BYTES = 50_000
    bomb = gzip.compress(b" " * 50_000_000)  # 50 MB of spaces in about 50 kB
    assert len(bomb) < 100_000
    response = post(ingest, box, bomb, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    assert response.json()["error"] == "body inflates to more than 100000 bytes"


def test_a_single_sample_over_its_limit_is_413_even_inflated(ingest, box, settings):
    settings.MONITORING_INGEST_MAX_BODY_BYTES = 2000
    body = json.dumps(samples.body(T0)).encode()
    assert len(body) > 2000
    response = post(ingest, box, gzip.compress(body), HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("data", "encoding", "status", "message"),
    [
        (b"not gzip at all", "gzip", 400, "body: not valid gzip"),
        (gzip.compress(b'{"sample": {}}')[:-12], "gzip", 400, "body: the gzip data is cut short"),
        (b"{}", "br", 415, "Content-Encoding 'br' is not supported"),
    ],
)
def test_bad_encodings_get_a_clear_error(ingest, box, data, encoding, status, message):
    response = post(ingest, box, data, HTTP_CONTENT_ENCODING=encoding)
    assert response.status_code == status
    assert response.json()["error"].startswith(message)
    assert stored_times(box) == []


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_gzip_batch_over_http_on_real_gunicorn(processes):
    node = register("gpu-box-01", "GPU Box 01")
    base = processes.web(process_env(), workers=1)
    payload = gzip.compress(json.dumps(batch(range(200), gpus=8, disks=2)).encode())
    response = requests.post(
        f"{base}/api/ingest/servers/{node.slug}/metrics/",
        data=payload,
        headers={"X-Monitoring-Token": node.token, "Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 200
    assert Snapshot.objects.filter(server=node.server).count() == 200
    assert GpuSample.objects.filter(server=node.server).count() == 1600


def test_a_rotated_token_or_a_disabled_server_takes_effect_within_the_cache_time(ingest, box, settings):
    from monitoring.ingest import views as ingest_module

    ingest_module._servers.clear()
    settings.MONITORING_INGEST_SERVER_CACHE_SECONDS = 60.0
    assert ingest.send(box, samples.body(T0)).status_code == 200
    server = MonitoredServer.objects.get(pk=box.server.pk)
    server.set_new_token()
    server.save()
    # Within the cache time the server as read before still answers: no lookup per sample.
    assert ingest.send(box, samples.body(T0 + timedelta(seconds=2))).status_code == 200
    settings.MONITORING_INGEST_SERVER_CACHE_SECONDS = 0.2
    time.sleep(0.25)
    assert ingest.send(box, samples.body(T0 + timedelta(seconds=4))).status_code == 401
    MonitoredServer.objects.filter(pk=box.server.pk).update(is_active=False)
    time.sleep(0.25)
    response = ingest.post(box.slug, samples.body(T0 + timedelta(seconds=6)), token=new_token(server))
    assert response.status_code == 403
    ingest_module._servers.clear()


def test_a_new_token_or_a_re_enabled_server_works_at_once(ingest, box, settings):
    from monitoring.ingest import views as ingest_module

    ingest_module._servers.clear()
    ingest_module._rechecked.clear()
    settings.MONITORING_INGEST_SERVER_CACHE_SECONDS = 60.0
    assert ingest.send(box, samples.body(T0)).status_code == 200
    server = MonitoredServer.objects.get(pk=box.server.pk)
    # Rotated: the new token works with the old row still cached; the row read for it then
    # refuses the old token.
    rotated = new_token(server)
    response = ingest.post(box.slug, samples.body(T0 + timedelta(seconds=2)), token=rotated)
    assert response.status_code == 200, response.text
    assert ingest.send(box, samples.body(T0 + timedelta(seconds=4))).status_code == 401
    # Wrong tokens ask the database at most once a second per server: a token rotated just after
    # one was asked for is refused until that second is over, then works.
    assert ingest.post(box.slug, samples.body(T0 + timedelta(seconds=6)), token="wrong").status_code == 401
    again = new_token(server)
    assert ingest.post(box.slug, samples.body(T0 + timedelta(seconds=6)), token=again).status_code == 401
    time.sleep(ingest_module.RECHECK_SECONDS)
    assert ingest.post(box.slug, samples.body(T0 + timedelta(seconds=6)), token=again).status_code == 200
    # Disabled (and cached so), then re-enabled: it works at once.
    MonitoredServer.objects.filter(pk=box.server.pk).update(is_active=False)
    ingest_module._servers.clear()
    assert ingest.post(box.slug, samples.body(T0 + timedelta(seconds=8)), token=again).status_code == 403
    MonitoredServer.objects.filter(pk=box.server.pk).update(is_active=True)
    time.sleep(ingest_module.RECHECK_SECONDS)
    assert ingest.post(box.slug, samples.body(T0 + timedelta(seconds=8)), token=again).status_code == 200
    ingest_module._servers.clear()
    ingest_module._rechecked.clear()


def new_token(server):
    """A fresh token for the server, stored now (the test needs its plain text)."""
    token = server.set_new_token()
    MonitoredServer.objects.filter(pk=server.pk).update(token_hash=server.token_hash)
    return token
