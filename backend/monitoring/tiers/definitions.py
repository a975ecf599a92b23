"""Downsampled tiers: 1-minute and 1-hour buckets of snapshots, GPU samples and disk samples,
and 1-day buckets of the fleet report's part.

The relations are the same however they are made, `monitoring_{family}_{tier}` with
per bucket: `sample_count`, `<metric>_avg` and `<metric>_max` of every metric the
history shows; the labels' family (`snapshotlabel`, from the classifier's label rows) holds the
bottleneck mix `bn_<label>` (labelled samples per label) and the GPU samples per label:

- `continuous`: real continuous aggregates (TimescaleDB's Timescale-licensed edition,
  e.g. the official Docker image), 1h built on 1m and 1d on 1h, materialized only (the
  history query adds the raw tail itself);
- `rollup`: plain hypertables (the Apache edition, e.g. Debian's package).

MONITORING_TIER_BACKEND=auto|continuous|rollup picks one when migrating (the migrations
hold the statements that create them, as they were then); `auto` takes continuous
aggregates wherever the edition has them. This module says what the tiers hold and how a
bucket is computed, which backend is installed, and how far each tier has got (horizons);
refresher.py keeps them up to date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection

from .. import catalogue
from ..catalogue import LABELS

# The tiers every family has (the history's), finest first; DAILY families add 1-day buckets.
TIERS = ("1m", "1h")
WIDTH = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
INTERVAL = {"1m": "1 minute", "1h": "1 hour", "1d": "1 day"}
# Each tier is built from the one before it.
SOURCE = {"1h": "1m", "1d": "1h"}
# Families that also keep 1-day buckets: the fleet report's parts, so that a month is 30 rows a server.
DAILY = ("snapshot_p2", "snapshotlabel")


def label_column(label: str, metric: str | None = None) -> str:
    """The column of a label's samples (a `bn_<label>` count), or of a metric's sum over them."""
    column = "bn_" + label.replace("-", "_")
    return f"{metric}_{column}" if metric else column


@dataclass(frozen=True)
class Family:
    """The tier relations of one part of one raw table: `monitoring_{name}_{tier}`."""

    name: str  # snapshot, gpusample, disksample; a later part: gpusample_p2
    raw_name: str  # the raw hypertable's: snapshot, gpusample, disksample
    key: str | None  # the device column, if any
    key_type: str | None
    # (metric, aggregate) in column order: `<metric>_<aggregate>` per bucket; a `label_sum`
    # is a column per label, `<metric>_bn_<label>`: the metric summed over that label's samples.
    aggregates: tuple[tuple[str, str], ...]
    labels: bool = False  # a `bn_<label>` count per label, of the raw rows' `label`
    tiers: tuple[str, ...] = TIERS

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

    @property
    def plain(self) -> tuple[tuple[str, str], ...]:
        """The aggregates that are one column each (`<metric>_<aggregate>`)."""
        return tuple((m, how) for m, how in self.aggregates if how != "label_sum")

    @property
    def label_sums(self) -> tuple[str, ...]:
        return tuple(m for m, how in self.aggregates if how == "label_sum")


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
        own = (*TIERS, "1d") if name in DAILY else TIERS
        families.append(Family(name, raw_name, key, key_type, aggregates, tiers=own))
    return tuple(families)


PARTS = {block: _families(block) for block in RAW}
SNAPSHOT, GPU, DISK = (PARTS[block][0] for block in RAW)
# The labels' family: per bucket, labelled snapshots per label and their GPUs per label.
LABEL = Family(
    "snapshotlabel", "snapshotlabel", None, None, (("gpu_count", "label_sum"),), labels=True, tiers=(*TIERS, "1d")
)
# What the snapshot families kept of the labels while labels were columns of the snapshot (until
# migration 0010), by the metric summed per label (None: the count): their relations still have
# these columns, named as the labels' family names its own, frozen since (zero for every newer
# bucket). Where the labels' family has no bucket (history older than the raw rows it was made
# from, on continuous aggregates), reads take them instead.
LEGACY_LABELS = {"snapshot": None, "snapshot_p2": "gpu_count"}


def label_read(family: Family, label: str, alias: str, legacy_alias: str) -> str:
    """What `family` (`legacy_alias`, a snapshot family of LEGACY_LABELS) kept per label, read from
    the labels' family (`alias`), or where it has no bucket, from `family`'s own frozen column."""
    column = label_column(label, LEGACY_LABELS[family.name])
    return f"coalesce({alias}.{column}, {legacy_alias}.{column})"


# Every family, each block's parts in order (a coarser relation is built on its own part's finer one).
FAMILIES = (*(family for parts in PARTS.values() for family in parts), LABEL)
# Every tier some family has, finest first.
ALL_TIERS = tuple(dict.fromkeys(tier for family in FAMILIES for tier in family.tiers))


def families(tier: str) -> tuple[Family, ...]:
    """The families that have this tier."""
    return tuple(family for family in FAMILIES if tier in family.tiers)


def relations() -> list[str]:
    """Every tier relation, finest tier first."""
    return [family.relation(tier) for tier in ALL_TIERS for family in families(tier)]


# --- the aggregates: one definition for both backends ------------------------------------

# A coarser bucket from finer ones: averages weighted by sample count, maxima of maxima, sums of sums.
_FROM_TIER = {
    "avg": "sum(r.{c} * r.sample_count) / NULLIF(sum(r.sample_count) FILTER (WHERE r.{c} IS NOT NULL), 0)",
    "max": "max(r.{c})",
    "sum": "sum(r.{c})",
}
# What a catalogue metric's `tier` may name.
AGGREGATES = (*_FROM_TIER, "label_sum")


def select_from_raw(family: Family, tier: str, where: str = "", joins: str = "") -> str:
    """Buckets of one tier computed from the raw hypertable."""
    cols = [f"time_bucket(INTERVAL '{INTERVAL[tier]}', r.collected_at) AS bucket", "count(*) AS sample_count"]
    cols += [f"{how}(r.{m}) AS {m}_{how}" for m, how in family.plain]
    if family.labels:
        cols += [f"count(*) FILTER (WHERE r.label = '{label}') AS {label_column(label)}" for label in LABELS]
    cols += [
        f"coalesce(sum(r.{m}) FILTER (WHERE r.label = '{label}'), 0) AS {label_column(label, m)}"
        for m in family.label_sums
        for label in LABELS
    ]
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
    cols += [_FROM_TIER[how].format(c=f"{m}_{how}") + f" AS {m}_{how}" for m, how in family.plain]
    cols += [
        f"sum(r.{column})::bigint AS {column}"
        for column in ([label_column(label) for label in LABELS] if family.labels else [])
        + [label_column(label, m) for m in family.label_sums for label in LABELS]
    ]
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
    cols += [(f"{m}_{how}", "double precision") for m, how in family.plain]
    if family.labels:
        cols += [(label_column(label), "bigint NOT NULL DEFAULT 0") for label in LABELS]
    cols += [(label_column(label, m), "bigint NOT NULL DEFAULT 0") for m in family.label_sums for label in LABELS]
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


# Where a continuous aggregate's materialized buckets end (null: nothing materialized), as a scalar
# subquery on the view's name. In microseconds since 1970; before any refresh it is the smallest
# time there is.
WATERMARK_SQL = (
    "(SELECT CASE WHEN w > 0 THEN _timescaledb_functions.to_timestamp(w) END FROM ("
    "SELECT _timescaledb_functions.cagg_watermark(mat_hypertable_id) AS w "
    "FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = {relation}) watermark)"
)


def watermark(cursor, relation: str) -> datetime | None:
    """Where a continuous aggregate's materialized buckets end (None: nothing materialized)."""
    cursor.execute("SELECT " + WATERMARK_SQL.format(relation="%s"), [relation])
    return cursor.fetchone()[0]


def horizons(server_id: int | None, *read: Family) -> dict[str, datetime | None]:
    """Per tier of the families read together (by default the snapshots' and the labels'; the
    first's tiers), the time before which their buckets for this server (None: for every server)
    are final: the end of the newest bucket each has (no later than a continuous aggregate's
    watermark; a family with none does not count), or the oldest bucket marked dirty, whichever
    is earliest.

    None means the tier holds nothing usable (read everything from finer data).
    """
    read = read or (SNAPSHOT, LABEL)
    backend = installed_backend()
    if backend is None:
        return {tier: None for tier in read[0].tiers}
    one = "" if server_id is None else " AND server_id = %(server)s"
    result = {}
    with connection.cursor() as cursor:
        for tier in read[0].tiers:
            relations = [family.relation(tier) for family in read if tier in family.tiers]
            # Each relation's newest bucket for the server (what came after it, not labelled yet,
            # is read from raw rows), its watermark if it is a continuous aggregate, and the
            # tier's oldest dirty bucket, in one round trip.
            columns = [f"(SELECT max(bucket) FROM {relation} WHERE true{one})" for relation in relations]
            if backend == "continuous":
                columns += [WATERMARK_SQL.format(relation=f"'{relation}'") for relation in relations]
            cursor.execute(
                f"SELECT (SELECT min(bucket) FROM monitoring_tierdirty WHERE tier = %(tier)s{one}), {', '.join(columns)}",
                {"tier": tier, "server": server_id},
            )
            oldest_dirty, *found = cursor.fetchone()
            ends, marks = found[: len(relations)], found[len(relations) :] or [None] * len(relations)
            # A relation with no bucket for the server does not hold the others back: labels of
            # history older than the label rows live in the snapshots' relations (LEGACY_LABELS).
            holding = [(end, mark) for end, mark in zip(ends, marks) if end is not None]
            done = min(end for end, _ in holding) + WIDTH[tier] if holding else None
            if backend == "continuous":
                for _, mark in holding:
                    done = min(done, mark) if mark is not None and done is not None else None
            # A dirty bucket (a late sample, a late label) is read from finer data until refreshed.
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
    coarsest_first = ALL_TIERS[::-1]
    chain = coarsest_first[coarsest_first.index(source) :]
    pieces, cursor = [], start
    for i, tier in enumerate(chain):
        done = horizon[tier]
        # A coarser tier cannot be ahead of the finer one it is built from.
        for finer in chain[i + 1 :]:
            if done is not None and horizon[finer] is not None:
                done = min(done, horizon[finer])
        if done is None or done <= cursor:
            continue
        # Aligned, a tier's piece ends on one of its bucket boundaries no later than `end` too: a
        # bucket that `end` cuts is left to the finer tiers.
        upto = floor(min(done, end), WIDTH[tier]) if align else min(done, end)
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
