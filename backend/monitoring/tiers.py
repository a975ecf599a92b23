"""Downsampled tiers: 1-minute and 1-hour buckets of snapshots, GPU samples and disk samples.

The relations are the same however they are made, `monitoring_{family}_{tier}` with
per bucket: `sample_count`, `<metric>_avg` and `<metric>_max` of every metric the
history shows, and (snapshots) the bottleneck mix `bn_<label>` (samples per label):

- `continuous`: real continuous aggregates (TimescaleDB's Timescale-licensed edition,
  e.g. the official Docker image), 1h built on 1m, materialized only (the history query
  adds the raw tail itself);
- `rollup`: plain hypertables (the Apache edition, e.g. Debian's package).

MONITORING_TIER_BACKEND=auto|continuous|rollup picks one when migrating (the migrations
hold the statements that create them, as they were then); `auto` takes continuous
aggregates wherever the edition has them. This module says what the tiers hold and how a
bucket is computed, which backend is installed, and how far each tier has got (horizons);
tier_refresh.py keeps them up to date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection

from . import catalogue
from .bottleneck import LABELS

TIERS = ("1m", "1h")
WIDTH = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1)}
INTERVAL = {"1m": "1 minute", "1h": "1 hour"}


def label_column(label: str) -> str:
    return "bn_" + label.replace("-", "_")


@dataclass(frozen=True)
class Family:
    """The tier relations of one part of one raw table: `monitoring_{name}_{tier}`."""

    name: str  # snapshot, gpusample, disksample; a later part: gpusample_p2
    raw_name: str  # the raw hypertable's: snapshot, gpusample, disksample
    key: str | None  # the device column, if any
    key_type: str | None
    # (metric, aggregate) in column order: `<metric>_<aggregate>` per bucket.
    aggregates: tuple[tuple[str, str], ...]
    labels: bool = False

    @property
    def raw(self) -> str:
        return f"monitoring_{self.raw_name}"

    def relation(self, tier: str) -> str:
        return f"monitoring_{self.name}_{tier}"

    @property
    def group(self) -> str:
        return "server_id" + (f", {self.key}" if self.key else "")

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m for m, _ in self.aggregates))


# Each block's raw table and device key.
RAW = {
    "host": ("snapshot", None, None),
    "gpu": ("gpusample", "gpu_index", "smallint"),
    "disk": ("disksample", "device", "varchar(64)"),
}


def _families(block: str) -> tuple[Family, ...]:
    """One family per tier part the catalogue gives the block's metrics (part 1 always)."""
    raw_name, key, key_type = RAW[block]
    tiered = catalogue.block(block, tiered=True)
    families = []
    for part in sorted({1, *(m.tier_part for m in tiered)}):
        aggregates = tuple((m.name, how) for m in tiered if m.tier_part == part for how in m.tier)
        name = raw_name if part == 1 else f"{raw_name}_p{part}"
        families.append(Family(name, raw_name, key, key_type, aggregates, labels=block == "host" and part == 1))
    return tuple(families)


PARTS = {block: _families(block) for block in RAW}
SNAPSHOT, GPU, DISK = (PARTS[block][0] for block in RAW)
# Every family, each block's parts in order (a 1h relation is built on its own part's 1m one).
FAMILIES = tuple(family for parts in PARTS.values() for family in parts)


# --- the aggregates: one definition for both backends ------------------------------------

# A coarser bucket from finer ones: averages weighted by sample count, maxima of maxima, sums of sums.
_FROM_TIER = {
    "avg": "sum(r.{c} * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.{c} IS NOT NULL), 0)",
    "max": "max(r.{c})",
    "sum": "sum(r.{c})",
}


def select_from_raw(family: Family, tier: str, where: str = "", joins: str = "") -> str:
    """Buckets of one tier computed from the raw hypertable."""
    cols = [f"time_bucket(INTERVAL '{INTERVAL[tier]}', r.collected_at) AS bucket", "count(*) AS sample_count"]
    cols += [f"{how}(r.{m}) AS {m}_{how}" for m, how in family.aggregates]
    if family.labels:
        cols += [f"count(*) FILTER (WHERE r.bottleneck_label = '{label}') AS {label_column(label)}" for label in LABELS]
    group = ", ".join(f"r.{c.strip()}" for c in family.group.split(","))
    return (
        f"SELECT {group}, {', '.join(cols)} FROM {family.raw} r {joins} {where} "
        f"GROUP BY {group}, time_bucket(INTERVAL '{INTERVAL[tier]}', r.collected_at)"
    )


def select_from_tier(family: Family, tier: str, source: str, where: str = "", joins: str = "") -> str:
    """Buckets of a coarser tier computed from a finer one."""
    cols = [
        f"time_bucket(INTERVAL '{INTERVAL[tier]}', r.bucket) AS bucket",
        "sum(r.sample_count)::bigint AS sample_count",
    ]
    cols += [_FROM_TIER[how].format(c=f"{m}_{how}") + f" AS {m}_{how}" for m, how in family.aggregates]
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
    cols += [(f"{m}_{how}", "double precision") for m, how in family.aggregates]
    if family.labels:
        cols += [(label_column(label), "bigint NOT NULL DEFAULT 0") for label in LABELS]
    return cols


# --- which backend the migration installed ---------------------------------------------------


def edition(cursor) -> str:
    cursor.execute("SELECT current_setting('timescaledb.license', true)")
    return (cursor.fetchone()[0] or "apache").lower()


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


# --- where each tier stops: the history query adds raw rows (or finer buckets) after it ---------


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


def split(
    horizon: dict[str, datetime | None], source: str, start: datetime, end: datetime, align: bool = False
) -> list[tuple[str, datetime, datetime]]:
    """(source, from, to) pieces that cover [start, end]: the tier up to where its buckets are
    final (`horizon`), then finer tiers, then raw rows. align: a tier's piece ends on one of its
    bucket boundaries (whole buckets only)."""
    if source == "raw":
        return [("raw", start, end)]
    chain = ["1h", "1m"] if source == "1h" else ["1m"]
    pieces, cursor = [], start
    for i, tier in enumerate(chain):
        done = horizon[tier]
        # A coarser tier cannot be ahead of the finer one it is built from.
        for finer in chain[i + 1 :]:
            if done is not None and horizon[finer] is not None:
                done = min(done, horizon[finer])
        if done is None or done <= cursor:
            continue
        upto = min(floor(done, WIDTH[tier]) if align else done, end)
        if upto > cursor:
            pieces.append((tier, cursor, upto))
            cursor = upto
    if cursor < end:
        pieces.append(("raw", cursor, end))
    return pieces


def floor(moment: datetime, width: timedelta) -> datetime:
    """The start of the bucket of this width that holds the moment (UTC buckets, as time_bucket's)."""
    epoch = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday, as time_bucket's origin
    return epoch + ((moment - epoch) // width) * width
