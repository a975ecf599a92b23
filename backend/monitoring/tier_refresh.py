"""Refreshing the tiers, whichever backend the migration made them (see tiers.py).

- Rollup tables (Apache edition): the classifier marks the 1-minute bucket of every snapshot it
  labels as dirty; beat's `refresh_tiers` rolls up dirty buckets that have settled, 1m from raw
  rows, then 1h from 1m, then 1d from 1h (each marks the coarser bucket dirty in turn).
  `rollup_range` rolls up a bulk load at once.
- Continuous aggregates (full edition): beat calls refresh_continuous_aggregate over the window
  late samples can reach, back to where each aggregate's data ends.

One refresher at a time, whichever backend: they hold REFRESH_LOCK.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from .tiers import (
    ALL_TIERS,
    INTERVAL,
    SOURCE,
    WIDTH,
    families,
    floor,
    installed_backend,
    relations,
    select_from_raw,
    select_from_tier,
    tier_columns,
    watermark,
)

# Advisory lock key held by whoever refreshes the tiers: one refresher at a time.
REFRESH_LOCK = 7302


# --- rollup refresh (Apache edition) ----------------------------------------------------------

MARK_DIRTY_SQL = """
INSERT INTO monitoring_tierdirty (tier, server_id, bucket)
SELECT DISTINCT '1m', s, time_bucket(INTERVAL '1 minute', t) FROM unnest(%s::bigint[], %s::timestamptz[]) AS d (s, t)
ON CONFLICT DO NOTHING
"""


def mark_dirty_many(cursor, labelled: list[tuple[int, datetime]]) -> None:
    """Called by the classifier, in its transaction, for every (server, snapshot time) it labels."""
    if installed_backend() == "rollup" and labelled:
        servers, times = zip(*labelled)
        cursor.execute(MARK_DIRTY_SQL, [list(servers), list(times)])


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
    blocked = ""
    if tier in SOURCE:
        # A bucket waits until none of its finer buckets (an hour's minutes, a day's hours) is waiting.
        blocked = (
            f"AND NOT EXISTS (SELECT FROM monitoring_tierdirty m WHERE m.tier = '{SOURCE[tier]}' "
            f"AND m.server_id = d.server_id AND m.bucket >= d.bucket AND m.bucket < d.bucket + INTERVAL '{INTERVAL[tier]}')"
        )
    cursor.execute(
        f"""WITH taken AS (
            DELETE FROM monitoring_tierdirty d
            WHERE d.tier = %s AND d.bucket + %s <= %s {blocked}
            RETURNING d.server_id, d.bucket
        ) INSERT INTO tw_touched SELECT server_id, bucket FROM taken""",
        [tier, WIDTH[tier], settled_before],
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
                cursor.execute(
                    "INSERT INTO monitoring_tierdirty (tier, server_id, bucket) "
                    f"SELECT DISTINCT '{coarser}', server_id, time_bucket(INTERVAL '{INTERVAL[coarser]}', bucket) "
                    "FROM tw_touched ON CONFLICT DO NOTHING"
                )
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


def _refresh_aggregates(windows: dict[str, tuple], wait: bool) -> bool:
    """Refresh every continuous aggregate over its (start, end) window (by relation), 1m, then 1h
    (built on 1m), then 1d (on 1h), holding the refresh lock; False if not waiting and the lock is taken.

    Not inside a transaction block: refresh_continuous_aggregate refuses to run in one.
    """
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_lock(%s)", [REFRESH_LOCK])
        else:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [REFRESH_LOCK])
            if not cursor.fetchone()[0]:
                return False
        try:
            for rel in relations():
                cursor.execute("CALL refresh_continuous_aggregate(%s, %s, %s)", [rel, *windows[rel]])
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [REFRESH_LOCK])
    return True


def refresh_continuous(now: datetime | None = None) -> bool:
    """Beat's refresh: the window late samples can reach, up to buckets that ended
    MONITORING_TIER_SETTLE_SECONDS ago. TimescaleDB materializes only what its invalidation
    log says changed in the window (and buckets never materialized), so a run with nothing new
    costs a few catalog reads. Safe to run twice; False when another refresher is at it.

    The window also reaches back to where an aggregate's materialized buckets end: after beat
    was stopped for longer than the window, or on a database whose refresh policies failed,
    the run catches up instead of leaving a hole.
    """
    from django.utils import timezone

    now = now or timezone.now()
    end = now - timedelta(seconds=settings.MONITORING_TIER_SETTLE_SECONDS)
    late = timedelta(days=settings.MONITORING_TIER_LATE_DAYS)
    # A coarser bucket is refreshed from finer ones, so its window starts earlier (with a margin).
    back = {tier: late + (2 * WIDTH[tier] if tier in SOURCE else timedelta(0)) for tier in ALL_TIERS}
    windows = {}
    with connection.cursor() as cursor:
        for tier in ALL_TIERS:
            for family in families(tier):
                rel = family.relation(tier)
                mark = watermark(cursor, rel)
                windows[rel] = (min(now - back[tier], mark - WIDTH[tier]) if mark else None, end)
    return _refresh_aggregates(windows, wait=False)


# --- refreshing whatever the backend is --------------------------------------------------------


def refresh(start: datetime | None = None, end: datetime | None = None) -> None:
    """Bring the tiers up to date now (tests, seeding, `manage.py tiers refresh`)."""
    backend = installed_backend()
    if backend == "rollup":
        refresh_rollups(now=end + WIDTH["1h"] if end else None, settle=timedelta(0))
    elif backend == "continuous":
        # Whole buckets, reaching one bucket past `end` so that the newest, still filling, bucket
        # is included (a window shorter than one bucket is refused). A beat refresh under way is
        # waited for.
        windows = {
            f.relation(tier): (
                floor(start, WIDTH[tier]) if start else None,
                end + WIDTH[tier] if end else None,
            )
            for tier in ALL_TIERS
            for f in families(tier)
        }
        _refresh_aggregates(windows, wait=True)
