"""History over HTTP from the tiers and, side by side, from raw rows; ingest with tiers on and
off; bytes on disk per sample.

    .venv/bin/python bench/history.py [--days 30 90] [--runs 20] [--raw-runs 3] [--skip-ingest]

Seeds one server per history length with seed_history (2 s samples, 4 GPUs, 2 disks) into its
own database (DATABASE_URL's name + "_history"); a later run reuses what is already seeded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bench.common import ROOT, Processes, machine, percentile, session_cookie, setup_environment, table  # noqa: E402

WINDOWS = [("1 h", 60), ("24 h", 1440), ("7 d", 10080), ("30 d", 43200), ("90 d", 129600)]


def seed(env: dict, slug: str, days: int) -> None:
    from monitoring.models import MonitoredServer

    server = MonitoredServer.objects.filter(slug=slug).first()
    if server and server.snapshot_count >= days * 43200 * 0.95:
        print(f"{slug}: {server.snapshot_count:,} samples already seeded", file=sys.stderr)
        return
    if server:
        server.delete()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "backend" / "manage.py"),
            "seed_history",
            slug,
            "--days",
            str(days),
            "--interval",
            "2",
            "--gpus",
            "4",
            "--disks",
            "2",
        ],
        check=True,
        env=env,
    )
    subprocess.run(["psql", env["DATABASE_URL"], "-qc", "ANALYZE"], check=True)


def time_history(base: str, cookies: dict, slug: str, minutes: int, source: str, runs: int) -> dict:
    session = requests.Session()
    session.cookies.update(cookies)
    url = f"{base}/api/metrics/history/"
    params = {"server": slug, "minutes": minutes, "source": source}
    first = session.get(url, params=params, timeout=600)
    first.raise_for_status()
    body = first.json()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        session.get(url, params=params, timeout=600).raise_for_status()
        times.append((time.perf_counter() - began) * 1000)
    return {
        "p50": percentile(times, 50),
        "p95": percentile(times, 95),
        "points": body["point_count"],
        "source": body["source"],
        "resolution": body["resolution_seconds"],
        "bytes": len(first.content),
    }


def bytes_per_sample() -> list[list[str]]:
    from django.db import connection

    from monitoring.tiers import retention

    rows = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_snapshot")
        samples = cursor.fetchone()[0] or 1
        for report in retention.report():
            rows.append(
                [
                    report.tier,
                    report.relation,
                    f"{report.bytes / 2**20:,.1f}",
                    f"{report.bytes / samples:,.1f}",
                    f"{report.compression_ratio:.1f}x" if report.compression_ratio else "-",
                ]
            )
    return rows


def ingest_run(beat: bool, seconds: int) -> dict:
    """bench/ingest.py in its own process (its own database), with or without tier refresh."""
    args = [sys.executable, str(ROOT / "bench" / "ingest.py"), "--duration", str(seconds), "--json"]
    out = subprocess.run(args + (["--beat"] if beat else []), check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, nargs="+", default=[30, 90], help="history lengths to seed")
    parser.add_argument("--runs", type=int, default=20, help="requests per window from tiers")
    parser.add_argument("--raw-runs", type=int, default=3, help="requests per window with source=raw")
    parser.add_argument("--skip-ingest", action="store_true", help="skip ingest with tiers on and off")
    parser.add_argument("--ingest-seconds", type=int, default=20)
    args = parser.parse_args()

    env = setup_environment("history")
    from django.conf import settings
    from django.db import connection

    from monitoring.tiers import definitions as tiers

    for days in args.days:
        seed(env, f"history-{days}d", days)
    with connection.cursor() as cursor:
        edition = tiers.edition(cursor)
        if edition == "timescale":
            # What beat's compression task would have done by now (it runs hourly).
            for hypertable in ("monitoring_snapshot", "monitoring_gpusample", "monitoring_disksample"):
                cursor.execute(
                    "SELECT count(compress_chunk(c, if_not_compressed => true)) "
                    "FROM show_chunks(%s, older_than => %s) c",
                    [hypertable, timedelta(days=settings.MONITORING_COMPRESS_AFTER_DAYS)],
                )
    backend = tiers.installed_backend()
    cookies = session_cookie()
    procs = Processes()
    results = []
    try:
        # Raw over the whole window is what the tiers are compared with: lift the dashboard's
        # limits on raw windows and query time for this comparison.
        base = procs.web(
            {
                **env,
                "MONITORING_RAW_MAX_MINUTES": str(max(args.days) * 1440),
                "MONITORING_DASHBOARD_STATEMENT_TIMEOUT_SECONDS": "600",
            },
            2,
        )
        for days in args.days:
            slug = f"history-{days}d"
            for label, minutes in WINDOWS:
                if minutes > days * 1440:
                    continue
                tiered = time_history(base, cookies, slug, minutes, "auto", args.runs)
                raw = time_history(base, cookies, slug, minutes, "raw", args.raw_runs)
                results.append(
                    [
                        f"{days} d",
                        label,
                        f"{tiered['source']} @ {tiered['resolution']:g} s",
                        tiered["points"],
                        f"{tiered['p50']:.1f}",
                        f"{tiered['p95']:.1f}",
                        f"{raw['p50']:.1f}",
                        f"{raw['p95']:.1f}",
                        f"{raw['p50'] / tiered['p50']:.0f}x",
                        f"{tiered['bytes'] / 1024:.0f}",
                    ]
                )
    finally:
        procs.stop_all()

    print(f"\nHistory benchmark on {machine()}; TimescaleDB {edition} edition, tiers: {backend}\n")
    print(
        table(
            [
                "seeded",
                "window",
                "auto source",
                "points",
                "tiers p50 ms",
                "tiers p95 ms",
                "raw p50 ms",
                "raw p95 ms",
                "raw / tiers",
                "KiB",
            ],
            results,
        )
    )
    print("\nBytes on disk\n")
    print(table(["tier", "relation", "MiB", "bytes per sample", "compression"], bytes_per_sample()))

    if not args.skip_ingest:
        rows = []
        for beat in (False, True):
            run = ingest_run(beat, args.ingest_seconds)
            rows.append(
                [
                    "on: beat refreshes tiers every 10 s" if beat else "off: no tier refresh",
                    f"{run['rate']:,.0f}",
                    f"{run['p50_ms']:.1f}",
                    f"{run['p99_ms']:.1f}",
                    f"{run['lag_p95_s']:.2f}",
                ]
            )
        print("\nIngest with tier refresh off and on (bench/ingest.py, 16 connections)\n")
        print(table(["tier refresh", "samples/s", "p50 ms", "p99 ms", "classification lag p95 s"], rows))


if __name__ == "__main__":
    main()
