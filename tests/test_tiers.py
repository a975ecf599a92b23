"""The 1m and 1h tiers, whichever backend made them: values equal aggregates of raw rows,
late samples and late labels are rolled up again, and the backend is chosen as configured."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from monitoring.catalogue import LABELS
from monitoring.migrations import _0002_tiers as frozen_tiers
from monitoring.models import MonitoredServer
from monitoring.tasks import classify_server
from monitoring.tiers import definitions as tiers
from monitoring.tiers import refresher as tier_refresh
from tests import samples
from tests.conftest import register

pytestmark = pytest.mark.usefixtures("tier_db")


def fetch(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def seed(slug: str, hours: float) -> MonitoredServer:
    call_command(
        "seed_history",
        slug,
        "--days",
        str(hours / 24),
        "--gpus",
        "2",
        "--disks",
        "2",
        "--no-progress",
        stdout=StringIO(),
    )
    return MonitoredServer.objects.get(slug=slug)


def direct(family: tiers.Family, width: str, server_id: int) -> dict:
    """The tier computed straight from raw rows, keyed by (key, bucket)."""
    key = f"{family.key}, " if family.key else ""
    cols = "".join(f", {how}({m})" for m, how in family.plain)
    labels = ""
    if family.labels:
        labels += ", " + ", ".join(f"count(*) FILTER (WHERE label = '{label}')" for label in LABELS)
    for m in family.label_sums:
        labels += ", " + ", ".join(f"coalesce(sum({m}) FILTER (WHERE label = '{label}'), 0)" for label in LABELS)
    rows = fetch(
        f"SELECT {key}time_bucket(INTERVAL '{width}', collected_at) AS b, count(*){cols}{labels} "
        f"FROM {family.raw} WHERE server_id = %s GROUP BY {key}b",
        [server_id],
    )
    return {tuple(r[: 2 if family.key else 1]): r[2 if family.key else 1 :] for r in rows}


def stored(family: tiers.Family, tier: str, server_id: int) -> dict:
    key = f"{family.key}, " if family.key else ""
    cols = "".join(f", {m}_{how}" for m, how in family.plain)
    labels = ", " + ", ".join(tiers.label_column(label) for label in LABELS) if family.labels else ""
    labels += "".join(", " + ", ".join(tiers.label_column(label, m) for label in LABELS) for m in family.label_sums)
    rows = fetch(
        f"SELECT {key}bucket, sample_count{cols}{labels} FROM {family.relation(tier)} WHERE server_id = %s",
        [server_id],
    )
    return {tuple(r[: 2 if family.key else 1]): r[2 if family.key else 1 :] for r in rows}


def assert_same(expected: dict, actual: dict) -> None:
    assert expected.keys() == actual.keys()
    for key, values in expected.items():
        assert actual[key] == pytest.approx(values, rel=1e-9, abs=1e-9), key


@pytest.mark.parametrize("family", tiers.FAMILIES, ids=lambda f: f.name)
def test_tier_values_equal_an_aggregate_of_raw_rows(family):
    server = seed("tier-check", hours=3)
    for tier in family.tiers:
        assert_same(direct(family, tiers.INTERVAL[tier], server.id), stored(family, tier, server.id))


def test_every_minute_of_a_seeded_range_is_rolled_up():
    server = seed("tier-count", hours=2)
    minutes = fetch("SELECT count(*) FROM monitoring_snapshot_1m WHERE server_id = %s", [server.id])[0][0]
    assert minutes in (120, 121)  # the range may straddle one more minute boundary
    assert fetch("SELECT count(*) FROM monitoring_tierdirty") == [(0,)]


def feed(node, count, start, **fields):
    from tests.conftest import IngestClient

    client = IngestClient()
    for i in range(count):
        assert client.send(node, samples.body(start + timedelta(seconds=2 * i), step=i, **fields)).status_code == 200
    classify_server(node.server.id)


def minute_row(server_id, bucket):
    return fetch(
        "SELECT sample_count, cpu_usage_percent_avg FROM monitoring_snapshot_1m WHERE server_id = %s AND bucket = %s",
        [server_id, bucket],
    )


def refresh_all():
    tier_refresh.refresh(timezone.now() - timedelta(days=3), timezone.now())


def test_a_late_sample_is_rolled_up_again():
    node = register("late-box", "Late Box")
    minute = (timezone.now() - timedelta(hours=5)).replace(second=0, microsecond=0)
    feed(node, 10, minute, cpu_usage_percent=10.0)  # 0..18 s of that minute
    refresh_all()
    assert minute_row(node.server.id, minute) == [(10, pytest.approx(10.0))]
    # Hours later the agent replays its spool: one more sample of that minute.
    feed(node, 1, minute + timedelta(seconds=40), cpu_usage_percent=98.0)
    refresh_all()
    assert minute_row(node.server.id, minute) == [(11, pytest.approx((10 * 10.0 + 98.0) / 11))]
    hour = minute.replace(minute=0)
    assert fetch(
        "SELECT sample_count FROM monitoring_snapshot_1h WHERE server_id = %s AND bucket = %s", [node.server.id, hour]
    ) == [(11,)]


def test_a_late_sample_reaches_the_day_tier():
    node = register("late-day", "Late Day")
    # Over a day ago: its day has ended whatever the time now, so the day bucket is final.
    minute = (timezone.now() - timedelta(hours=30)).replace(second=0, microsecond=0)
    day = tiers.floor(minute, tiers.WIDTH["1d"])
    feed(node, 10, minute)
    refresh_all()
    labelled = " + ".join("l." + tiers.label_column(label, "gpu_count") for label in LABELS)
    query = (
        f"SELECT t.sample_count, t.gpu_count_sum, {labelled} FROM {tiers.PARTS['host'][1].relation('1d')} t "
        f"JOIN {tiers.LABEL.relation('1d')} l USING (server_id, bucket) WHERE server_id = %s AND bucket = %s"
    )
    gpus = len(samples.sample()["gpus"])
    assert fetch(query, [node.server.id, day]) == [(10, 10 * gpus, 10 * gpus)]
    feed(node, 1, minute + timedelta(seconds=40))  # replayed from the agent's spool
    refresh_all()
    assert fetch(query, [node.server.id, day]) == [(11, 11 * gpus, 11 * gpus)]
    assert fetch("SELECT count(*) FROM monitoring_tierdirty WHERE bucket <= %s", [day]) == [(0,)]


def test_labels_that_arrive_after_the_rollup_are_counted():
    node = register("slow-labels", "Slow Labels")
    minute = (timezone.now() - timedelta(hours=2)).replace(second=0, microsecond=0)
    from tests.conftest import IngestClient

    client = IngestClient()
    for i in range(5):
        client.send(node, samples.body(minute + timedelta(seconds=2 * i), step=i))
    refresh_all()  # nothing classified yet
    assert fetch("SELECT bn_gpu_bound FROM monitoring_snapshot_1m WHERE server_id = %s", [node.server.id]) in (
        [],
        [(0,)],
    )
    classify_server(node.server.id)
    refresh_all()
    assert fetch("SELECT bn_gpu_bound FROM monitoring_snapshotlabel_1m WHERE server_id = %s", [node.server.id]) == [
        (5,)
    ]


def test_the_history_tail_includes_the_newest_raw_sample(settings):
    from tests.conftest import client_for, make_user

    node = register("tail-box", "Tail Box")
    start = timezone.now() - timedelta(minutes=30)
    feed(node, 300, start, cpu_usage_percent=20.0)  # 10 minutes of samples, rolled up below
    refresh_all()
    newest = timezone.now() - timedelta(seconds=1)
    feed(node, 1, newest, cpu_usage_percent=100.0)  # not rolled up yet
    settings.MONITORING_HISTORY_MAX_POINTS = 30  # 60 minutes in 30 points: the 1m tier, 2-minute points
    user = make_user("alice@example.com")
    data = client_for(user).get("/api/metrics/history/", {"server": "tail-box", "minutes": 60}).json()
    assert data["source"] == "1m"
    last = data["points"][-1]
    assert last["cpu_usage_percent"] == pytest.approx(100.0)
    assert last["collected_at"] <= newest.isoformat()


def test_history_from_tiers_matches_raw_for_the_same_buckets(settings):
    from tests.conftest import client_for, make_user

    server = seed("same-answer", hours=6)
    settings.MONITORING_HISTORY_MAX_POINTS = 100  # 6 h at 5-minute points from the 1m tier
    client = client_for(make_user("alice@example.com"))
    tiered = client.get("/api/metrics/history/", {"server": server.slug, "minutes": 360}).json()
    assert tiered["source"] == "1m" and tiered["resolution_seconds"] == 300
    rows = dict(
        fetch(
            "SELECT time_bucket(INTERVAL '5 minutes', collected_at), avg(cpu_usage_percent) FROM monitoring_snapshot "
            "WHERE server_id = %s AND collected_at >= now() - INTERVAL '360 minutes' GROUP BY 1",
            [server.id],
        )
    )
    # The second tier part (energy) beside the first (utilization), joined per GPU and bucket.
    gpu_rows = {
        (bucket, index): (util, joules)
        for bucket, index, util, joules in fetch(
            "SELECT time_bucket(INTERVAL '5 minutes', collected_at), gpu_index, avg(utilization_gpu_percent), "
            "sum(energy_joules) FROM monitoring_gpusample "
            "WHERE server_id = %s AND collected_at >= now() - INTERVAL '360 minutes' GROUP BY 1, 2",
            [server.id],
        )
    }
    for point in tiered["points"][1:-1]:  # the edges are partial buckets of the window
        bucket = next(k for k in rows if k.isoformat() == point["collected_at"])
        assert point["cpu_usage_percent"] == pytest.approx(rows[bucket], abs=0.005)  # two decimals
        assert [g["gpu_index"] for g in point["gpus"]] == [0, 1]
        for gpu in point["gpus"]:
            util, joules = gpu_rows[(bucket, gpu["gpu_index"])]
            assert gpu["utilization_gpu_percent"] == pytest.approx(util, abs=0.005)
            assert gpu["energy_joules"] == pytest.approx(joules, abs=0.01) and joules > 0


def test_every_label_of_the_mix_is_a_column():
    names = {name for name, _ in tiers.tier_columns(tiers.LABEL)}
    assert {tiers.label_column(label) for label in LABELS} <= names


def test_the_installed_backend_follows_the_edition():
    with connection.cursor() as cursor:
        edition = tiers.edition(cursor)
    expected = "continuous" if edition == "timescale" else "rollup"
    from django.conf import settings as django_settings

    if django_settings.MONITORING_TIER_BACKEND != "auto":
        expected = django_settings.MONITORING_TIER_BACKEND
    assert tiers.installed_backend() == expected


def test_continuous_is_refused_on_the_apache_edition(settings):
    with connection.cursor() as cursor:
        if tiers.edition(cursor) == "timescale":
            pytest.skip("this database has the Timescale-licensed edition")
        settings.MONITORING_TIER_BACKEND = "continuous"
        with pytest.raises(RuntimeError, match="needs TimescaleDB's Timescale-licensed edition"):
            frozen_tiers.resolve_backend(cursor)


def test_aligned_pieces_never_take_a_bucket_the_window_cuts():
    # The fleet report's last step: from midnight to 01:00, every tier final until later. The day's
    # bucket reaches past the window, so the days' tier gives nothing and the hours cover it.
    midnight, end = samples.utc(2026, 12, 5), samples.utc(2026, 12, 5, 1)
    horizon = {tier: samples.utc(2026, 12, 7) for tier in tiers.ALL_TIERS}
    assert tiers.split(horizon, "1d", midnight, end, align=True) == [("1h", midnight, end)]
    # Cut mid-hour: the hours up to the cut, then minutes, then (past the minutes' horizon) raw rows.
    horizon["1m"] = samples.utc(2026, 12, 5, 0, 30)
    cut = samples.utc(2026, 12, 5, 0, 45)
    assert tiers.split(horizon, "1d", midnight, cut, align=True) == [
        ("1m", midnight, samples.utc(2026, 12, 5, 0, 30)),
        ("raw", samples.utc(2026, 12, 5, 0, 30), cut),
    ]
    # Whole days stay the days' tier's.
    assert tiers.split(horizon, "1d", midnight - timedelta(days=2), midnight, align=True) == [
        ("1d", midnight - timedelta(days=2), midnight)
    ]
