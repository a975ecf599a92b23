"""The fleet report: where the fleet's GPU-hours went, by bottleneck, per server and per day.

GPU-hours are GPUs × time covered by samples: each GPU sample stands for the server's sample
interval. A stretch goes to the label of its samples, through the tiers' GPU samples per label;
samples not classified yet go to `unclassified`, so that the labels add up to the GPU-hours for
the fleet, every server and every day. Utilization is GPU utilization weighted by GPU-hours;
energy is the sum of the GPUs' energy counters' increments.

GPU time that did not do its job is lost (every label but USEFUL, `unclassified` included), in two
kinds that call for different fixes: unused (UNUSED: nothing on the GPU; a scheduler's business)
and wasted (WASTED: a job holds the GPU but waits on something else; the job's business).

Served in SQL from the tiers, each from its first whole bucket: the window starts on an hour (a
minute for windows of two days or less), whole hours come from the 1-hour tier and whole days from
the 1-day tier; the part the tiers have not rolled up yet from the 1-minute tier and then raw rows,
as the history does, but with fleet-wide horizons: one query for every server. It reads one relation
per tier, the snapshot tiers' second part, which sums every sample's GPUs (count, count per label,
utilization, energy): never a row per GPU, and no join. A month of 1,000 servers is about 53,000
rows (29 days, and the hours of the first and last).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .. import tiers
from ..catalogue import LABELS
from .history import DEFAULT_INTERVAL_SECONDS

UNCLASSIFIED = "unclassified"
REPORT_LABELS = (*LABELS, UNCLASSIFIED)
# Everything but these is GPU time lost to something.
USEFUL = ("gpu-bound", "balanced")
# Lost because nothing ran on the GPU.
UNUSED = ("idle",)
# Lost while a job held the GPU but waited: on the CPU, disk, host memory, a power or thermal cap,
# or on nothing at all with its memory held.
WASTED = tuple(label for label in LABELS if label not in USEFUL + UNUSED)
FINE_MAX = timedelta(days=2)  # up to this window the 1-minute tier serves
DEFAULT_DAYS = 7


class ReportRequestError(ValueError):
    pass


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def source(self) -> str:
        return "1m" if self.end - self.start <= FINE_MAX else "1h"


def parse_window(params, now: datetime | None = None) -> Window:
    """`days` (default 7), or `from` and `to` as ISO times (to defaults to now)."""
    now = now or timezone.now()
    longest = timedelta(minutes=settings.MONITORING_MAX_HISTORY_MINUTES)
    if params.get("from") or params.get("to"):
        start = _time(params.get("from"), "from") if params.get("from") else None
        end = _time(params.get("to"), "to") if params.get("to") else now
        if start is None:
            raise ReportRequestError("from is required with to")
        if start >= end:
            raise ReportRequestError("from must be before to")
        if end - start > longest:
            raise ReportRequestError(f"the window must be at most {longest.days} days")
        return Window(start, end)
    raw = (params.get("days") or str(DEFAULT_DAYS)).strip()
    try:
        # Read exactly: a tiny positive number (5e-324, 1e-400) is more than 0, as the spec says,
        # however a float would round it.
        days = Decimal(raw)
    except InvalidOperation:
        raise ReportRequestError(f"days must be a number, not {raw[:20]!r}") from None
    if not (days.is_finite() and 0 < days <= Decimal(settings.MONITORING_MAX_HISTORY_MINUTES) / 1440):
        raise ReportRequestError(f"days must be more than 0 and at most {longest.days}")
    return Window(now - timedelta(days=float(days)), now)


def _time(value: str, name: str) -> datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReportRequestError(f"{name} must be an ISO 8601 time, not {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise ReportRequestError(f"{name} must include a timezone offset, e.g. 2026-11-20T00:00:00Z")
    return moment


# --- SQL -------------------------------------------------------------------------------------

# The snapshot tiers' second part: per bucket, snapshots and the sums over every sample's GPUs, in
# all and per label; it alone also has 1-day buckets.
TOTALS = tiers.PARTS["host"][1]
_LABEL_SUMS = [tiers.label_column(label, "gpu_count") for label in LABELS]
# Per piece, per server and day: snapshots, GPU samples, utilization × samples, GPU samples per
# label, joules.
_COLUMNS = ["snapshots", "gpu_samples", "util", *_LABEL_SUMS, "joules"]


def _tier_piece(tier: str, index: int) -> str:
    labels = ", ".join(f"{tiers.label_read(TOTALS, label, 'l', 't')}::float8" for label in LABELS)
    return (
        # float8 throughout: continuous aggregates' sums of sums are numeric, slower to add up.
        f"SELECT t.server_id, date_trunc('day', t.bucket AT TIME ZONE 'UTC'), t.sample_count::float8, "
        f"t.gpu_count_sum::float8, t.gpu_util_total_percent_sum::float8, {labels}, "
        f"coalesce(t.gpu_energy_joules_sum, 0)::float8 FROM {TOTALS.relation(tier)} t "
        f"LEFT JOIN {tiers.LABEL.relation(tier)} l USING (server_id, bucket) "
        f"WHERE t.bucket >= %(lo_{index})s AND t.bucket < %(hi_{index})s AND t.gpu_count_sum > 0"
    )


def _raw_piece(index: int) -> str:
    labels = ", ".join(f"(sum(s.gpu_count) FILTER (WHERE l.label = '{label}'))::float8" for label in LABELS)
    bounds = f"collected_at >= %(lo_{index})s AND {{t}}.collected_at < %(hi_{index})s"
    return (
        "SELECT s.server_id, date_trunc('day', s.collected_at AT TIME ZONE 'UTC') AS day, count(*)::float8, "
        f"sum(s.gpu_count)::float8, sum(s.gpu_util_total_percent), {labels}, coalesce(sum(s.gpu_energy_joules), 0) "
        f"FROM monitoring_snapshot s LEFT JOIN {tiers.LABEL.raw} l "
        f"ON l.server_id = s.server_id AND l.collected_at = s.collected_at AND l.{bounds.format(t='l')} "
        f"WHERE s.{bounds.format(t='s')} AND s.gpu_count > 0 "
        "GROUP BY s.server_id, date_trunc('day', s.collected_at AT TIME ZONE 'UTC')"
    )


def report_sql(pieces: list[tuple[str, datetime, datetime]]) -> str:
    """Rows of (server, slug, name, day, snapshots, GPU samples, then GPU-seconds, utilization ×
    seconds and GPU-seconds per label, joules) per server (day NULL), per day (server NULL) and for
    the fleet (both NULL): each sample counts for its server's sample interval."""
    union = " UNION ALL ".join(
        _raw_piece(i) if kind == "raw" else _tier_piece(kind, i) for i, (kind, _, _) in enumerate(pieces)
    )
    timed = ", ".join(f"sum(p.{c} * m.seconds)" for c in _COLUMNS[1:-1])
    return (
        f"SELECT p.server_id, m.slug, m.name, p.day, sum(p.snapshots), sum(p.gpu_samples), {timed}, sum(p.joules) "
        f"FROM ({union}) AS p (server_id, day, {', '.join(_COLUMNS)}) "
        "JOIN (SELECT id, slug, name, coalesce(sample_interval_seconds, %(interval)s) AS seconds "
        "FROM monitoring_monitoredserver) m ON m.id = p.server_id "
        "GROUP BY GROUPING SETS ((p.server_id, m.slug, m.name), (p.day), ())"
    )


def fleet_horizons() -> dict[str, datetime | None]:
    """Per tier, the time before which its buckets are final for every server (None: nothing)."""
    return tiers.horizons(None, TOTALS, tiers.LABEL)


def pieces(window: Window) -> list[tuple[str, datetime, datetime]]:
    """(source, from, to): the window in the coarsest buckets that fit it. The start is rounded down
    to the source's buckets (1 minute or 1 hour); each coarser tier takes over at its first whole
    bucket (the first partial hour from minutes, the first partial day from hours, then whole
    days); the end from the finer tiers up to their horizons, then raw rows (tiers.split)."""
    horizon = fleet_horizons()
    cursor = tiers.floor(window.start, tiers.WIDTH[window.source])
    climb = TOTALS.tiers[TOTALS.tiers.index(window.source) :]
    found = []
    for finer, coarser in zip(climb, climb[1:]):
        width = tiers.WIDTH[coarser]
        boundary = tiers.floor(cursor, width)
        boundary = min(boundary if boundary == cursor else boundary + width, window.end)
        found += tiers.split(horizon, finer, cursor, boundary, align=True)
        cursor = boundary
    return found + tiers.split(horizon, climb[-1], cursor, window.end, align=True)


# --- the report ------------------------------------------------------------------------------


def _block(sums: list[float | None]) -> dict:
    """GPU-hours, utilization, energy and GPU-hours per label from one row's sums."""
    gpu_seconds, util, *labels, joules = (value or 0.0 for value in sums)
    by_label = dict(zip(LABELS, labels))
    # Samples not classified yet; never below 0 (a bucket filled before its labels were summed
    # splits its GPU samples in proportion, rounded).
    by_label[UNCLASSIFIED] = max(0.0, gpu_seconds - sum(labels))
    return {
        "gpu_hours": round(gpu_seconds / 3600, 3),
        "utilization_percent": round(util / gpu_seconds, 2) if gpu_seconds else None,
        "energy_kwh": round(joules / 3.6e6, 3),
        "by_bottleneck": {label: round(by_label[label] / 3600, 3) for label in REPORT_LABELS},
        "unused_gpu_hours": round(sum(by_label[label] for label in UNUSED) / 3600, 3),
        "wasted_gpu_hours": round(sum(by_label[label] for label in WASTED) / 3600, 3),
    }


def fleet_report(window: Window) -> dict:
    found = pieces(window)
    params = {"interval": DEFAULT_INTERVAL_SECONDS}
    for i, (_, lo, hi) in enumerate(found):
        params[f"lo_{i}"], params[f"hi_{i}"] = lo, hi
    with transaction.atomic(), connection.cursor() as cursor:
        # Tens of thousands of tier rows grouped three ways: in memory, not on disk.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(report_sql(found), params)
        rows = cursor.fetchall()
    # The empty grouping set gives the fleet's row even when there is nothing else.
    fleet, listed, days = {}, [], []
    for server_id, slug, name, day, snapshots, gpu_samples, *sums in rows:
        block = _block(sums)
        if server_id is not None:
            lost = sum(v for label, v in block["by_bottleneck"].items() if label not in USEFUL)
            worst = max(REPORT_LABELS, key=lambda label: block["by_bottleneck"][label])
            listed.append(
                {
                    "slug": slug,
                    "name": name,
                    # GPUs per sample, on average over the window.
                    "gpu_count": round(gpu_samples / snapshots, 2) if snapshots else 0,
                    **block,
                    "lost_gpu_hours": round(lost, 3),
                    "top_bottleneck": worst if block["by_bottleneck"][worst] > 0 else None,
                }
            )
        elif day is not None:
            days.append({"date": day.date().isoformat(), **block})
        else:
            fleet = block
    listed.sort(key=lambda b: (-b["lost_gpu_hours"], b["slug"]))
    days.sort(key=lambda d: d["date"])
    return {
        "ok": True,
        "from": window.start.isoformat(),
        "to": window.end.isoformat(),
        "source": window.source,
        "fleet": {"servers": len(listed), **fleet},
        "servers": listed,
        "days": days,
    }


def as_csv(report: dict) -> str:
    """A row per server, a column per label (GPU-hours), then the unused and wasted GPU-hours
    (after the columns it had before them, so that a spreadsheet's references hold)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "slug",
            "name",
            "gpu_count",
            "gpu_hours",
            "utilization_percent",
            "energy_kwh",
            "lost_gpu_hours",
            *REPORT_LABELS,
            "unused_gpu_hours",
            "wasted_gpu_hours",
        ]
    )
    for s in report["servers"]:
        writer.writerow(
            [
                s["slug"],
                s["name"],
                s["gpu_count"],
                s["gpu_hours"],
                s["utilization_percent"],
                s["energy_kwh"],
                s["lost_gpu_hours"],
                *(s["by_bottleneck"][label] for label in REPORT_LABELS),
                s["unused_gpu_hours"],
                s["wasted_gpu_hours"],
            ]
        )
    return out.getvalue()
