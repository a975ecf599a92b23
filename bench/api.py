"""Dashboard API latency as the snapshot hypertable grows: /api/servers/ and /api/metrics/latest/
over HTTP for 100 servers at 100 k, 1 M and 10 M snapshots in all.

    .venv/bin/python bench/api.py [--stages 100000 1000000 10000000] [--requests 300]

Rows are COPYed straight in, newest first, then older history behind them, so the newest
samples stay the same while the table grows. Up to 1 M snapshots each sample also has its
4 GPU and 2 disk rows; beyond that only snapshot rows are added (the endpoints read device
rows at one timestamp only). Runs in its own database (DATABASE_URL's name + "_api").
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bench.common import Processes, machine, percentile, session_cookie, setup_environment, table  # noqa: E402

SERVERS = 100
GPUS, DISKS = 4, 2
STEP = timedelta(seconds=2)
FULL_ROWS_UP_TO = 1_000_000


def reset() -> list[int]:
    from django.db import connection

    from bench.ingest import reset_database
    from monitoring.models import MonitoredServer

    reset_database()
    ids = []
    for i in range(SERVERS):
        server = MonitoredServer(slug=f"api-{i:03d}", name=f"API {i:03d}", hostname=f"node{i:03d}")
        server.set_new_token()
        server.save()
        ids.append(server.id)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_session")
    return ids


def load(ids: list[int], now: datetime, already: int, adding: int) -> None:
    """COPY `adding` snapshots (spread over the servers) older than the `already` loaded ones."""
    from django.db import connection

    per_server_before, per_server = already // len(ids), adding // len(ids)
    with_devices = already + adding <= FULL_ROWS_UP_TO
    rng = random.Random(already)
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(
            "COPY monitoring_snapshot (server_id, collected_at, received_at, cpu_usage_percent, cpu_iowait_percent, "
            "cpu_load_1, memory_percent, swap_percent, disk_read_bps, disk_write_bps, disk_util_percent, gpu_count, "
            "gpu_top_util_percent) FROM STDIN"
        ) as copy:
            for sid in ids:
                for k in range(per_server_before, per_server_before + per_server):
                    at = now - STEP * k
                    copy.write_row(
                        [
                            sid,
                            at,
                            at,
                            rng.uniform(20, 60),
                            2.0,
                            6.0,
                            70.0,
                            0.0,
                            1e8,
                            5e6,
                            60.0,
                            GPUS,
                            97.0,
                        ]
                    )
        with raw.copy(
            "COPY monitoring_snapshotlabel (server_id, collected_at, label, confidence, reason, rules_version, "
            "classified_at, gpu_count) FROM STDIN"
        ) as copy:
            for sid in ids:
                for k in range(per_server_before, per_server_before + per_server):
                    at = now - STEP * k
                    copy.write_row([sid, at, "gpu-bound", 0.9, "GPU 97% saturated", 1, at, GPUS])
        if with_devices:
            with raw.copy(
                "COPY monitoring_gpusample (server_id, collected_at, gpu_index, name, utilization_gpu_percent, "
                "memory_percent, temperature_c, power_w, power_limit_w) FROM STDIN"
            ) as copy:
                for sid in ids:
                    for k in range(per_server_before, per_server_before + per_server):
                        at = now - STEP * k
                        for g in range(GPUS):
                            copy.write_row([sid, at, g, "NVIDIA A100", 97.0, 80.0, 64.0, 311.0, 400.0])
            with raw.copy(
                "COPY monitoring_disksample (server_id, collected_at, device, read_bps, write_bps, util_percent) "
                "FROM STDIN"
            ) as copy:
                for sid in ids:
                    for k in range(per_server_before, per_server_before + per_server):
                        at = now - STEP * k
                        for d in ("nvme0n1", "nvme1n1")[:DISKS]:
                            copy.write_row([sid, at, d, 5e7, 2.5e6, 60.0])
        # Once, off the request path, as ingest and retention keep them from then on.
        cursor.execute(
            "UPDATE monitoring_monitoredserver s SET snapshot_count = s.snapshot_count + %s, "
            "latest_snapshot_at = %s, last_seen_at = %s, sample_interval_seconds = 2, "
            "latest_gpu_top_util_percent = 97, bottleneck_label = 'gpu-bound', bottleneck_since = %s",
            [per_server, now, now, now - timedelta(hours=1)],
        )
        cursor.execute("ANALYZE monitoring_snapshot")
        cursor.execute("ANALYZE monitoring_snapshotlabel")
        cursor.execute("ANALYZE monitoring_gpusample")
        cursor.execute("ANALYZE monitoring_disksample")


def measure(base: str, cookies: dict, path: str, count: int, params=None) -> dict:
    session = requests.Session()
    session.cookies.update(cookies)
    rng = random.Random(1)
    for _ in range(20):  # warm the workers' connections and caches
        session.get(base + path, params=params and params(rng), timeout=30).raise_for_status()
    times = []
    for _ in range(count):
        began = time.perf_counter()
        session.get(base + path, params=params and params(rng), timeout=30).raise_for_status()
        times.append((time.perf_counter() - began) * 1000)
    return {"p50": percentile(times, 50), "p99": percentile(times, 99)}


def scalar(sql: str):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    env = setup_environment("api")
    ids = reset()
    now = datetime.now(UTC).replace(microsecond=0)
    cookies = session_cookie()
    rows, loaded = [], 0
    for stage in sorted(args.stages):
        began = time.perf_counter()
        load(ids, now, loaded, stage - loaded)
        loaded = stage
        print(f"loaded {stage:,} snapshots ({time.perf_counter() - began:.0f} s)", file=sys.stderr)
        procs = Processes()
        try:
            base = procs.web(env, 2)
            servers = measure(base, cookies, "/api/servers/", args.requests)
            latest = measure(
                base,
                cookies,
                "/api/metrics/latest/",
                args.requests,
                params=lambda rng: {"server": f"api-{rng.randrange(SERVERS):03d}"},
            )
        finally:
            procs.stop_all()
        size = scalar("SELECT hypertable_size('monitoring_snapshot')")
        rows.append(
            [
                f"{stage:,}",
                f"{size / 2**20:,.0f}",
                f"{servers['p50']:.1f}",
                f"{servers['p99']:.1f}",
                f"{latest['p50']:.1f}",
                f"{latest['p99']:.1f}",
            ]
        )
    from bench.ingest import reset_database

    reset_database()
    print(
        f"\nDashboard API benchmark on {machine()}; {SERVERS} servers, 2 gunicorn workers, "
        f"{args.requests} sequential requests per endpoint\n"
    )
    print(
        table(
            [
                "snapshots",
                "snapshot table MiB",
                "/api/servers/ p50 ms",
                "p99 ms",
                "/api/metrics/latest/ p50 ms",
                "p99 ms",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
