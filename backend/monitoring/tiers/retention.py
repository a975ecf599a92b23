"""Retention per tier (raw, 1m, 1h), stored in the database and applied with drop_chunks.

Workload ranges (monitoring/workloads/) follow the longest-kept tier: a range that ended before
its cutoff goes with the chunks.

Only whole chunks whose time range ends before the cutoff are dropped, so a policy of
N days keeps at least N days. Raw rows are never dropped before they are rolled up:
a raw policy must outlast MONITORING_TIER_LATE_DAYS (how far back late samples are
re-rolled), and `apply` refuses to drop raw chunks the tiers have not caught up with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .. import ingest, workloads
from ..models import SAMPLE_TABLES, RetentionPolicy
from . import definitions as tiers

TIER_ORDER = ("raw", "1m", "1h")
TIME_COLUMN = {"raw": "collected_at", "1m": "bucket", "1h": "bucket"}
# Tiers that have no policy of their own: the fleet report's daily buckets follow the hourly ones.
POLICY_OF = {"1d": "1h"}


class RetentionError(ValueError):
    pass


def relations(tier: str) -> list[str]:
    if tier == "raw":
        return list(SAMPLE_TABLES)
    return [
        family.relation(own)
        for own in tiers.ALL_TIERS
        if POLICY_OF.get(own, own) == tier
        for family in tiers.families(own)
    ]


def policies() -> dict[str, int]:
    stored = dict(RetentionPolicy.objects.values_list("tier", "days"))
    return {tier: stored.get(tier, RetentionPolicy.DEFAULT_DAYS[tier]) for tier in TIER_ORDER}


def check_policy(tier: str, days: int, others: dict[str, int] | None = None) -> None:
    """Refuse a policy that would lose data the tiers still need, with the reason."""
    if tier not in TIER_ORDER:
        raise RetentionError(f"unknown tier {tier!r}; use one of {', '.join(TIER_ORDER)}")
    if days < 1:
        raise RetentionError("days must be at least 1")
    late = settings.MONITORING_TIER_LATE_DAYS
    if tier in ("raw", "1m") and days <= late:
        source = "raw rows" if tier == "raw" else "1-minute buckets"
        raise RetentionError(
            f"{tier} must be kept longer than {late} days (MONITORING_TIER_LATE_DAYS): {source} younger than that "
            "may not be rolled up yet, and late samples are still rolled up from them"
        )
    others = dict(others if others is not None else policies())
    others[tier] = days
    for finer, coarser in zip(TIER_ORDER, TIER_ORDER[1:]):
        if others[finer] > others[coarser]:
            raise RetentionError(
                f"{coarser} ({others[coarser]} days) must be kept at least as long as {finer} ({others[finer]} days): "
                "long windows are served from the coarser tier"
            )


def set_policy(tier: str, days: int) -> RetentionPolicy:
    check_policy(tier, days)
    policy, _ = RetentionPolicy.objects.update_or_create(tier=tier, defaults={"days": days})
    return policy


@dataclass
class Chunk:
    tier: str
    relation: str
    name: str  # schema-qualified
    range_start: datetime
    range_end: datetime
    bytes: int


def _hypertable(cursor, relation: str) -> tuple[str, str, str]:
    """(qualified name, schema, name) of the hypertable behind a relation: the relation itself,
    or a continuous aggregate's materialization hypertable."""
    cursor.execute(
        "SELECT materialization_hypertable_schema, materialization_hypertable_name "
        "FROM timescaledb_information.continuous_aggregates WHERE view_name = %s",
        [relation],
    )
    schema, name = cursor.fetchone() or ("public", relation)
    return f"{schema}.{name}", schema, name


def chunks_to_drop(now: datetime | None = None) -> list[Chunk]:
    now = now or timezone.now()
    plan = []
    with connection.cursor() as cursor:
        for tier, days in policies().items():
            cutoff = now - timedelta(days=days)
            for relation in relations(tier):
                hypertable, schema, name = _hypertable(cursor, relation)
                cursor.execute(
                    "SELECT c.chunk_schema || '.' || c.chunk_name, c.range_start, c.range_end, "
                    "coalesce(s.total_bytes, 0) "
                    "FROM timescaledb_information.chunks c "
                    "LEFT JOIN chunks_detailed_size(%s) s ON s.chunk_schema = c.chunk_schema "
                    "AND s.chunk_name = c.chunk_name "
                    "WHERE c.hypertable_schema = %s AND c.hypertable_name = %s AND c.range_end <= %s "
                    "ORDER BY c.range_start",
                    [hypertable, schema, name, cutoff],
                )
                plan += [Chunk(tier, relation, *row) for row in cursor.fetchall()]
    return plan


def _rolled_up_until(cursor) -> datetime | None:
    """Raw rows before this time are in the tiers (None: nothing is waiting)."""
    if tiers.installed_backend() == "continuous":
        return min(
            (h for h in tiers.horizons(None).values() if h is not None),
            default=None,
        )
    cursor.execute("SELECT min(bucket) FROM monitoring_tierdirty")
    return cursor.fetchone()[0]


def apply(now: datetime | None = None, progress=None) -> list[Chunk]:
    """Drop every chunk past its tier's policy; returns what was dropped."""
    plan = chunks_to_drop(now)
    with connection.cursor() as cursor:
        waiting = _rolled_up_until(cursor)
    newest_raw = max((c.range_end for c in plan if c.tier == "raw"), default=None)
    if waiting is not None and newest_raw is not None and newest_raw > waiting:
        raise RetentionError(
            f"raw rows from {waiting.isoformat()} on are not rolled up yet; refusing to drop raw chunks up to "
            f"{newest_raw.isoformat()} (refresh the tiers first: manage.py tiers refresh)"
        )
    for chunk in plan:
        _drop(chunk)
        if progress is not None:
            progress(chunk)
    # Workload ranges are kept as long as the longest-kept tier, so that any window a tier still
    # answers finds the workloads that ran in it.
    workloads.prune((now or timezone.now()) - timedelta(days=max(policies().values())))
    return plan


def _drop(chunk: Chunk) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        if chunk.relation == "monitoring_snapshot":
            ingest.forget_chunk(cursor, chunk.name)
        cursor.execute(
            "SELECT drop_chunks(%s, older_than => %s, newer_than => %s)",
            [chunk.relation, chunk.range_end, chunk.range_start],
        )


@dataclass
class TierReport:
    tier: str
    relation: str
    days: int
    bytes: int
    chunks: int
    oldest: datetime | None
    newest: datetime | None
    compressed_chunks: int
    bytes_before_compression: int | None
    bytes_after_compression: int | None

    @property
    def compression_ratio(self) -> float | None:
        if not self.bytes_after_compression:
            return None
        return self.bytes_before_compression / self.bytes_after_compression


def report() -> list[TierReport]:
    rows = []
    with connection.cursor() as cursor:
        for tier, days in policies().items():
            for relation in relations(tier):
                hypertable, schema, name = _hypertable(cursor, relation)
                cursor.execute(
                    "SELECT hypertable_size(%s), "
                    "(SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_schema = %s "
                    " AND hypertable_name = %s), "
                    "(SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_schema = %s "
                    " AND hypertable_name = %s AND is_compressed)",
                    [hypertable, schema, name, schema, name],
                )
                size, chunks, compressed = cursor.fetchone()
                column = TIME_COLUMN[tier]
                cursor.execute(f"SELECT min({column}), max({column}) FROM {relation}")
                oldest, newest = cursor.fetchone()
                before = after = None
                if compressed:
                    cursor.execute(
                        "SELECT sum(before_compression_total_bytes), sum(after_compression_total_bytes) "
                        "FROM hypertable_compression_stats(%s)",
                        [hypertable],
                    )
                    before, after = cursor.fetchone()
                rows.append(
                    TierReport(tier, relation, days, size or 0, chunks, oldest, newest, compressed, before, after)
                )
    return rows
