"""The fleet report over HTTP: 1,000 servers × 30 days of tiers, and beside it the same answer
from raw rows for a smaller fleet.

    .venv/bin/python bench/report.py [--servers 1000] [--days 30] [--gpus 8] [--runs 20]

The small fleet is seeded first with seed_history (raw rows, then its tiers); its report is
computed from the tiers and from raw rows alone, in this process. Then, in an emptied database,
the large fleet's tier part that the report reads (per bucket: the sums over each sample's GPUs, in
all and per label) is written straight into the tier relations, 1-hour buckets (and 1-minute ones
with --fine) with generate_series and 1-day ones from them, and its report is timed over HTTP: with
the day tier, and again with it emptied (whole days from the hour tier).

Runs against its own database (DATABASE_URL's name + "_report"), emptied first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bench.common import Processes, machine, percentile, session_cookie, setup_environment, table  # noqa: E402


def seed_tiers(servers: int, days: int, gpus: int, fine: bool) -> None:
    """The report's tier part for `servers` servers over `days` days, straight into the tier
    relations (rollup tables) with a realistic label mix: 1-hour buckets with generate_series (and
    1-minute ones for two days with `fine`), then the 1-day buckets from them as beat builds them."""
    from django.db import connection

    from monitoring.catalogue import LABELS
    from monitoring.models import MonitoredServer
    from monitoring.report import fleet as report
    from monitoring.tiers import definitions as tiers

    prefix = "fleet-"
    if tiers.installed_backend() != "rollup":
        raise SystemExit("this benchmark writes rollup tables: run it on the Apache edition (make services)")
    MonitoredServer.objects.bulk_create(
        MonitoredServer(slug=f"{prefix}{i:04d}", name=f"Fleet {i:04d}", sample_interval_seconds=2.0)
        for i in range(servers)
    )
    totals = report.TOTALS
    labels = ", ".join(tiers.label_column(label, "gpu_count") for label in LABELS)
    # Per bucket, the GPU samples spread over the labels: mostly gpu-bound, some of each other.
    shares = (0.55, 0.12, 0.05, 0.03, 0.05, 0.08, 0.07, 0.05)[: len(LABELS)]
    started = time.perf_counter()
    with connection.cursor() as cursor:
        servers_sql = f"SELECT id FROM monitoring_monitoredserver WHERE slug LIKE '{prefix}%'"
        for tier, n in (("1h", 1800), ("1m", 30))[: 2 if fine else 1]:
            since = f"date_trunc('hour', now()) - INTERVAL '{days if tier == '1h' else 2} days'"
            width = tiers.INTERVAL[tier]
            buckets = f"generate_series({since}, now() - INTERVAL '{width}', INTERVAL '{width}')"
            cursor.execute(
                f"INSERT INTO {totals.relation(tier)} (server_id, bucket, sample_count, gpu_count_sum, "
                f"gpu_util_total_percent_sum, gpu_energy_joules_sum, {labels}) "
                f"SELECT s.id, b, {n}, {n * gpus}, {n} * {gpus} * (40 + s.id % 55), {n} * {gpus} * 400.0 * 2, "
                f"{', '.join(str(round(n * gpus * share)) for share in shares)} "
                f"FROM ({servers_sql}) s, {buckets} b"
            )
        # Whole days only, as beat rolls them up: today stays in the hour tier.
        names = ", ".join(name for name, _ in tiers.tier_columns(totals))
        select = tiers.select_from_tier(totals, "1d", "1h", where="WHERE r.bucket < date_trunc('day', now())")
        cursor.execute(f"INSERT INTO {totals.relation('1d')} ({names}) SELECT {names} FROM ({select}) s")
        cursor.execute("ANALYZE")
    print(f"seeded {servers} servers × {days} days of tiers in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def reset() -> None:
    from django.db import connection

    from monitoring.tiers import definitions as tiers

    relations = tiers.relations()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE monitoring_snapshot, monitoring_gpusample, monitoring_disksample, monitoring_xiderror, "
            f"monitoring_tierdirty, monitoring_monitoredserver, {', '.join(relations)} CASCADE"
        )


def seed_raw(servers: int, days: float, gpus: int) -> None:
    from tests import samples

    for i in range(servers):
        samples.seed_history(f"raw-{i:03d}", days, gpus=gpus, seed=i)


def time_report(base: str, cookies: dict, params: dict, runs: int) -> dict:
    session = requests.Session()
    session.cookies.update(cookies)
    first = session.get(f"{base}/api/fleet/report/", params=params, timeout=600)
    first.raise_for_status()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        session.get(f"{base}/api/fleet/report/", params=params, timeout=600).raise_for_status()
        times.append((time.perf_counter() - began) * 1000)
    body = first.json()
    return {
        "p50": percentile(times, 50),
        "p95": percentile(times, 95),
        "servers": body["fleet"]["servers"],
        "gpu_hours": body["fleet"]["gpu_hours"],
        "source": body["source"],
    }


def report_row(run: dict, what: str) -> list[str]:
    return [
        f"{run['servers']:,} servers × {what}",
        run["source"],
        f"{run['gpu_hours']:,.0f}",
        f"{run['p50']:.0f}",
        f"{run['p95']:.0f}",
    ]


def in_process(days: float, runs: int, raw_only: bool) -> dict:
    """The report computed in this process; raw_only: as if no tier held anything (raw rows alone)."""
    from monitoring.report import fleet as report
    from monitoring.tiers import definitions as tiers

    window = report.parse_window({"days": str(days)})
    original = report.fleet_horizons
    if raw_only:
        report.fleet_horizons = lambda: {tier: None for tier in tiers.ALL_TIERS}
    try:
        times, body = [], None
        for _ in range(runs):
            began = time.perf_counter()
            body = report.fleet_report(window)
            times.append((time.perf_counter() - began) * 1000)
    finally:
        report.fleet_horizons = original
    return {"p50": percentile(times, 50), "p95": percentile(times, 95), "gpu_hours": body["fleet"]["gpu_hours"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--raw-servers", type=int, default=10)
    parser.add_argument("--raw-days", type=float, default=2)
    parser.add_argument("--fine", action="store_true", help="also the 1-minute tier for two days, and a 1-day report")
    args = parser.parse_args()

    env = setup_environment("report")
    reset()
    print(f"seeding {args.raw_servers} servers × {args.raw_days:g} days of raw samples ...", file=sys.stderr)
    seed_raw(args.raw_servers, args.raw_days, args.gpus)
    tiered = in_process(args.raw_days, 5, raw_only=False)
    raw = in_process(args.raw_days, 3, raw_only=True)
    small = f"{args.raw_servers} servers × {args.raw_days:g} d"
    rows = [
        [
            f"{small}: tiers (in process)",
            "1m",
            f"{tiered['gpu_hours']:,.1f}",
            f"{tiered['p50']:.0f}",
            f"{tiered['p95']:.0f}",
        ],
        [
            f"{small}: raw rows only (in process)",
            "raw",
            f"{raw['gpu_hours']:,.1f}",
            f"{raw['p50']:.0f}",
            f"{raw['p95']:.0f}",
        ],
    ]
    reset()
    seed_tiers(args.servers, args.days, args.gpus, args.fine)
    procs = Processes()
    try:
        base = procs.web(env, 2)
        cookies = session_cookie()
        for days in (args.days, 7, 1) if args.fine else (args.days, 7):
            run = time_report(base, cookies, {"days": days}, args.runs)
            rows.append(report_row(run, f"{days} d: tiers (HTTP)"))
        # The same month with the day tier emptied: whole days from the hour tier, as before it.
        from django.db import connection

        from monitoring.report import fleet as report

        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {report.TOTALS.relation('1d')}")
        run = time_report(base, cookies, {"days": args.days}, args.runs)
        rows.append(report_row(run, f"{args.days} d: hour tier only (HTTP)"))
    finally:
        procs.stop_all()
    reset()
    print(f"\nFleet report benchmark on {machine()}; {args.gpus} GPUs per server\n")
    print(table(["report", "source", "GPU-hours", "p50 ms", "p95 ms"], rows))


if __name__ == "__main__":
    main()
