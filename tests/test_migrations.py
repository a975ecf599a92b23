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


def server_at(slug: str) -> int:
    """A server row, written as the schema of any migration has it (raw SQL: the model is today's):
    every column that needs a value gets a plain one of its type."""
    plain = {
        "text": "''",
        "character varying": "''",
        "bigint": "0",
        "integer": "0",
        "smallint": "0",
        "boolean": "true",
        "jsonb": "'{}'",
        "timestamp with time zone": "now()",
    }
    needed = fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'monitoring_monitoredserver' "
        "AND is_nullable = 'NO' AND column_default IS NULL AND column_name NOT IN ('id', 'slug', 'name')"
    )
    columns = "".join(f", {name}" for name, _ in needed)
    values = "".join(f", {plain[kind]}" for _, kind in needed)
    return fetch(
        f"INSERT INTO monitoring_monitoredserver (slug, name{columns}) VALUES (%s, %s{values}) RETURNING id",
        [slug, slug],
    )[0][0]


def fetch_none(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


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
    server = MonitoredServer(id=server_at("old-box"))
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


BEFORE_LABELS = ("monitoring", "0009_tierdirty_marked_at")
LABELS_MOVED = ("monitoring", "0010_snapshot_labels")


@pytest.fixture
def before_labels(tier_db):
    migrate(BEFORE_LABELS)
    try:
        yield
    finally:
        migrate(None)


def test_labels_move_out_of_the_snapshots_and_back(before_labels):
    server = server_at("old-labels")
    start = datetime(2026, 11, 20, 10, tzinfo=UTC)
    with connection.cursor() as cursor:
        # Five snapshots of 4 GPUs: three labelled before the move, two not yet.
        for i, label in enumerate(["gpu-bound", "gpu-bound", "idle", None, None]):
            cursor.execute(
                "INSERT INTO monitoring_snapshot (server_id, collected_at, received_at, gpu_count, bottleneck_label, "
                "bottleneck_confidence, bottleneck_reason, bottleneck_rules_version, classified_at) "
                "VALUES (%s, %s, %s, 4, %s, %s, %s, %s, %s)",
                [
                    server,
                    start.replace(second=2 * i),
                    start,
                    label,
                    label and 0.9,
                    label and "why",
                    label and 1,
                    label and start,
                ],
            )
        # An hour whose raw rows are long gone, as the snapshot tiers kept it: 75 gpu-bound, 25 idle.
        old = datetime(2026, 6, 1, 3, tzinfo=UTC)
        for tier in ("1m", "1h") if tiers.installed_backend() == "rollup" else ():
            cursor.execute(
                f"INSERT INTO monitoring_snapshot_{tier} (server_id, bucket, sample_count, bn_gpu_bound, bn_idle) "
                "VALUES (%s, %s, 100, 75, 25)",
                [server, old],
            )
            cursor.execute(
                f"INSERT INTO monitoring_snapshot_p2_{tier} (server_id, bucket, sample_count, gpu_count_sum, "
                "gpu_count_bn_gpu_bound, gpu_count_bn_idle) VALUES (%s, %s, 100, 400, 300, 100)",
                [server, old],
            )
    continuous = tiers.installed_backend() == "continuous"
    if continuous:
        # The minute as the snapshot tier kept it before the move: 2 gpu-bound, 1 idle.
        fetch_none("CALL refresh_continuous_aggregate('monitoring_snapshot_1m', NULL, NULL)")
    migrate(LABELS_MOVED)
    assert fetch(
        "SELECT collected_at, label, confidence, reason, gpu_count FROM monitoring_snapshotlabel ORDER BY 1"
    ) == [
        (start, "gpu-bound", 0.9, "why", 4),
        (start.replace(second=2), "gpu-bound", 0.9, "why", 4),
        (start.replace(second=4), "idle", 0.9, "why", 4),
    ]
    assert fetch("SELECT unlabelled_from FROM monitoring_monitoredserver WHERE id = %s", [server]) == [
        (start.replace(second=6),)
    ]
    # Nothing was rewritten: the snapshots keep what they had.
    assert fetch("SELECT count(bottleneck_label) FROM monitoring_snapshot") == [(3,)]
    if tiers.installed_backend() == "rollup":
        # The labels' tiers hold what the snapshot tiers kept, the old hour included.
        for tier in ("1m", "1h"):
            assert fetch(
                f"SELECT sample_count, bn_gpu_bound, bn_idle, gpu_count_bn_gpu_bound, gpu_count_bn_idle "
                f"FROM monitoring_snapshotlabel_{tier} WHERE bucket = %s",
                [old],
            ) == [(100, 75, 25, 300, 100)]
        assert fetch("SELECT sample_count, bn_gpu_bound FROM monitoring_snapshotlabel_1d") == [(100, 75)]
    else:
        # Until beat refreshes the labels' aggregate, a minute's labels are read from what the
        # snapshot tier kept; after, from the labels' own: the same.
        assert fetch("SELECT count(*) FROM monitoring_snapshotlabel_1m") == [(0,)]
        mix = (
            f"SELECT {tiers.label_read(tiers.SNAPSHOT, 'gpu-bound', 'l', 't')}, "
            f"{tiers.label_read(tiers.SNAPSHOT, 'idle', 'l', 't')} FROM monitoring_snapshot_1m t "
            "LEFT JOIN monitoring_snapshotlabel_1m l USING (server_id, bucket) WHERE t.server_id = %s"
        )
        assert fetch(mix, [server]) == [(2, 1)]
        fetch_none("CALL refresh_continuous_aggregate('monitoring_snapshotlabel_1m', NULL, NULL)")
        assert fetch("SELECT bn_gpu_bound, bn_idle FROM monitoring_snapshotlabel_1m") == [(2, 1)]
        assert fetch(mix, [server]) == [(2, 1)]
    # A label given after the move goes back into its snapshot when the move is undone.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO monitoring_snapshotlabel (server_id, collected_at, label, confidence, reason, rules_version, "
            "classified_at, gpu_count) VALUES (%s, %s, 'cpu-bound', 0.7, 'later', 1, now(), 4)",
            [server, start.replace(second=6)],
        )
    migrate(BEFORE_LABELS)
    assert fetch("SELECT bottleneck_label FROM monitoring_snapshot ORDER BY collected_at") == [
        ("gpu-bound",),
        ("gpu-bound",),
        ("idle",),
        ("cpu-bound",),
        (None,),
    ]
    for relation in ("monitoring_snapshotlabel", "monitoring_snapshotlabel_1m", "monitoring_snapshotlabel_1d"):
        assert fetch("SELECT to_regclass(%s)", [relation]) == [(None,)]


WORKLOADS_ADDED = ("monitoring", "0012_workloads")
BEFORE_WORKLOADS = ("monitoring", "0011_server_agent_packaging")


@pytest.fixture
def before_workloads(tier_db):
    migrate(BEFORE_WORKLOADS)
    try:
        yield
    finally:
        migrate(None)


def workload_table_exists() -> bool:
    return fetch("SELECT to_regclass('monitoring_workload') IS NOT NULL")[0][0]


def test_the_workload_table_comes_and_goes_with_its_migration(before_workloads):
    assert not workload_table_exists()
    server = server_at("ranges")
    migrate(WORKLOADS_ADDED)
    assert workload_table_exists()
    at = datetime(2026, 11, 20, 10, tzinfo=UTC)
    fetch_none(
        "INSERT INTO monitoring_workload (server_id, kind, workload_id, labels, gpus, first_seen, last_seen) "
        f"VALUES ({server}, 'slurm', '1234', '{{}}', '{{0,1}}', '{at.isoformat()}', '{at.isoformat()}')"
    )
    assert fetch("SELECT kind, workload_id, gpus FROM monitoring_workload") == [("slurm", "1234", [0, 1])]
    migrate(BEFORE_WORKLOADS)
    assert not workload_table_exists()
    # The samples' tables are untouched either way.
    assert fetch("SELECT count(*) FROM monitoring_monitoredserver WHERE id = %s", [server]) == [(1,)]
