"""Migrations that remake tier relations keep what was rolled up before them, and can be undone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import ProgrammingError, connection
from django.db.migrations.executor import MigrationExecutor

from monitoring.catalogue import LABELS
from monitoring.models import MonitoredServer
from monitoring.tiers import definitions as tiers

BEFORE_DAY_TIER = ("monitoring", "0007_host_gpu_totals")


def migrate(target: tuple[str, str] | None) -> None:
    executor = MigrationExecutor(connection)
    if target is None:  # the newest
        target = next(node for node in executor.loader.graph.leaf_nodes() if node[0] == "monitoring")
    executor.migrate([target])


def fetch(sql: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@pytest.fixture
def before_day_tier(tier_db):
    if tiers.installed_backend() != "rollup":
        pytest.skip("continuous aggregates are made again, empty: there is nothing to carry over")
    migrate(BEFORE_DAY_TIER)
    try:
        yield
    finally:
        migrate(None)


def test_the_day_tier_keeps_what_the_hour_tier_held(before_day_tier):
    server = MonitoredServer.objects.create(slug="old-box", name="Old Box")
    hours = [datetime(2026, 11, 20, h, tzinfo=UTC) for h in (10, 11)] + [datetime(2026, 11, 21, 3, tzinfo=UTC)]
    with connection.cursor() as cursor:
        for hour in hours:
            # 100 snapshots of 8 GPUs: 75 gpu-bound, 25 idle, as rolled up before the migration.
            cursor.execute(
                "INSERT INTO monitoring_snapshot_1h (server_id, bucket, sample_count, bn_gpu_bound, bn_idle) "
                "VALUES (%s, %s, 100, 75, 25)",
                [server.id, hour],
            )
            cursor.execute(
                "INSERT INTO monitoring_snapshot_p2_1h (server_id, bucket, sample_count, gpu_count_sum, "
                "gpu_util_total_percent_sum, gpu_energy_joules_sum) VALUES (%s, %s, 100, 800, 40000, 1e6)",
                [server.id, hour],
            )
    migrate(("monitoring", "0008_report_day_tier"))
    totals = tiers.PARTS["host"][1]
    label = {name: tiers.label_column(name, "gpu_count") for name in LABELS}
    rows = fetch(
        f"SELECT bucket, {label['gpu-bound']}, {label['idle']}, {label['cpu-bound']} FROM {totals.relation('1h')} "
        "WHERE server_id = %s ORDER BY bucket",
        [server.id],
    )
    assert rows == [(hour, 600, 200, 0) for hour in hours]
    days = fetch(
        f"SELECT bucket, sample_count, gpu_count_sum, gpu_util_total_percent_sum, {label['gpu-bound']} "
        f"FROM {totals.relation('1d')} WHERE server_id = %s ORDER BY bucket",
        [server.id],
    )
    assert days == [
        (datetime(2026, 11, 20, tzinfo=UTC), 200, 1600, 80000, 1200),
        (datetime(2026, 11, 21, tzinfo=UTC), 100, 800, 40000, 600),
    ]
    # Undone: the day tier and the label columns go; the hours stay.
    migrate(BEFORE_DAY_TIER)
    assert fetch("SELECT to_regclass(%s)", [totals.relation("1d")]) == [(None,)]
    assert fetch(f"SELECT count(*), sum(gpu_count_sum) FROM {totals.relation('1h')}") == [(3, 2400)]
    with pytest.raises(ProgrammingError, match=label["idle"]):
        fetch(f"SELECT {label['idle']} FROM {totals.relation('1h')}")
