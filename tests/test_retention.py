"""manage.py retention and the retention task: exactly what a policy says goes, nothing else."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from monitoring.models import MonitoredServer, RetentionPolicy
from monitoring.tasks import apply_retention
from monitoring.tiers import retention

pytestmark = pytest.mark.usefixtures("tier_db")


def run(*args) -> str:
    out = StringIO()
    call_command("retention", *args, stdout=out)
    return out.getvalue()


def scalar(sql: str, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def seed_days(slug: str, days: int) -> MonitoredServer:
    # One sample a minute keeps twenty days quick to load.
    call_command(
        "seed_history",
        slug,
        "--days",
        str(days),
        "--interval",
        "60",
        "--gpus",
        "1",
        "--disks",
        "1",
        "--no-progress",
        stdout=StringIO(),
    )
    return MonitoredServer.objects.get(slug=slug)


def tier_rows() -> dict[str, int]:
    return {rel: scalar(f"SELECT count(*) FROM {rel}") for tier in ("1m", "1h") for rel in retention.relations(tier)}


def test_it_drops_exactly_the_raw_chunks_past_the_policy_and_no_tier_data():
    server = seed_days("old-node", 20)
    before_tiers = tier_rows()
    run("set", "raw", "5")
    cutoff = timezone.now() - timedelta(days=5)
    expected_gone = scalar(
        "SELECT count(*) FROM monitoring_snapshot WHERE collected_at < "
        "(SELECT max(range_end) FROM timescaledb_information.chunks WHERE "
        "hypertable_name = 'monitoring_snapshot' AND range_end <= %s)",
        [cutoff],
    )
    total = scalar("SELECT count(*) FROM monitoring_snapshot")
    out = run("apply")
    assert "Dropped" in out
    assert scalar("SELECT count(*) FROM monitoring_snapshot") == total - expected_gone
    # Whole chunks only: at least five days are kept, at most one chunk (a day) more.
    oldest = scalar("SELECT min(collected_at) FROM monitoring_snapshot")
    assert cutoff - timedelta(days=1) <= oldest <= cutoff
    for table in ("monitoring_gpusample", "monitoring_disksample"):
        assert scalar(f"SELECT min(collected_at) FROM {table}") >= cutoff - timedelta(days=1)
    assert tier_rows() == before_tiers
    server.refresh_from_db()
    assert server.snapshot_count == total - expected_gone


def test_a_dry_run_lists_chunks_with_sizes_and_changes_nothing():
    seed_days("dry-node", 10)
    run("set", "raw", "4")
    total = scalar("SELECT count(*) FROM monitoring_snapshot")
    out = run("apply", "--dry-run")
    assert "monitoring_snapshot" in out and "would be dropped. Nothing was changed." in out
    assert "KiB" in out or "MiB" in out
    assert scalar("SELECT count(*) FROM monitoring_snapshot") == total


def test_tier_policies_drop_only_their_tier():
    seed_days("tier-node", 20)
    retention.set_policy("raw", 3)
    retention.set_policy("1m", 7)
    before_1h = scalar("SELECT count(*) FROM monitoring_snapshot_1h")
    apply_retention()
    assert scalar("SELECT min(bucket) FROM monitoring_snapshot_1m") >= timezone.now() - timedelta(days=7 + 7)
    assert scalar("SELECT count(*) FROM monitoring_snapshot_1h") == before_1h


def test_it_refuses_to_drop_raw_rows_that_are_not_rolled_up():
    server = seed_days("lagging-node", 10)
    old = timezone.now() - timedelta(days=8)
    with connection.cursor() as cursor:
        # A late sample's minute, marked and not refreshed yet (either backend).
        cursor.execute(
            "INSERT INTO monitoring_tierdirty VALUES ('1m', %s, date_trunc('minute', %s::timestamptz))",
            [server.id, old],
        )
    run("set", "raw", "3")
    total = scalar("SELECT count(*) FROM monitoring_snapshot")
    with pytest.raises(CommandError, match="not rolled up yet"):
        run("apply")
    assert scalar("SELECT count(*) FROM monitoring_snapshot") == total


@pytest.mark.parametrize(
    ("tier", "days", "message"),
    [
        ("raw", 2, "must be kept longer than 2 days"),
        ("raw", 100, "1m \\(90 days\\) must be kept at least as long as raw"),
        ("1h", 30, "1h \\(30 days\\) must be kept at least as long as 1m"),
        ("1m", 0, "at least 1"),
    ],
)
def test_it_refuses_a_policy_that_would_lose_data(tier, days, message):
    with pytest.raises(CommandError, match=message):
        run("set", tier, str(days))
    assert retention.policies() == {"raw": 14, "1m": 90, "1h": 730}


def test_show_reports_every_tier():
    seed_days("shown-node", 2)
    out = run("show")
    for relation in ("monitoring_snapshot", "monitoring_gpusample_1m", "monitoring_disksample_1h"):
        assert relation in out
    assert "14 d" in out and "90 d" in out and "730 d" in out


def test_the_admin_refuses_a_bad_policy(admin_client):
    RetentionPolicy.objects.get_or_create(tier="raw", defaults={"days": 14})
    response = admin_client.post("/admin/monitoring/retentionpolicy/raw/change/", {"days": "1"})
    assert response.status_code == 200
    assert b"must be kept longer than" in response.content
    assert RetentionPolicy.objects.get(tier="raw").days == 14
    admin_client.post("/admin/monitoring/retentionpolicy/raw/change/", {"days": "21"})
    assert RetentionPolicy.objects.get(tier="raw").days == 21
