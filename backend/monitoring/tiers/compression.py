"""Native compression of raw chunks (TimescaleDB's Timescale-licensed edition only).

Raw chunks older than MONITORING_COMPRESS_AFTER_DAYS are compressed by the
`compress_chunks` Celery beat task (not by TimescaleDB's compression policy: its
background jobs can fail, see dbjobs.py), segmented by server so that one server's
history decompresses alone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

# table: (segment by, order by); the unique columns must be among them.
LAYOUT = {
    "monitoring_snapshot": ("server_id", "collected_at DESC"),
    "monitoring_snapshotlabel": ("server_id", "collected_at DESC"),
    "monitoring_gpusample": ("server_id", "collected_at DESC, gpu_index"),
    "monitoring_disksample": ("server_id", "collected_at DESC, device"),
}
# Advisory lock key held while compressing: one compressor at a time.
COMPRESS_LOCK = 7303


def enable(cursor) -> None:
    for table, (segment_by, order_by) in LAYOUT.items():
        cursor.execute(
            f"ALTER TABLE {table} SET (timescaledb.compress, timescaledb.compress_segmentby = '{segment_by}', "
            f"timescaledb.compress_orderby = '{order_by}')"
        )


def compressible_tables(cursor) -> list[str]:
    """The raw hypertables with compression enabled (none on the Apache edition)."""
    cursor.execute(
        "SELECT hypertable_name FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = 'public' AND hypertable_name = ANY(%s) AND compression_enabled "
        "ORDER BY hypertable_name",
        [list(LAYOUT)],
    )
    return [row[0] for row in cursor.fetchall()]


def compress_old_chunks(now: datetime | None = None) -> list[str] | None:
    """Compress every raw chunk whose time range ended MONITORING_COMPRESS_AFTER_DAYS ago and
    is not compressed yet; returns the chunks compressed. Safe to run twice; None when another
    compressor holds the lock. Each chunk is its own transaction, so locks are short.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.MONITORING_COMPRESS_AFTER_DAYS)
    done = []
    with connection.cursor() as cursor:
        tables = compressible_tables(cursor)
        if not tables:
            return done
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [COMPRESS_LOCK])
        if not cursor.fetchone()[0]:
            return None
        try:
            for table in tables:
                cursor.execute(
                    "SELECT c::text FROM show_chunks(%s, older_than => %s) c "
                    "JOIN timescaledb_information.chunks i ON format('%%I.%%I', i.chunk_schema, i.chunk_name)::regclass = c "
                    "WHERE NOT i.is_compressed ORDER BY i.range_start",
                    [table, cutoff],
                )
                for (chunk,) in cursor.fetchall():
                    cursor.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", [chunk])
                    done.append(chunk)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [COMPRESS_LOCK])
    return done
