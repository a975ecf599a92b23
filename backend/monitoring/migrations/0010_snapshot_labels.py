"""Labels leave the snapshot rows: a snapshot is written once and never updated.

The classifier appends one row per snapshot to `monitoring_snapshotlabel`; the labels already
given are copied there (and stay in the snapshot's old columns, which the first tiers' frozen
definitions read: nothing is rewritten). The server row says where unlabelled snapshots start
(`unlabelled_from`), instead of a partial index over unlabelled rows, and the counters of the
newest sample (`latest_counters`, for the next sample's rates). The labels' tiers are made
by the backend that made the others (_0010_tiers.py). Reversible: going back copies the labels
given since into the snapshot rows.
"""

import django.db.models.deletion
import timescale.db.models.fields
from django.db import migrations, models

from monitoring.migrations import _0010_tiers as frozen_tiers

COPY_LABELS = """
INSERT INTO monitoring_snapshotlabel
    (server_id, collected_at, label, confidence, reason, rules_version, classified_at, gpu_count)
SELECT server_id, collected_at, bottleneck_label, coalesce(bottleneck_confidence, 0),
       coalesce(bottleneck_reason, ''), coalesce(bottleneck_rules_version, 1),
       coalesce(classified_at, received_at), gpu_count
FROM monitoring_snapshot WHERE bottleneck_label IS NOT NULL
ON CONFLICT DO NOTHING
"""
UNLABELLED_FROM = """
UPDATE monitoring_monitoredserver m SET unlabelled_from = (
    SELECT min(collected_at) FROM monitoring_snapshot s WHERE s.server_id = m.id AND s.bottleneck_label IS NULL)
"""
COPY_BACK = """
UPDATE monitoring_snapshot s SET bottleneck_label = l.label, bottleneck_confidence = l.confidence,
    bottleneck_reason = l.reason, bottleneck_rules_version = l.rules_version, classified_at = l.classified_at
FROM monitoring_snapshotlabel l
WHERE l.server_id = s.server_id AND l.collected_at = s.collected_at AND s.bottleneck_label IS NULL
"""


def move_labels(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(COPY_LABELS)
        cursor.execute(UNLABELLED_FROM)


def move_labels_back(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(COPY_BACK)


def install_tiers(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        frozen_tiers.install(cursor)


def uninstall_tiers(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        frozen_tiers.uninstall(cursor)


# The snapshot's label columns stay in the table (the first tiers read them) but leave the model.
LEGACY_FIELDS = ("bottleneck_label", "bottleneck_confidence", "bottleneck_reason", "bottleneck_rules_version", "classified_at")


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0009_tierdirty_marked_at"),
    ]

    operations = [
        migrations.CreateModel(
            name="SnapshotLabel",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("collected_at", timescale.db.models.fields.TimescaleDateTimeField(interval="1 day")),
                ("label", models.CharField(max_length=32)),
                ("confidence", models.FloatField()),
                ("reason", models.TextField()),
                ("rules_version", models.SmallIntegerField()),
                ("classified_at", models.DateTimeField()),
                ("gpu_count", models.SmallIntegerField(null=True)),
                (
                    "server",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="monitoring.monitoredserver",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("server", "collected_at"), name="snapshotlabel_server_time_uniq")
                ],
            },
        ),
        migrations.AddField(
            model_name="monitoredserver",
            name="unlabelled_from",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="monitoredserver",
            name="latest_counters",
            field=models.JSONField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(move_labels, move_labels_back),
        migrations.RemoveIndex(model_name="snapshot", name="snapshot_unclassified_idx"),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveField(model_name="snapshot", name=name) for name in LEGACY_FIELDS],
        ),
        migrations.RunPython(install_tiers, uninstall_tiers),
    ]
