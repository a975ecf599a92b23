"""What the classifier wrote, for tests: a snapshot's label is a row of its own."""

from __future__ import annotations

from django.db import connection

from monitoring.models import SnapshotLabel


def unlabelled(server=None) -> int:
    """How many snapshots (of one server, or of all) have no label yet."""
    one = "" if server is None else " AND s.server_id = %s"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM monitoring_snapshot s WHERE NOT EXISTS (SELECT FROM monitoring_snapshotlabel l "
            f"WHERE l.server_id = s.server_id AND l.collected_at = s.collected_at){one}",
            [] if server is None else [server.id],
        )
        return cursor.fetchone()[0]


def newest(server=None) -> SnapshotLabel | None:
    rows = SnapshotLabel.objects.all() if server is None else SnapshotLabel.objects.filter(server_id=server.id)
    return rows.order_by("-collected_at").first()
