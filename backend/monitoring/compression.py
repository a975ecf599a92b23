"""Native compression of raw chunks (TimescaleDB's Timescale-licensed edition only).

Raw chunks older than MONITORING_COMPRESS_AFTER_DAYS are compressed by TimescaleDB's
own policy, segmented by server so that one server's history decompresses alone.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

# table: (segment by, order by); the unique columns must be among them.
LAYOUT = {
    "monitoring_snapshot": ("server_id", "collected_at DESC"),
    "monitoring_gpusample": ("server_id", "collected_at DESC, gpu_index"),
    "monitoring_disksample": ("server_id", "collected_at DESC, device"),
}


def enable(cursor) -> None:
    for table, (segment_by, order_by) in LAYOUT.items():
        cursor.execute(
            f"ALTER TABLE {table} SET (timescaledb.compress, timescaledb.compress_segmentby = '{segment_by}', "
            f"timescaledb.compress_orderby = '{order_by}')"
        )
    set_policy(cursor)


def set_policy(cursor) -> None:
    after = timedelta(days=settings.MONITORING_COMPRESS_AFTER_DAYS)
    for table in LAYOUT:
        cursor.execute("SELECT remove_compression_policy(%s, if_exists => true)", [table])
        cursor.execute("SELECT add_compression_policy(%s, compress_after => %s)", [table, after])
