"""Samples that arrive late (a spool replayed after a long outage, an import) show in every view at
once and stay there after the tiers are refreshed, however old they are, on either backend."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from monitoring.tasks import classify_server, refresh_tiers
from monitoring.tiers import definitions as tiers
from monitoring.tiers import refresher as tier_refresh
from tests import samples
from tests.conftest import client_for, make_user, register

pytestmark = pytest.mark.usefixtures("tier_db")

# Hours late: within the refresh window beat always had, and three days back (past it).
LATE_HOURS = (3, 78)
LATE_CPU = 77.0


@pytest.fixture
def late_box(ingest):
    """A server sampled for the last few minutes, its tiers up to date, then sent two old samples."""
    node = register("late-box", "Late Box")
    start = samples.now_minus(300)
    for i in range(30):
        assert ingest.send(node, samples.body(start + timedelta(seconds=10 * i), step=i)).status_code == 200
    classify_server(node.server.id)
    tier_refresh.refresh()
    late = [samples.now_minus(hours * 3600 + 600).replace(minute=20, second=0, microsecond=0) for hours in LATE_HOURS]
    for at in late:
        assert ingest.send(node, samples.body(at, cpu_usage_percent=LATE_CPU)).status_code == 200
    classify_server(node.server.id)
    return node, late


def history(client, minutes: int) -> dict:
    response = client.get("/api/metrics/history/", {"server": "late-box", "minutes": minutes})
    assert response.status_code == 200
    return response.json()


def point_at(data: dict, at) -> dict | None:
    """The point whose bucket holds `at` (its hour, or its own time for raw points)."""
    step = timedelta(seconds=data["resolution_seconds"])
    bucket = tiers.floor(at, step) if data["source"] != "raw" else at
    return next((p for p in data["points"] if p["collected_at"] == bucket.isoformat()), None)


@pytest.fixture
def viewer():
    return client_for(make_user("carol@corp.example"))


def assert_every_view_shows(client, late) -> None:
    for minutes in (6 * 60, 7 * 24 * 60, 30 * 24 * 60):
        data = history(client, minutes)
        for at in late:
            if at < samples.now_minus(minutes * 60):
                continue  # before this window
            point = point_at(data, at)
            assert point is not None, (minutes, at, data["source"])
            assert point["cpu_usage_percent"] == LATE_CPU and len(point["gpus"]) == 4, (minutes, at)
    report = client.get("/api/fleet/report/", {"days": 7}).json()
    days = {d["date"]: d["gpu_hours"] for d in report["days"]}
    for at in late:
        assert days.get(at.date().isoformat(), 0) > 0, (at, days)


def hour_counts(server_id: int, late) -> list[int]:
    """The late samples' hour buckets in the 1-hour tier: their sample counts."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT bucket, sample_count FROM monitoring_snapshot_1h WHERE server_id = %s AND bucket = ANY(%s)",
            [server_id, [tiers.floor(at, tiers.WIDTH["1h"]) for at in late]],
        )
        found = dict(cursor.fetchall())
    return [found.get(tiers.floor(at, tiers.WIDTH["1h"]), 0) for at in late]


def test_late_samples_show_in_every_view_before_any_refresh(late_box, viewer):
    node, late = late_box
    assert hour_counts(node.server.id, late) == [0, 0]
    assert_every_view_shows(viewer, late)


def test_one_refresh_puts_late_samples_in_the_tiers_whatever_their_age(late_box, viewer):
    node, late = late_box
    tier_refresh.refresh()
    assert hour_counts(node.server.id, late) == [1, 1]
    assert_every_view_shows(viewer, late)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_tierdirty WHERE tier IN ('1m', '1h')")
        assert cursor.fetchone()[0] == 0


def test_beats_refresh_takes_them_too(late_box, viewer):
    node, late = late_box
    refresh_tiers()
    assert hour_counts(node.server.id, late) == [1, 1]
    assert_every_view_shows(viewer, late)
