"""GET /api/fleet/report/: GPU-hours by bottleneck for the fleet, each server and each day, from
the tiers, agreeing with raw rows; sorted by hours lost; CSV; the newest samples included."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection

from monitoring.models import MonitoredServer
from monitoring.report import fleet as report
from monitoring.report.fleet import REPORT_LABELS, UNUSED, USEFUL, WASTED
from monitoring.tasks import classify_server
from monitoring.tiers import definitions as tiers
from tests import samples
from tests.conftest import client_for, make_user, register

pytestmark = pytest.mark.usefixtures("tier_db")


def seed(slug: str, days: float, gpus: int, seed: int) -> MonitoredServer:
    samples.seed_history(slug, days, gpus=gpus, seed=seed)
    return MonitoredServer.objects.get(slug=slug)


def get(**params):
    return client_for(make_user("alice@example.com")).get("/api/fleet/report/", params)


def raw_hours(since) -> dict:
    """GPU-hours per (server slug, label) straight from raw rows (each GPU sample: the interval)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.slug, coalesce(l.label, 'unclassified'), count(*) * m.sample_interval_seconds / 3600 "
            "FROM monitoring_snapshot s JOIN monitoring_gpusample g "
            "ON g.server_id = s.server_id AND g.collected_at = s.collected_at "
            "LEFT JOIN monitoring_snapshotlabel l ON l.server_id = s.server_id AND l.collected_at = s.collected_at "
            "JOIN monitoring_monitoredserver m ON m.id = s.server_id "
            "WHERE s.collected_at >= %s GROUP BY 1, 2, m.sample_interval_seconds",
            [since],
        )
        found = {}
        for slug, label, hours in cursor.fetchall():
            found[(slug, label)] = hours
        return found


def raw_daily_hours(since) -> dict:
    """GPU-hours per UTC date straight from raw rows."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (s.collected_at AT TIME ZONE 'UTC')::date, sum(s.gpu_count * m.sample_interval_seconds) / 3600 "
            "FROM monitoring_snapshot s JOIN monitoring_monitoredserver m ON m.id = s.server_id "
            "WHERE s.collected_at >= %s GROUP BY 1",
            [since],
        )
        return {day.isoformat(): hours for day, hours in cursor.fetchall()}


def sums_up(block: dict) -> bool:
    return abs(sum(block["by_bottleneck"].values()) - block["gpu_hours"]) <= 0.01 * max(1.0, block["gpu_hours"])


@pytest.mark.parametrize(("days", "source"), [(1.5, "1m"), (3, "1h")])
def test_gpu_hours_by_bottleneck_agree_with_raw_rows(days, source):
    seed("a100-01", 3, gpus=4, seed=1)
    seed("a100-02", 3, gpus=2, seed=2)
    data = get(days=days).json()
    assert data["ok"] is True and data["source"] == source
    fleet = data["fleet"]
    assert fleet["servers"] == 2 and sums_up(fleet)
    assert all(sums_up(s) for s in data["servers"]) and all(sums_up(d) for d in data["days"])
    raw = raw_hours(samples.now_minus(days * 86400))
    total = sum(raw.values())
    # The tiers cover whole buckets: the window's first bucket adds at most one bucket per server.
    assert fleet["gpu_hours"] == pytest.approx(total, rel=0.03)
    for label in REPORT_LABELS:
        expected = sum(h for (_, lab), h in raw.items() if lab == label)
        assert abs(fleet["by_bottleneck"][label] - expected) <= 0.03 * total, label
    by_slug = {s["slug"]: s for s in data["servers"]}
    assert by_slug["a100-01"]["gpu_count"] == 4 and by_slug["a100-02"]["gpu_count"] == 2
    assert 0 < fleet["utilization_percent"] < 100 and fleet["energy_kwh"] > 0
    # Every day after the first (which starts on a bucket boundary before the window) is exact,
    # whether it came from the 1-day tier (whole days), the finer tiers or raw rows (today).
    per_day = raw_daily_hours(samples.now_minus(days * 86400))
    assert [d["date"] for d in data["days"]] == sorted(per_day)
    for block in data["days"][1:]:
        assert block["gpu_hours"] == pytest.approx(per_day[block["date"]], abs=0.01), block["date"]
    # The pieces tile the window: from its start rounded down to the source's buckets, the first
    # partial hour from minutes (1m), the first partial day from hours, whole days from days.
    window = report.parse_window({"days": str(days)})
    found = report.pieces(window)
    assert found[0][1] == tiers.floor(window.start, tiers.WIDTH[source]) and found[-1][2] == window.end
    assert all(a[2] == b[1] for a, b in zip(found, found[1:]))
    kinds = [kind for kind, _, _ in found]
    assert "1d" in kinds if days >= 2 else kinds[0] in ("1m", "1h")


def test_servers_are_sorted_by_hours_lost_and_name_their_top_bottleneck():
    seed("a100-01", 1, gpus=4, seed=1)
    seed("a100-02", 1, gpus=1, seed=2)
    servers = get(days=1).json()["servers"]
    lost = [s["lost_gpu_hours"] for s in servers]
    assert lost == sorted(lost, reverse=True)
    for s in servers:
        assert s["lost_gpu_hours"] == pytest.approx(
            sum(v for label, v in s["by_bottleneck"].items() if label not in USEFUL), abs=0.01
        )
        assert s["top_bottleneck"] == max(s["by_bottleneck"], key=s["by_bottleneck"].get)


def test_hours_lost_are_unused_wasted_or_unclassified_for_the_fleet_each_server_and_day():
    assert UNUSED == ("idle",)
    assert set(WASTED) == {"cpu-bound", "io-bound", "memory-bound", "gpu-throttled", "gpu-idle-held"}
    seed("a100-01", 1, gpus=4, seed=1)
    seed("a100-02", 1, gpus=1, seed=2)
    data = get(days=1).json()
    blocks = [data["fleet"], *data["servers"], *data["days"]]
    for block in blocks:
        by = block["by_bottleneck"]
        assert block["unused_gpu_hours"] == pytest.approx(by["idle"], abs=0.002)
        assert block["wasted_gpu_hours"] == pytest.approx(sum(by[label] for label in WASTED), abs=0.005)
    for s in data["servers"]:
        parts = s["unused_gpu_hours"] + s["wasted_gpu_hours"] + s["by_bottleneck"]["unclassified"]
        assert s["lost_gpu_hours"] == pytest.approx(parts, abs=0.01)
    # A day of seeded history has both kinds.
    assert data["fleet"]["unused_gpu_hours"] > 0 and data["fleet"]["wasted_gpu_hours"] > 0


def test_the_newest_samples_count_before_the_tiers_have_them(ingest):
    node = register("fresh-box", "Fresh Box")
    start = samples.now_minus(120)
    for i in range(30):
        ingest.send(node, samples.body(start + timedelta(seconds=2 * i), step=i, gpus=4))
    classify_server(node.server.id)
    data = get(days=1).json()
    box = next(s for s in data["servers"] if s["slug"] == "fresh-box")
    # 30 samples of 4 GPUs, 2 s each: 240 GPU-seconds, all gpu-bound.
    assert box["gpu_hours"] == pytest.approx(240 / 3600, abs=0.002)
    assert box["by_bottleneck"]["gpu-bound"] == pytest.approx(240 / 3600, abs=0.002)
    # The days hold them too (two of them, when the two minutes straddle midnight).
    assert sum(d["gpu_hours"] for d in data["days"]) == pytest.approx(data["fleet"]["gpu_hours"], abs=0.002)


def test_csv_has_a_row_per_server_and_a_column_per_label():
    seed("a100-01", 0.5, gpus=2, seed=1)
    response = get(days=1, format="csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["slug"] for r in rows] == ["a100-01"]
    assert set(REPORT_LABELS) <= set(rows[0])
    assert float(rows[0]["gpu_hours"]) == pytest.approx(sum(float(rows[0][label]) for label in REPORT_LABELS), abs=0.01)
    # The columns it had first keep their places; unused and wasted GPU-hours come last.
    head = response.content.decode().splitlines()[0].split(",")
    assert head[:7] == ["slug", "name", "gpu_count", "gpu_hours", "utilization_percent", "energy_kwh", "lost_gpu_hours"]
    assert head[7:] == [*REPORT_LABELS, "unused_gpu_hours", "wasted_gpu_hours"]
    assert float(rows[0]["unused_gpu_hours"]) == pytest.approx(float(rows[0]["idle"]), abs=0.002)
    wasted = sum(float(rows[0][label]) for label in WASTED)
    assert float(rows[0]["wasted_gpu_hours"]) == pytest.approx(wasted, abs=0.005)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"days": "x"}, "days must be a number"),
        ({"days": "0"}, "days must be more than 0"),
        ({"from": "yesterday"}, "from must be an ISO 8601 time"),
        ({"from": "2026-11-20T00:00:00"}, "from must include a timezone offset"),
        ({"to": "2026-11-20T00:00:00Z"}, "from is required with to"),
        ({"from": "2026-11-21T00:00:00Z", "to": "2026-11-20T00:00:00Z"}, "from must be before to"),
        ({"format": "xml"}, "format must be json or csv"),
    ],
)
def test_bad_parameters_are_400(params, message):
    response = get(**params)
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


def test_from_and_to_choose_the_window():
    seed("a100-01", 2, gpus=2, seed=1)
    end = samples.now_minus(86400).replace(minute=0, second=0, microsecond=0)
    data = get(**{"from": (end - timedelta(hours=6)).isoformat(), "to": end.isoformat()}).json()
    assert data["source"] == "1m" and data["from"] == (end - timedelta(hours=6)).isoformat()
    assert data["fleet"]["gpu_hours"] == pytest.approx(2 * 6, rel=0.03)  # 2 GPUs for 6 hours


def test_signed_out_is_401_and_not_allowlisted_is_403():
    from django.test import Client

    assert Client().get("/api/fleet/report/").status_code == 401
    assert client_for(make_user("bob@example.com")).get("/api/fleet/report/").status_code == 403
