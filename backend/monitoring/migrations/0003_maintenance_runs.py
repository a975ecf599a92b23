"""Beat refreshes and compresses on the full edition too: record its runs, and remove the
refresh and compression policies earlier versions gave TimescaleDB (they fail on some
PostgreSQL minors, and two refreshers of one aggregate only contend)."""

from datetime import timedelta

from django.db import migrations, models

RAW = ("monitoring_snapshot", "monitoring_gpusample", "monitoring_disksample")
AGGREGATES = [
    f"monitoring_{family}_{tier}" for tier in ("1m", "1h") for family in ("snapshot", "gpusample", "disksample")
]

# The jobs view names a continuous aggregate's policy by the view (newer versions) or by
# its materialization hypertable (older ones).
POLICY_JOBS = """
SELECT j.job_id FROM timescaledb_information.jobs j
WHERE j.proc_name IN ('policy_refresh_continuous_aggregate', 'policy_compression')
  AND (j.hypertable_name = ANY(%s) OR j.hypertable_name IN (
       SELECT materialization_hypertable_name FROM timescaledb_information.continuous_aggregates
       WHERE view_name = ANY(%s)))
"""


def remove_native_policies(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(POLICY_JOBS, [[*RAW, *AGGREGATES], AGGREGATES])
        for (job_id,) in cursor.fetchall():
            cursor.execute("SELECT delete_job(%s)", [job_id])


def restore_native_policies(apps, schema_editor):
    """The policies 0002 made, for a migration back to it."""
    from django.conf import settings

    remove_native_policies(apps, schema_editor)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates WHERE view_name = ANY(%s)",
            [AGGREGATES],
        )
        late = timedelta(days=settings.MONITORING_TIER_LATE_DAYS)
        for (view,) in cursor.fetchall():
            hourly = view.endswith("_1h")
            cursor.execute(
                "SELECT add_continuous_aggregate_policy(%s, start_offset => %s, end_offset => %s, "
                "schedule_interval => %s)",
                [
                    view,
                    late + timedelta(hours=2) if hourly else late,
                    timedelta(hours=1) if hourly else timedelta(minutes=1),
                    timedelta(minutes=10) if hourly else timedelta(minutes=1),
                ],
            )
        cursor.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = ANY(%s) AND compression_enabled",
            [list(RAW)],
        )
        after = timedelta(days=settings.MONITORING_COMPRESS_AFTER_DAYS)
        for (table,) in cursor.fetchall():
            cursor.execute("SELECT add_compression_policy(%s, compress_after => %s)", [table, after])


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0002_tiers_and_retention"),
    ]

    operations = [
        migrations.CreateModel(
            name="MaintenanceRun",
            fields=[
                ("task", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("succeeded_at", models.DateTimeField(blank=True, null=True)),
                ("failed_at", models.DateTimeField(blank=True, null=True)),
                ("error", models.TextField(blank=True, default="")),
            ],
        ),
        migrations.RunPython(remove_native_policies, restore_native_policies),
    ]
