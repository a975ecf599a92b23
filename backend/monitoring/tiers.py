"""Downsampled tiers: 1-minute and 1-hour buckets of snapshots, GPU samples and disk samples.

The relations are the same however they are made, `monitoring_{family}_{tier}` with
per bucket: `sample_count`, `<metric>_avg` and `<metric>_max` of every metric the
history shows, and (snapshots) the bottleneck mix `bn_<label>` (samples per label):

- `continuous`: real continuous aggregates (TimescaleDB's Timescale-licensed edition,
  e.g. the official Docker image), 1h built on 1m, materialized only (the history query
  adds the raw tail itself), refreshed by the `refresh_tiers` Celery beat task over the
  window late samples can reach (not by TimescaleDB's policies: its background jobs can
  fail, see dbjobs.py).
- `rollup`: plain hypertables (the Apache edition, e.g. Debian's package), refreshed by
  the `refresh_tiers` Celery beat task. The classifier marks the 1-minute bucket of
  every snapshot it labels as dirty (`monitoring_tierdirty`), so late samples and late
  labels are rolled up again; the refresher rolls dirty buckets that have settled.

MONITORING_TIER_BACKEND=auto|continuous|rollup picks one when migrating; `auto` takes
continuous aggregates wherever the edition has them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from . import catalogue
from .bottleneck import LABELS

log = logging.getLogger(__name__)

TIERS = ("1m", "1h")
WIDTH = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1)}
INTERVAL = {"1m": "1 minute", "1h": "1 hour"}
# Chunk size of the rollup hypertables (continuous aggregates choose their own).
CHUNK = {"1m": "7 days", "1h": "90 days"}
BACKENDS = ("continuous", "rollup")
# Advisory lock key held by whoever refreshes the tiers: one refresher at a time.
REFRESH_LOCK = 7302


def label_column(label: str) -> str:
    return "bn_" + label.replace("-", "_")


@dataclass(frozen=True)
class Family:
    name: str  # snapshot, gpusample, disksample
    key: str | None  # the device column, if any
    key_type: str | None
    metrics: tuple[str, ...]
    labels: bool = False

    @property
    def raw(self) -> str:
        return f"monitoring_{self.name}"

    def relation(self, tier: str) -> str:
        return f"monitoring_{self.name}_{tier}"

    @property
    def group(self) -> str:
        return "server_id" + (f", {self.key}" if self.key else "")


def _tiered(block: str) -> tuple[str, ...]:
    return catalogue.names(catalogue.block(block, tiered=True))


SNAPSHOT = Family("snapshot", None, None, _tiered("host"), labels=True)
GPU = Family("gpusample", *catalogue.DEVICE_KEYS["gpu"], _tiered("gpu"))
DISK = Family("disksample", "device", "varchar(64)", _tiered("disk"))
FAMILIES = (SNAPSHOT, GPU, DISK)


# --- the aggregates: one definition for both backends ------------------------------------


def select_from_raw(family: Family, tier: str, where: str = "", joins: str = "") -> str:
    """Buckets of one tier computed from the raw hypertable."""
    cols = [f"time_bucket(INTERVAL '{INTERVAL[tier]}', r.collected_at) AS bucket", "count(*) AS sample_count"]
    for m in family.metrics:
        cols += [f"avg(r.{m}) AS {m}_avg", f"max(r.{m}) AS {m}_max"]
    if family.labels:
        cols += [f"count(*) FILTER (WHERE r.bottleneck_label = '{label}') AS {label_column(label)}" for label in LABELS]
    group = ", ".join(f"r.{c.strip()}" for c in family.group.split(","))
    return (
        f"SELECT {group}, {', '.join(cols)} FROM {family.raw} r {joins} {where} "
        f"GROUP BY {group}, time_bucket(INTERVAL '{INTERVAL[tier]}', r.collected_at)"
    )


def select_from_tier(family: Family, tier: str, source: str, where: str = "", joins: str = "") -> str:
    """Buckets of a coarser tier computed from a finer one (averages weighted by sample count)."""
    cols = [
        f"time_bucket(INTERVAL '{INTERVAL[tier]}', r.bucket) AS bucket",
        "sum(r.sample_count)::bigint AS sample_count",
    ]
    for m in family.metrics:
        cols += [
            f"sum(r.{m}_avg * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.{m}_avg IS NOT NULL), 0)"
            f" AS {m}_avg",
            f"max(r.{m}_max) AS {m}_max",
        ]
    if family.labels:
        cols += [f"sum(r.{label_column(label)})::bigint AS {label_column(label)}" for label in LABELS]
    group = ", ".join(f"r.{c.strip()}" for c in family.group.split(","))
    return (
        f"SELECT {group}, {', '.join(cols)} FROM {family.relation(source)} r {joins} {where} "
        f"GROUP BY {group}, time_bucket(INTERVAL '{INTERVAL[tier]}', r.bucket)"
    )


def tier_columns(family: Family) -> list[tuple[str, str]]:
    cols = [("server_id", "bigint NOT NULL")]
    if family.key:
        cols.append((family.key, f"{family.key_type} NOT NULL"))
    cols += [("bucket", "timestamptz NOT NULL"), ("sample_count", "bigint NOT NULL")]
    for m in family.metrics:
        cols += [(f"{m}_avg", "double precision"), (f"{m}_max", "double precision")]
    if family.labels:
        cols += [(label_column(label), "bigint NOT NULL DEFAULT 0") for label in LABELS]
    return cols


# --- which backend, and installing it -------------------------------------------------------


def edition(cursor) -> str:
    cursor.execute("SELECT current_setting('timescaledb.license', true)")
    return (cursor.fetchone()[0] or "apache").lower()


def resolve_backend(cursor) -> str:
    wanted = settings.MONITORING_TIER_BACKEND
    has_caggs = edition(cursor) == "timescale"
    if wanted == "continuous" and not has_caggs:
        raise RuntimeError(
            "MONITORING_TIER_BACKEND=continuous needs TimescaleDB's Timescale-licensed edition "
            "(SHOW timescaledb.license says 'apache'); use auto or rollup"
        )
    if wanted == "auto":
        return "continuous" if has_caggs else "rollup"
    return wanted


_backend_cache: str | None = None


def installed_backend() -> str | None:
    """What the tier relations are in this database (None before the migration)."""
    global _backend_cache
    if _backend_cache is None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT EXISTS (SELECT FROM timescaledb_information.continuous_aggregates "
                "WHERE view_name = 'monitoring_snapshot_1m'), to_regclass('monitoring_snapshot_1m') IS NOT NULL"
            )
            is_cagg, exists = cursor.fetchone()
        if not exists:
            return None
        _backend_cache = "continuous" if is_cagg else "rollup"
    return _backend_cache


def forget_backend() -> None:
    global _backend_cache
    _backend_cache = None


def install(cursor, backend: str) -> None:
    """Create the tier relations (beat refreshes them, whichever backend they are)."""
    for tier in TIERS:
        for family in FAMILIES:
            if backend == "continuous":
                _create_cagg(cursor, family, tier)
            else:
                _create_rollup(cursor, family, tier)
    forget_backend()


def _create_cagg(cursor, family: Family, tier: str) -> None:
    select = select_from_raw(family, tier) if tier == "1m" else select_from_tier(family, tier, "1m")
    cursor.execute(
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {family.relation(tier)} "
        "WITH (timescaledb.continuous, timescaledb.materialized_only = true) "
        f"AS {select} WITH NO DATA"
    )


def _create_rollup(cursor, family: Family, tier: str) -> None:
    rel = family.relation(tier)
    columns = ", ".join(f"{name} {kind}" for name, kind in tier_columns(family))
    # (server, bucket[, device]): the history reads one server's time range of every device.
    unique = "server_id, bucket" + (f", {family.key}" if family.key else "")
    cursor.execute(f"CREATE TABLE IF NOT EXISTS {rel} ({columns}, UNIQUE ({unique}))")
    cursor.execute(
        "SELECT create_hypertable(%s, 'bucket', chunk_time_interval => %s::interval, if_not_exists => true)",
        [rel, CHUNK[tier]],
    )


def drop(cursor) -> None:
    for tier in reversed(TIERS):
        for family in FAMILIES:
            rel = family.relation(tier)
            cursor.execute(
                "SELECT EXISTS (SELECT FROM timescaledb_information.continuous_aggregates WHERE view_name = %s)",
                [rel],
            )
            kind = "MATERIALIZED VIEW" if cursor.fetchone()[0] else "TABLE"
            cursor.execute(f"DROP {kind} IF EXISTS {rel} CASCADE")
    cursor.execute("DELETE FROM monitoring_tierdirty")
    forget_backend()


# --- rollup refresh (Apache edition) ----------------------------------------------------------

MARK_DIRTY_SQL = """
INSERT INTO monitoring_tierdirty (tier, server_id, bucket)
SELECT DISTINCT '1m', %s, time_bucket(INTERVAL '1 minute', t) FROM unnest(%s::timestamptz[]) AS t
ON CONFLICT DO NOTHING
"""


def mark_dirty(cursor, server_id: int, collected_at: list[datetime]) -> None:
    """Called by the classifier, in its transaction, for every snapshot it labels."""
    if installed_backend() == "rollup" and collected_at:
        cursor.execute(MARK_DIRTY_SQL, [server_id, collected_at])


def _upsert_buckets(cursor, tier: str, source: str | None) -> None:
    """Recompute the buckets listed in the temp table `tw_touched` for every family."""
    width = INTERVAL[tier]
    cursor.execute("SELECT min(bucket), max(bucket) FROM tw_touched")
    low, high = cursor.fetchone()
    # One index probe per touched bucket (for this transaction only): hash or merge joins
    # on server_id alone would compare every row of the range with every bucket.
    cursor.execute("SET LOCAL enable_hashjoin = off")
    cursor.execute("SET LOCAL enable_mergejoin = off")
    for family in FAMILIES:
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
    if tier == "1h":
        # An hour waits until none of its minutes is still waiting.
        blocked = (
            "AND NOT EXISTS (SELECT FROM monitoring_tierdirty m WHERE m.tier = '1m' AND m.server_id = d.server_id "
            "AND m.bucket >= d.bucket AND m.bucket < d.bucket + INTERVAL '1 hour')"
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
    """Roll up every settled dirty bucket: 1m from raw rows, then 1h from 1m. Safe to run twice.

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
        done["1m"] = _take_touched(cursor, "1m", settled_before)
        if done["1m"]:
            _upsert_buckets(cursor, "1m", None)
            cursor.execute(
                "INSERT INTO monitoring_tierdirty (tier, server_id, bucket) "
                "SELECT DISTINCT '1h', server_id, time_bucket(INTERVAL '1 hour', bucket) FROM tw_touched "
                "ON CONFLICT DO NOTHING"
            )
        done["1h"] = _take_touched(cursor, "1h", settled_before)
        if done["1h"]:
            _upsert_buckets(cursor, "1h", "1m")
    return done


def rollup_range(server_id: int, start: datetime, end: datetime) -> None:
    """Roll up one server's [start, end) at once (after a bulk load): plain range aggregates."""
    hour_start = start.replace(minute=0, second=0, microsecond=0)
    hour_end = end.replace(minute=0, second=0, microsecond=0) + WIDTH["1h"]
    minute_start = start.replace(second=0, microsecond=0)
    with transaction.atomic(), connection.cursor() as cursor:
        for tier, lo, hi in (("1m", minute_start, end), ("1h", hour_start, hour_end)):
            for family in FAMILIES:
                rel = family.relation(tier)
                names = ", ".join(name for name, _ in tier_columns(family))
                cursor.execute(
                    f"DELETE FROM {rel} WHERE server_id = %s AND bucket >= %s AND bucket < %s", [server_id, lo, hi]
                )
                if tier == "1m":
                    where = "WHERE r.server_id = %s AND r.collected_at >= %s AND r.collected_at < %s"
                    select = select_from_raw(family, tier, where=where)
                else:
                    where = "WHERE r.server_id = %s AND r.bucket >= %s AND r.bucket < %s"
                    select = select_from_tier(family, tier, "1m", where=where)
                cursor.execute(f"INSERT INTO {rel} ({names}) SELECT {names} FROM ({select}) s", [server_id, lo, hi])


# --- continuous aggregates (full edition) -----------------------------------------------------


def watermark(cursor, relation: str) -> datetime | None:
    """Where a continuous aggregate's materialized buckets end (None: nothing materialized)."""
    # In microseconds since 1970; before any refresh it is the smallest time there is.
    cursor.execute(
        "SELECT CASE WHEN w > 0 THEN _timescaledb_functions.to_timestamp(w) END FROM ("
        "SELECT _timescaledb_functions.cagg_watermark(mat_hypertable_id) AS w "
        "FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = %s) watermark",
        [relation],
    )
    row = cursor.fetchone()
    return row[0] if row else None


def _refresh_aggregates(windows: dict[str, tuple], wait: bool) -> bool:
    """Refresh every continuous aggregate over its (start, end) window (by relation), 1m then 1h
    (built on 1m), holding the refresh lock; False if not waiting and the lock is taken.

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
            for tier in TIERS:
                for family in FAMILIES:
                    rel = family.relation(tier)
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
    # An hour is refreshed from its minutes, so its window starts earlier (with a margin).
    back = {"1m": late, "1h": late + 2 * WIDTH["1h"]}
    windows = {}
    with connection.cursor() as cursor:
        for tier in TIERS:
            for family in FAMILIES:
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
        # The window reaches one bucket past `end` so that the newest, still filling, bucket is
        # included. A beat refresh under way is waited for.
        windows = {f.relation(tier): (start, end + WIDTH[tier] if end else None) for tier in TIERS for f in FAMILIES}
        _refresh_aggregates(windows, wait=True)


# --- where each tier stops: the history query adds raw rows (or finer buckets) after it ---------


def horizons(server_id: int) -> dict[str, datetime | None]:
    """Per tier, the time before which its buckets for this server are final.

    None means the tier holds nothing usable for the server (read everything from finer data).
    """
    backend = installed_backend()
    if backend is None:
        return {tier: None for tier in TIERS}
    result = {}
    with connection.cursor() as cursor:
        for tier in TIERS:
            if backend == "continuous":
                result[tier] = watermark(cursor, SNAPSHOT.relation(tier))
                continue
            cursor.execute(
                f"SELECT (SELECT max(bucket) FROM {SNAPSHOT.relation(tier)} WHERE server_id = %s), "
                "(SELECT min(bucket) FROM monitoring_tierdirty WHERE tier = %s AND server_id = %s)",
                [server_id, tier, server_id],
            )
            newest, oldest_dirty = cursor.fetchone()
            done = newest + WIDTH[tier] if newest is not None else None
            if done is not None and oldest_dirty is not None:
                done = min(done, oldest_dirty)
            result[tier] = done
    return result
