"""GET /api/metrics/latest/: server selection, the fallback, the snapshot block, 404s."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from monitoring.tasks import classify_server
from tests import samples
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def feed(ingest, node, count=3, seconds_ago=30.0, **fields):
    start = samples.now_minus(seconds_ago)
    for i in range(count):
        assert ingest.send(node, samples.body(start + timedelta(seconds=2 * i), step=i, **fields)).status_code == 200
    return start + timedelta(seconds=2 * (count - 1))


def get(user, **params):
    return client_for(user).get("/api/metrics/latest/", params)


def test_it_returns_the_newest_snapshot_with_every_block(alice, box, ingest):
    newest = feed(ingest, box)
    classify_server(box.server.id)
    data = get(alice, server="gpu-box-01").json()
    assert data["ok"] is True
    assert data["selected_server"]["slug"] == "gpu-box-01"
    assert [s["slug"] for s in data["servers"]] == ["gpu-box-01"]
    snap = data["snapshot"]
    assert snap["collected_at"] == newest.isoformat()
    assert snap["server"]["slug"] == "gpu-box-01"
    assert isinstance(snap["id"], int)
    assert 0 < snap["age_seconds"] < 60
    assert snap["interval_seconds"] == 2.0
    assert snap["cpu"]["usage_percent"] == 32.1
    assert {k: snap["cpu"][k] for k in ("iowait_percent", "load_1", "load_5", "load_15")} == {
        "iowait_percent": 2.7,
        "load_1": 6.2,
        "load_5": 5.8,
        "load_15": 5.1,
    }
    assert snap["memory"]["percent"] == 72.3 and snap["memory"]["swap_percent"] == 0.0
    assert snap["disk"]["read_bps"] == pytest.approx(200_000_000)
    assert snap["disk"]["write_bps"] == pytest.approx(10_000_000)
    assert snap["disk"]["util_percent"] == pytest.approx(60.0)
    assert [d["device"] for d in snap["disk"]["devices"]] == ["nvme0n1", "nvme1n1"]
    assert snap["disk"]["devices"][0]["read_bps"] == pytest.approx(100_000_000)
    assert snap["disk"]["devices"][0]["util_percent"] == pytest.approx(60.0)
    assert snap["network"]["rx_bps"] == pytest.approx(50_000_000)
    assert snap["gpu"]["present"] is True and snap["gpu"]["count"] == 4
    assert snap["gpu"]["top_util_percent"] == 98.0
    gpu0 = snap["gpu"]["devices"][0]
    expected = samples.gpu(0, step=2)
    assert {k: gpu0[k] for k in expected} == expected
    assert gpu0["energy_w"] == pytest.approx(300.0) and gpu0["energy_joules"] == pytest.approx(600.0)
    bottleneck = snap["bottleneck"]
    assert bottleneck["label"] == "gpu-bound" and bottleneck["title"] == "Gpu Bound"
    assert 0 < bottleneck["confidence"] <= 1 and "GPU 98%" in bottleneck["reason"]
    assert bottleneck["since"] is not None


def test_the_bottleneck_is_null_while_classification_is_pending(alice, box, ingest):
    feed(ingest, box)
    assert get(alice).json()["snapshot"]["bottleneck"] is None


def test_it_shows_every_gpu_field_the_agent_sent(alice, box, ingest):
    payload = samples.body(samples.now_minus(5), gpus=1)
    extras = {
        "fan_percent": 41.0,
        "sm_clock_mhz": 1410.0,
        "sm_clock_max_mhz": 1410.0,
        "memory_clock_mhz": 1593.0,
        "memory_clock_max_mhz": 1593.0,
        "throttle_reasons": ["sw_power_cap"],
        "ecc_errors_corrected": 3,
        "ecc_errors_uncorrected": 0,
        "processes": [{"pid": 4242, "name": "python", "user": "ml", "used_memory_bytes": 1024, "type": "compute"}],
    }
    payload["sample"]["gpus"][0].update(extras)
    ingest.send(box, payload)
    gpu = get(alice).json()["snapshot"]["gpu"]["devices"][0]
    assert {k: gpu[k] for k in extras} == extras


def test_a_host_without_gpus_says_so(alice, box, ingest):
    ingest.send(box, samples.body(samples.now_minus(5), gpus=0))
    gpu = get(alice).json()["snapshot"]["gpu"]
    assert gpu == {"present": False, "count": 0, "top_util_percent": None, "devices": []}


def test_it_selects_by_numeric_id(alice, box, other_box, ingest):
    feed(ingest, other_box)
    data = get(alice, server=str(other_box.server.id)).json()
    assert data["selected_server"]["slug"] == "gpu-box-02"


def test_without_a_server_it_falls_back_to_one_with_snapshots(alice, box, other_box, ingest):
    feed(ingest, other_box)
    assert get(alice).json()["selected_server"]["slug"] == "gpu-box-02"


def test_without_any_snapshots_it_picks_the_first_active_server_and_answers_404(alice, box, other_box):
    response = get(alice)
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error": "server 'gpu-box-01' has no snapshots yet"}


def test_no_servers_is_404(alice):
    response = get(alice)
    assert response.status_code == 404
    assert "no servers yet" in response.json()["error"]


def test_an_unknown_server_is_404(alice, box, ingest):
    feed(ingest, box)
    assert get(alice, server="nope").status_code == 404
    assert get(alice, server="999999").status_code == 404


def test_a_disabled_server_is_not_selectable(alice, retired_box):
    assert get(alice, server="old-box").status_code == 404


def test_the_interval_is_null_for_a_first_sample(alice, box, ingest):
    feed(ingest, box, count=1)
    assert get(alice).json()["snapshot"]["interval_seconds"] is None


def test_bob_gets_403_and_anonymous_401(bob, box, ingest):
    feed(ingest, box)
    assert get(bob).status_code == 403
    assert Client().get("/api/metrics/latest/").status_code == 401


def test_carol_sees_it_through_her_domain(carol, box, ingest):
    feed(ingest, box)
    assert get(carol).status_code == 200
