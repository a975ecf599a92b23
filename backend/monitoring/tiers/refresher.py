"""Refreshing the tiers, whichever backend the migration made them (see definitions.py).

One notion of what changed for both: the classifier marks the 1-minute bucket of every snapshot
it labels as dirty (`monitoring_tierdirty`), whatever the sample's age. Beat's `refresh_tiers`
takes the dirty buckets that have settled, tier by tier, 1m, then 1h, then 1d; a coarser bucket
waits until none of its finer ones does, and each tier marks the coarser bucket dirty in turn.
Until its mark is taken, a dirty bucket is read from finer data (definitions.horizons), so a late
sample shows at once in every view, on both backends.

- Rollup tables (Apache edition): the buckets are recomputed from raw rows (1m) or the finer
  tier, in one transaction with taking their marks. `rollup_range` rolls up a bulk load at once.
- Continuous aggregates (full edition): refresh_continuous_aggregate over each run of dirty
  buckets, whole buckets, whatever their age; a mark is cleared afterwards, unless it was marked
  again meanwhile. An aggregate never materialized (new, or made again by a migration) is
  filled from every raw row first.

One refresher at a time, whichever backend: they hold REFRESH_LOCK.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from .definitions import (
    ALL_TIERS,
    INTERVAL,
    SOURCE,
    WIDTH,
    families,
    floor,
    installed_backend,
    select_from_raw,
    select_from_tier,
    tier_columns,
    watermark,
)

# Advisory lock key held by whoever refreshes the tiers: one refresher at a time.
REFRESH_LOCK = 7302


# --- rollup refresh (Apache edition) ----------------------------------------------------------

# A bucket marked again gets a new marked_at: the continuous refresher then keeps its mark.
MARK_AGAIN = "ON CONFLICT (tier, server_id, bucket) DO UPDATE SET marked_at = clock_timestamp()"
MARK_DIRTY_SQL = f"""
INSERT INTO monitoring_tierdirty (tier, server_id, bucket)
SELECT DISTINCT '1m', s, time_bucket(INTERVAL '1 minute', t) FROM unnest(%s::bigint[], %s::timestamptz[]) AS d (s, t)
{MARK_AGAIN}
"""


def mark_dirty_many(cursor, labelled: list[tuple[int, datetime]]) -> None:
    """Called by the classifier, in its transaction, for every (server, snapshot time) it labels."""
    if labelled and installed_backend() is not None:
        servers, times = zip(*labelled)
        cursor.execute(MARK_DIRTY_SQL, [list(servers), list(times)])


def _mark_coarser(cursor, tier: str, table: str) -> None:
    """Mark dirty the buckets of `tier` that hold the (server_id, bucket) rows of `table`."""
    cursor.execute(
        "INSERT INTO monitoring_tierdirty (tier, server_id, bucket) "
        f"SELECT DISTINCT '{tier}', server_id, time_bucket(INTERVAL '{INTERVAL[tier]}', bucket) FROM {table} "
        + MARK_AGAIN
    )


def _settled(tier: str) -> str:
    """The condition on a mark `d` of this tier to be taken: its bucket ended before %(settled)s and
    (a coarser tier) none of its finer buckets (an hour's minutes, a day's hours) is waiting."""
    condition = f"d.tier = '{tier}' AND d.bucket + INTERVAL '{INTERVAL[tier]}' <= %(settled)s"
    if tier in SOURCE:
        condition += (
            f" AND NOT EXISTS (SELECT FROM monitoring_tierdirty m WHERE m.tier = '{SOURCE[tier]}' "
            "AND m.server_id = d.server_id AND m.bucket >= d.bucket "
            f"AND m.bucket < d.bucket + INTERVAL '{INTERVAL[tier]}')"
        )
    return condition


def _upsert_buckets(cursor, tier: str, source: str | None) -> None:
    """Recompute the buckets listed in the temp table `tw_touched` for every family."""
    width = INTERVAL[tier]
    cursor.execute("SELECT min(bucket), max(bucket) FROM tw_touched")
    low, high = cursor.fetchone()
    # One index probe per touched bucket (for this transaction only): hash or merge joins
    # on server_id alone would compare every row of the range with every bucket.
    cursor.execute("SET LOCAL enable_hashjoin = off")
    cursor.execute("SET LOCAL enable_mergejoin = off")
    for family in families(tier):
        rel = family.relation(tier)
        cursor.execute(
            f"DELETE FROM {rel} r USING tw_touched t WHERE r.server_id = t.server_id AND r.bucket = t.bucket"
        )
        column = "collected_at" if source is None else "bucket"
        joins = (
            f"JOIN tw_touched t ON r.server_id = t.server_id AND r.{column} >= t.bucket "
            f"AND r.{column} < t.bucket + INTERVAL '{width}'"
        )
        # Constant bounds as well, so that TimescaleDB opens only the chunks in range.
        where = f"WHERE r.{column} >= '{low.isoformat()}' AND r.{column} < '{(high + WIDTH[tier]).isoformat()}'"
        select = (
            select_from_raw(family, tier, where=where, joins=joins)
            if source is None
            else select_from_tier(family, tier, source, where=where, joins=joins)
        )
        names = ", ".join(name for name, _ in tier_columns(family))
        cursor.execute(f"INSERT INTO {rel} ({names}) SELECT {names} FROM ({select}) s")


def _take_touched(cursor, tier: str, settled_before: datetime) -> int:
    """Move this tier's settled dirty buckets into the temp table tw_touched."""
    cursor.execute("CREATE TEMP TABLE IF NOT EXISTS tw_touched (server_id bigint, bucket timestamptz) ON COMMIT DROP")
    cursor.execute("TRUNCATE tw_touched")
    cursor.execute(
        f"""WITH taken AS (
            DELETE FROM monitoring_tierdirty d WHERE {_settled(tier)} RETURNING d.server_id, d.bucket
        ) INSERT INTO tw_touched SELECT server_id, bucket FROM taken""",
        {"settled": settled_before},
    )
    taken = cursor.rowcount
    # A temp table has no statistics until analyzed; without them the planner guesses badly.
    cursor.execute("ANALYZE tw_touched")
    return taken


def refresh_rollups(now: datetime | None = None, settle: timedelta | None = None) -> dict[str, int] | None:
    """Roll up every settled dirty bucket: 1m from raw rows, 1h from 1m, 1d from 1h. Safe to run twice.

    None when another refresher is at it."""
    from django.utils import timezone

    now = now or timezone.now()
    settled_before = now - (
        settle if settle is not None else timedelta(seconds=settings.MONITORING_TIER_SETTLE_SECONDS)
    )
    done = {}
    with transaction.atomic(), connection.cursor() as cursor:
        # One refresher at a time; a second one has nothing to add.
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [REFRESH_LOCK])
        if not cursor.fetchone()[0]:
            return None
        for tier, coarser in zip(ALL_TIERS, (*ALL_TIERS[1:], None)):
            done[tier] = _take_touched(cursor, tier, settled_before)
            if not done[tier]:
                continue
            _upsert_buckets(cursor, tier, SOURCE.get(tier))
            if coarser:
                _mark_coarser(cursor, coarser, "tw_touched")
    return done


def rollup_range(server_id: int, start: datetime, end: datetime) -> None:
    """Roll up one server's [start, end) at once (after a bulk load): plain range aggregates, each
    tier over the whole buckets that hold the range (from what its finer tier holds)."""
    with transaction.atomic(), connection.cursor() as cursor:
        for tier in ALL_TIERS:
            lo = floor(start, WIDTH[tier])
            hi = floor(end, WIDTH[tier]) + WIDTH[tier] if tier in SOURCE else end
            for family in families(tier):
                rel = family.relation(tier)
                names = ", ".join(name for name, _ in tier_columns(family))
                cursor.execute(
                    f"DELETE FROM {rel} WHERE server_id = %s AND bucket >= %s AND bucket < %s", [server_id, lo, hi]
                )
                if tier in SOURCE:
                    where = "WHERE r.server_id = %s AND r.bucket >= %s AND r.bucket < %s"
                    select = select_from_tier(family, tier, SOURCE[tier], where=where)
                else:
                    where = "WHERE r.server_id = %s AND r.collected_at >= %s AND r.collected_at < %s"
                    select = select_from_raw(family, tier, where=where)
                cursor.execute(f"INSERT INTO {rel} ({names}) SELECT {names} FROM ({select}) s", [server_id, lo, hi])


# --- continuous aggregates (full edition) -----------------------------------------------------

# Runs of dirty buckets closer than this are refreshed as one window: refreshing the buckets
# between them, which nothing invalidated, costs TimescaleDB a look at its log.
MERGE_GAP = timedelta(hours=1)


def windows(buckets: list[datetime], width: timedelta) -> list[tuple[datetime, datetime]]:
    """[start, end) windows of whole buckets that cover these bucket starts, fewest first."""
    merged: list[list[datetime]] = []
    for bucket in sorted(set(buckets)):
        if merged and bucket - merged[-1][1] <= MERGE_GAP:
            merged[-1][1] = max(merged[-1][1], bucket + width)
        else:
            merged.append([bucket, bucket + width])
    return [(lo, hi) for lo, hi in merged]


def _lock(cursor, wait: bool) -> bool:
    if wait:
        cursor.execute("SELECT pg_advisory_lock(%s)", [REFRESH_LOCK])
        return True
    cursor.execute("SELECT pg_try_advisory_lock(%s)", [REFRESH_LOCK])
    return cursor.fetchone()[0]


def _refresh_windows(cursor, tier: str, spans: list[tuple[datetime | None, datetime | None]]) -> None:
    for family in families(tier):
        for lo, hi in spans:
            cursor.execute("CALL refresh_continuous_aggregate(%s, %s, %s)", [family.relation(tier), lo, hi])


def _refresh_marked(cursor, tier: str, settled_before: datetime, coarser: str | None) -> int:
    """Refresh this tier's settled dirty buckets, then clear their marks (those not marked again
    meanwhile) and mark the coarser buckets that hold them."""
    cursor.execute(
        f"SELECT d.server_id, d.bucket, d.marked_at FROM monitoring_tierdirty d WHERE {_settled(tier)}",
        {"settled": settled_before},
    )
    marks = cursor.fetchall()
    if not marks:
        return 0
    _refresh_windows(cursor, tier, windows([bucket for _, bucket, _ in marks], WIDTH[tier]))
    servers, buckets, marked = (list(column) for column in zip(*marks))
    with transaction.atomic():
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS tw_refreshed (server_id bigint, bucket timestamptz) ON COMMIT DROP"
        )
        cursor.execute(
            "WITH done AS (DELETE FROM monitoring_tierdirty d USING unnest(%s::bigint[], %s::timestamptz[], "
            "%s::timestamptz[]) AS m (server_id, bucket, marked_at) WHERE d.tier = %s AND d.server_id = m.server_id "
            "AND d.bucket = m.bucket AND d.marked_at = m.marked_at RETURNING d.server_id, d.bucket) "
            "INSERT INTO tw_refreshed SELECT * FROM done",
            [servers, buckets, marked, tier],
        )
        if coarser:
            _mark_coarser(cursor, coarser, "tw_refreshed")
    return len(marks)


def refresh_continuous(
    now: datetime | None = None, settle: timedelta | None = None, wait: bool = False
) -> dict[str, int] | None:
    """Refresh every continuous aggregate over its settled dirty buckets, 1m, then 1h (built on
    1m), then 1d (on 1h): whole buckets, whatever their age. With nothing late, that is the last
    minute or two. Safe to run twice; None when another refresher is at it (and not `wait`).

    Not inside a transaction block: refresh_continuous_aggregate refuses to run in one.
    """
    from django.utils import timezone

    now = now or timezone.now()
    settled_before = now - (
        settle if settle is not None else timedelta(seconds=settings.MONITORING_TIER_SETTLE_SECONDS)
    )
    done = {}
    with connection.cursor() as cursor:
        if not _lock(cursor, wait):
            return None
        try:
            for tier, coarser in zip(ALL_TIERS, (*ALL_TIERS[1:], None)):
                # Never materialized (new, or made again by a migration): from every raw row first.
                empty = [f for f in families(tier) if watermark(cursor, f.relation(tier)) is None]
                for family in empty:
                    cursor.execute("CALL refresh_continuous_aggregate(%s, NULL, %s)", [family.relation(tier), now])
                done[tier] = _refresh_marked(cursor, tier, settled_before, coarser)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [REFRESH_LOCK])
    return done


# --- refreshing whatever the backend is --------------------------------------------------------


def refresh(start: datetime | None = None, end: datetime | None = None) -> None:
    """Bring the tiers up to date now (tests, seeding, `manage.py tiers refresh`): every dirty
    bucket up to `end` (now by default) whatever its age, with no settling time; on continuous
    aggregates also the whole buckets of [start, end], marked or not (a bulk load marks none)."""
    from django.utils import timezone

    backend = installed_backend()
    end = end or timezone.now()
    if backend == "rollup":
        refresh_rollups(now=end + WIDTH["1h"], settle=timedelta(0))
    elif backend == "continuous":
        if start is not None:
            with connection.cursor() as cursor:
                _lock(cursor, wait=True)
                try:
                    for tier in ALL_TIERS:
                        # Reaching one bucket past `end`: the newest, still filling, bucket is included.
                        _refresh_windows(cursor, tier, [(floor(start, WIDTH[tier]), end + WIDTH[tier])])
                finally:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [REFRESH_LOCK])
        refresh_continuous(now=end + WIDTH["1h"], settle=timedelta(0), wait=True)
