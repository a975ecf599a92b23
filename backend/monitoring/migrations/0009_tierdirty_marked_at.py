"""Both tier backends refresh from the dirty marks: each mark records when it was made, so that
the continuous refresher clears only marks that were not made again while it refreshed."""

from django.db import migrations

# Continuous aggregates: buckets the classifier labelled before this migration and beat has not
# refreshed yet (past the 1-minute aggregate's watermark) are marked, as the classifier now does.
MARK_UNREFRESHED = """
INSERT INTO monitoring_tierdirty (tier, server_id, bucket)
SELECT DISTINCT '1m', server_id, time_bucket(INTERVAL '1 minute', collected_at) FROM monitoring_snapshot
WHERE bottleneck_label IS NOT NULL AND collected_at >= (
    SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(mat_hypertable_id))
    FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = 'monitoring_snapshot_1m')
ON CONFLICT DO NOTHING
"""
IS_CONTINUOUS = (
    "SELECT EXISTS (SELECT FROM timescaledb_information.continuous_aggregates WHERE view_name = 'monitoring_snapshot_1m')"
)


def mark_unrefreshed(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(IS_CONTINUOUS)
        if cursor.fetchone()[0]:
            cursor.execute(MARK_UNREFRESHED)


def unmark(apps, schema_editor):
    """Before this migration continuous aggregates kept no marks: none is left for them."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(IS_CONTINUOUS)
        if cursor.fetchone()[0]:
            cursor.execute("DELETE FROM monitoring_tierdirty")


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0008_report_day_tier"),
    ]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE monitoring_tierdirty ADD COLUMN marked_at timestamptz NOT NULL DEFAULT clock_timestamp()",
            reverse_sql="ALTER TABLE monitoring_tierdirty DROP COLUMN marked_at",
        ),
        migrations.RunPython(mark_unrefreshed, unmark),
    ]
