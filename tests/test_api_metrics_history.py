"""GET /api/metrics/history/: the window, downsampling by stride, every field of a point."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from monitoring.tasks import classify_server
from tests import samples
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

POINT_FIELDS = {
    "collected_at",
    "cpu_usage_percent",
    "cpu_iowait_percent",
    "memory_percent",
    "swap_percent",
    "disk_read_bps",
    "disk_write_bps",
    "disk_util_percent",
    "gpu_top_util_percent",
    "bottleneck",
    "gpus",
    "disks",
}


def feed(ingest, node, count, seconds_ago, step_seconds=2, **fields):
    start = samples.now_minus(seconds_ago)
    for i in range(count):
        at = start + timedelta(seconds=step_seconds * i)
        assert ingest.send(node, samples.body(at, step=i, **fields)).status_code == 200
    return start


def get(user, **params):
    return client_for(user).get("/api/metrics/history/", params)


def test_it_returns_points_in_time_order_with_every_field(alice, box, ingest):
    start = feed(ingest, box, 10, seconds_ago=100)
    classify_server(box.server.id)
    data = get(alice, server="gpu-box-01", minutes=5).json()
    assert data["ok"] is True and data["minutes"] == 5 and data["stride"] == 1
    assert data["point_count"] == 10 == len(data["points"])
    assert data["selected_server"]["slug"] == "gpu-box-01" and len(data["servers"]) == 1
    times = [p["collected_at"] for p in data["points"]]
    assert times == sorted(times) and times[0] == start.isoformat()
    last = data["points"][-1]
    assert set(last) >= POINT_FIELDS
    assert last["cpu_usage_percent"] == 32.1 and last["memory_percent"] == 72.3
    assert last["disk_read_bps"] == pytest.approx(200_000_000) and last["disk_util_percent"] == pytest.approx(60)
    assert last["gpu_top_util_percent"] == 98.0 and last["bottleneck"] == "gpu-bound"
    assert last["gpus"] == [
        {
            "gpu_index": i,
            "utilization_gpu_percent": 98.0,
            "memory_percent": 80.0,
            "temperature_c": 64.0,
            "power_w": 311.0,
            "pcie_rx_bytes_per_s": 6.5e9,
            "pcie_tx_bytes_per_s": 1.2e9,
            # From the energy counter: 600 J in each 2 s.
            "energy_w": 300.0,
            "energy_joules": 600.0,
        }
        for i in range(4)
    ]
    assert data["points"][0]["gpus"][0]["energy_w"] is None  # nothing before it to derive from
    assert data["xid_errors"] == []
    assert [d["device"] for d in last["disks"]] == ["nvme0n1", "nvme1n1"]
    assert last["disks"][0]["read_bps"] == pytest.approx(100_000_000)


def test_a_coarser_point_sums_energy_and_averages_power(alice, box, ingest, settings):
    feed(ingest, box, 30, seconds_ago=100)
    settings.MONITORING_HISTORY_MAX_POINTS = 10  # 30 samples in 10 points of 3 each
    data = get(alice, minutes=5, source="raw").json()
    assert data["stride"] > 1
    gpu0 = [p["gpus"][0] for p in data["points"]]
    # Every 2 s after the first sample drew 600 J, at 300 W: the points' sums add up to all of it.
    assert sum(g["energy_joules"] or 0 for g in gpu0) == pytest.approx(600.0 * 29, abs=0.1)
    # The first point may hold only the first sample, which has no earlier one to derive power from.
    assert len(gpu0) > 1 and gpu0[0]["energy_w"] in (None, 300.0)
    assert [g["energy_w"] for g in gpu0[1:]] == [300.0] * (len(gpu0) - 1)


def test_xid_errors_show_in_the_window_once_each(alice, box, ingest):
    start = samples.now_minus(60)
    xid = [{"xid": 79, "at": (start + timedelta(seconds=1)).isoformat()}]
    body = samples.body(start + timedelta(seconds=2), gpus=2)
    body["sample"]["gpus"][1]["xid_errors"] = xid
    assert ingest.send(box, body).status_code == 200
    assert ingest.send(box, body).status_code == 200  # resent: stored once
    history = get(alice, minutes=5).json()
    assert history["xid_errors"] == [
        {
            "gpu_index": 1,
            "xid": 79,
            "at": (start + timedelta(seconds=1)).isoformat(),
            "meaning": "GPU has fallen off the bus",
        }
    ]
    latest = client_for(alice).get("/api/metrics/latest/").json()
    devices = latest["snapshot"]["gpu"]["devices"]
    assert devices[0]["xid_errors"] == [] and devices[1]["xid_errors"] == history["xid_errors"]


def test_it_keeps_only_the_window(alice, box, ingest):
    feed(ingest, box, 3, seconds_ago=3 * 3600)
    feed(ingest, box, 4, seconds_ago=60)
    assert get(alice, minutes=10).json()["point_count"] == 4


def aligned_start(seconds_ago: float, step: int):
    """A start time on a multiple of `step` seconds, so that time buckets split samples predictably."""
    moment = samples.now_minus(seconds_ago).replace(microsecond=0)
    return moment - timedelta(seconds=moment.timestamp() % step)


def test_it_downsamples_by_stride_to_the_point_limit(alice, box, ingest, settings):
    settings.MONITORING_HISTORY_MAX_POINTS = 10
    start = aligned_start(55, 6)
    for i in range(24):
        ingest.send(box, samples.body(start + timedelta(seconds=2 * i), step=i))
    data = get(alice, minutes=1, source="raw").json()
    # 60 s in at most 10 points: 6 s a point, 3 samples of 2 s each.
    assert data["stride"] == 3 and data["resolution_seconds"] == 6.0
    assert data["point_count"] <= 10
    assert all(len(p["gpus"]) == 4 and len(p["disks"]) == 2 for p in data["points"])


def test_a_point_stands_for_the_average_of_its_samples(alice, box, ingest, settings):
    settings.MONITORING_HISTORY_MAX_POINTS = 30
    start = aligned_start(100, 4)
    for i, cpu in enumerate([10.0, 20.0, 60.0, 80.0] * 5):
        ingest.send(box, samples.body(start + timedelta(seconds=2 * i), step=i, cpu_usage_percent=cpu))
    data = get(alice, minutes=2, source="raw").json()
    assert data["stride"] == 2
    points = data["points"]
    assert points[0]["collected_at"] == start.isoformat()
    assert [p["cpu_usage_percent"] for p in points[:4]] == [15.0, 70.0, 15.0, 70.0]


@pytest.mark.parametrize(("asked", "served"), [("0", 1), ("-5", 1), ("30", 30), ("999999", 90 * 24 * 60), (None, 60)])
def test_minutes_are_clamped(alice, box, ingest, asked, served):
    feed(ingest, box, 1, seconds_ago=5)
    params = {} if asked is None else {"minutes": asked}
    assert get(alice, **params).json()["minutes"] == served


@pytest.mark.parametrize("bad", ["ten", "1.5", "1e3", ""])
def test_a_non_integer_minutes_is_400(alice, box, bad):
    response = get(alice, minutes=bad)
    if bad == "":
        assert response.status_code == 200  # empty means the default
    else:
        assert response.status_code == 400
        assert response.json()["error"].startswith("minutes must be a whole number")


def test_source_raw_is_accepted_and_reported(alice, box, ingest):
    feed(ingest, box, 2, seconds_ago=10)
    assert get(alice, source="raw").json()["source"] == "raw"
    assert get(alice, source="weekly").status_code == 400


def test_a_server_without_data_has_an_empty_history(alice, box):
    data = get(alice).json()
    assert data["points"] == [] and data["point_count"] == 0


def test_no_servers_is_404(alice):
    assert get(alice).status_code == 404


def test_bob_gets_403_and_anonymous_401(bob, box):
    assert get(bob).status_code == 403
    assert Client().get("/api/metrics/history/").status_code == 401


def test_raw_over_a_window_longer_than_the_limit_is_refused(alice, box, ingest, settings):
    feed(ingest, box, 3, seconds_ago=60)
    settings.MONITORING_RAW_MAX_MINUTES = 120
    response = get(alice, minutes=121, source="raw")
    assert response.status_code == 400
    assert response.json()["error"].startswith("source=raw serves windows of at most 120 minutes")
    assert get(alice, minutes=120, source="raw").status_code == 200


def test_auto_never_picks_raw_past_the_limit(alice, box, ingest, settings):
    feed(ingest, box, 3, seconds_ago=60)
    settings.MONITORING_RAW_MAX_MINUTES = 30
    response = get(alice, minutes=60)
    assert response.status_code == 200 and response.json()["source"] == "1m"
