"""Ingest throughput: concurrent clients POST realistic samples (4 GPUs, 2 disks) over HTTP
to gunicorn with the Celery worker classifying; beside it, the ceiling: the same rows
COPYed straight into the hypertables.

    .venv/bin/python bench/ingest.py [--duration 30] [--connections 16] [--web-workers 4]

Runs against its own database (DATABASE_URL's name + "_bench"), emptied first.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    Processes,
    cpu_seconds_by_program,
    cpu_used_between,
    machine,
    machine_cpu_seconds,
    percentile,
    setup_environment,
    table,
)

GPUS, DISKS = 4, 2
STEP_SECONDS = 2


def body_template() -> str:
    """A sample body as a Lua format string: timestamp and counters vary per request."""
    from tests import samples

    payload = samples.body(None, gpus=GPUS, disks=DISKS)
    # The placeholders must come in the order the Lua script passes the values.
    payload["sample"] = {"collected_at": "@TS@", **payload["sample"]}
    payload["sample"]["network_rx_bytes_total"] = "@RX@"
    payload["sample"]["network_tx_bytes_total"] = "@TX@"
    for i, disk in enumerate(payload["sample"]["disks"]):
        for field in (
            "read_bytes_total",
            "write_bytes_total",
            "read_count_total",
            "write_count_total",
            "busy_time_ms_total",
        ):
            disk[field] = f"@D{i}{field}@"
    text = json.dumps(payload, separators=(",", ":")).replace("%", "%%")
    text = text.replace('"@TS@"', '"%s"')
    return re.sub(r'"@[A-Za-z0-9_]+@"', "%d", text)


LUA = r"""
local servers = {SERVERS}
local base = {BASE}
local template = [==[{TEMPLATE}]==]
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  local threads = tonumber(args[1])
  mine = {}
  for i, s in ipairs(servers) do
    if (i - 1) % threads == id then table.insert(mine, s) end
  end
  step = 0
end

function request()
  local s = mine[(step % #mine) + 1]
  local n = math.floor(step / #mine)
  step = step + 1
  local t = base + n * {STEP}
  local ts = os.date("!%Y-%m-%dT%H:%M:%S", t) .. "+00:00"
  local rx = 123456789012 + n * 100000000
  local tx = 23456789012 + n * 2000000
  local d = n * {STEP}
  local body = string.format(template, ts, rx, tx,
    111111111111 + d * 100000000, 22222222222 + d * 5000000, 1234567 + d * 800, 456789 + d * 100, 9876543 + d * 600,
    111111111111 + d * 100000000, 22222222222 + d * 5000000, 1234567 + d * 800, 456789 + d * 100, 9876543 + d * 600)
  return wrk.format("POST", "/api/ingest/servers/" .. s[1] .. "/metrics/",
    {["Content-Type"] = "application/json", ["X-Monitoring-Token"] = s[2]}, body)
end
"""

# wrk's own percentiles follow another rule than common.percentile: print every latency it recorded
# (in µs, each distinct value with its count) and compute them here.
WRK_DONE = r"""
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %.1f\n", summary.requests, summary.duration,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency.max))
  for i = 1, #latency do
    io.write(string.format("LATENCY %d %d\n", latency(i)))
  end
end
"""


def register_servers(count: int) -> list[tuple[str, str]]:
    from monitoring.models import MonitoredServer

    servers = []
    for i in range(count):
        server = MonitoredServer(slug=f"bench-{i:03d}", name=f"Bench {i:03d}")
        servers.append((server.slug, server.set_new_token()))
        server.save()
    return servers


def reset_database() -> None:
    from django.db import connection

    from monitoring.tiers import definitions as tiers

    relations = tiers.relations()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE monitoring_snapshot, monitoring_gpusample, monitoring_disksample, monitoring_xiderror, "
            "monitoring_tierdirty, "
            f"monitoring_monitoredserver, {', '.join(relations)} CASCADE"
        )


def run_wrk(base_url: str, servers, seconds: int, connections: int, threads: int) -> dict:
    start = datetime.now(UTC) - timedelta(hours=6)
    lua = (
        LUA.replace("{SERVERS}", "{" + ",".join(f'{{"{s}","{t}"}}' for s, t in servers) + "}")
        .replace("{BASE}", str(int(start.timestamp())))
        .replace("{STEP}", str(STEP_SECONDS))
        .replace("{TEMPLATE}", body_template())
    )
    args = ["-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s"]
    return wrk(args + [base_url, "--", str(threads)], lua)


def wrk(args: list[str], lua: str) -> dict:
    """Runs wrk with a script that ends in WRK_DONE: requests, errors and latency (every request's)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua + WRK_DONE)
    result = subprocess.run(["wrk", "-s", script.name, *args], capture_output=True, text=True)
    Path(script.name).unlink()
    rows = [row.split() for row in result.stdout.splitlines()]
    line = next((row[1:] for row in rows if row[:1] == ["RESULT"]), None)
    if result.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed:\n{result.stdout}\n{result.stderr}")
    latencies = []  # ms
    for row in rows:
        if row[:1] == ["LATENCY"]:
            latencies += [int(row[1]) / 1000] * int(row[2])
    requests_, duration_us, status_errors, socket_errors, worst = line
    return {
        "requests": int(requests_),
        "seconds": int(duration_us) / 1e6,
        "non_200": int(status_errors),
        "socket_errors": int(socket_errors),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": float(worst) / 1000,
    }


def healthz_floor(base_url: str, seconds: int, connections: int, threads: int) -> dict:
    """The Django floor: /healthz (one SELECT 1) on the same gunicorn, requests/s and latency."""
    run = wrk(["-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", f"{base_url}/healthz"], "")
    return {"rate": run["requests"] / run["seconds"], "p50_ms": run["p50_ms"], "p99_ms": run["p99_ms"]}


def classification_lag(timeout: float = 120.0) -> dict:
    from django.db import connection

    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT (SELECT count(*) FROM monitoring_snapshot) - (SELECT count(*) FROM monitoring_snapshotlabel)"
            )
            if cursor.fetchone()[0] == 0:
                break
            time.sleep(0.5)
        cursor.execute(
            "SELECT count(*), count(l.classified_at), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM l.classified_at - s.received_at)), "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM l.classified_at - s.received_at)) "
            "FROM monitoring_snapshot s LEFT JOIN monitoring_snapshotlabel l "
            "ON l.server_id = s.server_id AND l.collected_at = s.collected_at"
        )
        total, classified, p50, p95 = cursor.fetchone()
    return {"stored": total, "classified": classified, "lag_p50_s": p50, "lag_p95_s": p95}


def copy_ceiling(servers, samples_count: int) -> float:
    """Samples/s when the same rows are COPYed straight into the three hypertables."""
    from django.db import connection

    from monitoring import catalogue
    from monitoring.models import MonitoredServer
    from tests import samples

    ids = list(MonitoredServer.objects.order_by("id").values_list("id", flat=True))
    template = samples.sample(None, gpus=GPUS, disks=DISKS)
    start = datetime.now(UTC) - timedelta(days=30)
    host_cols = [c for c in samples.BASE_SAMPLE]
    gpu_cols = [m.name for m in catalogue.columns("gpu", derived=False) if m.name in template["gpus"][0]]
    disk_cols = [c for c in template["disks"][0] if c != "device"]
    began = time.perf_counter()
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(
            f"COPY monitoring_snapshot (server_id, collected_at, received_at, gpu_count, "
            f"gpu_top_util_percent, {', '.join(host_cols)}) FROM STDIN"
        ) as copy:
            for i in range(samples_count):
                at = start + timedelta(seconds=STEP_SECONDS * (i // len(ids)))
                copy.write_row([ids[i % len(ids)], at, at, GPUS, 98.0, *[template[c] for c in host_cols]])
        with raw.copy(
            f"COPY monitoring_gpusample (server_id, collected_at, gpu_index, {', '.join(gpu_cols)}) FROM STDIN"
        ) as copy:
            for i in range(samples_count):
                at = start + timedelta(seconds=STEP_SECONDS * (i // len(ids)))
                for g in template["gpus"]:
                    copy.write_row([ids[i % len(ids)], at, g["gpu_index"], *[g[c] for c in gpu_cols]])
        with raw.copy(
            f"COPY monitoring_disksample (server_id, collected_at, device, {', '.join(disk_cols)}) FROM STDIN"
        ) as copy:
            for i in range(samples_count):
                at = start + timedelta(seconds=STEP_SECONDS * (i // len(ids)))
                for d in template["disks"]:
                    copy.write_row([ids[i % len(ids)], at, d["device"], *[d[c] for c in disk_cols]])
    connection.commit() if not connection.get_autocommit() else None
    return samples_count / (time.perf_counter() - began)


def measure_ingest(
    env: dict,
    duration: int,
    connections: int,
    threads: int,
    server_count: int,
    web_workers: int,
    worker_concurrency: int = 1,
    beat: bool = False,
) -> tuple[dict, dict, dict]:
    """HTTP ingest with a Celery worker (and beat, refreshing tiers, when asked): throughput,
    latency, classification lag and CPU by process. Starts and ends with an empty database."""
    reset_database()
    servers = register_servers(server_count)
    procs = Processes()
    try:
        base_url = procs.web(env, web_workers)
        procs.worker(env, worker_concurrency)
        if beat:
            # Refresh more often than the default minute so that a short run sees several refreshes.
            procs.beat({**env, "MONITORING_TIER_REFRESH_SECONDS": "10", "MONITORING_TIER_SETTLE_SECONDS": "5"})
        time.sleep(2)
        floor = healthz_floor(base_url, max(5, duration // 2), connections, threads)
        before, machine_before = cpu_seconds_by_program(), machine_cpu_seconds()
        http = run_wrk(base_url, servers, duration, connections, threads)
        http["floor"] = floor
        cpu = cpu_used_between(before, cpu_seconds_by_program())
        cpu["machine"] = machine_cpu_seconds() - machine_before
        lag = classification_lag()
    finally:
        procs.stop_all()
    reset_database()
    return http, lag, cpu


def post_batches(base_url: str, servers, batch_size: int, total: int, clients: int) -> dict:
    """`clients` threads POST gzip batches of `batch_size` samples, each thread for its own servers,
    until `total` samples are sent: samples/s and per-request latency."""
    import gzip
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests import samples

    start = datetime.now(UTC) - timedelta(hours=6)
    template = samples.sample(None, gpus=GPUS, disks=DISKS)
    per_client = total // clients
    latencies: list[float] = []
    failures = [0]

    def client(number: int) -> None:
        session = requests.Session()
        mine = servers[number::clients]
        sent, step = 0, 0
        while sent < per_client:
            slug, token = mine[step % len(mine)]
            first = (step // len(mine)) * batch_size
            body = {"samples": []}
            for i in range(min(batch_size, per_client - sent)):
                item = dict(template)
                item["collected_at"] = (start + timedelta(seconds=STEP_SECONDS * (first + i))).isoformat()
                body["samples"].append(item)
            data = gzip.compress(json.dumps(body).encode(), 1)
            began = time.perf_counter()
            response = session.post(
                f"{base_url}/api/ingest/servers/{slug}/metrics/",
                data=data,
                headers={"X-Monitoring-Token": token, "Content-Type": "application/json", "Content-Encoding": "gzip"},
                timeout=60,
            )
            latencies.append((time.perf_counter() - began) * 1000)
            if response.status_code != 200 or response.json()["accepted"] != len(body["samples"]):
                failures[0] += 1
            sent += len(body["samples"])
            step += 1

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    seconds = time.perf_counter() - began
    return {
        "samples": per_client * clients,
        "seconds": seconds,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "errors": failures[0],
    }


def measure_batches(env: dict, batch_size: int, total: int, clients: int, server_count: int, web_workers: int):
    reset_database()
    servers = register_servers(server_count)
    procs = Processes()
    try:
        base_url = procs.web(env, web_workers)
        procs.worker(env, 1)
        time.sleep(2)
        before, machine_before = cpu_seconds_by_program(), machine_cpu_seconds()
        result = post_batches(base_url, servers, batch_size, total, clients)
        lag = classification_lag()
        result["cpu"] = cpu_used_between(before, cpu_seconds_by_program())
        result["cpu"]["machine"] = machine_cpu_seconds() - machine_before
    finally:
        procs.stop_all()
    reset_database()
    return result, lag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=30, help="seconds of load (default 30)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="wrk threads (default: one per connection, so that each server's samples keep one connection, "
        "as an agent's do)",
    )
    parser.add_argument("--servers", type=int, default=50, help="servers the clients post for (default 50)")
    parser.add_argument("--web-workers", type=int, default=4, help="gunicorn workers (default 4)")
    parser.add_argument(
        "--worker-classes",
        default="gevent,sync",
        help="gunicorn worker models to compare, the production one first (default gevent,sync)",
    )
    parser.add_argument("--worker-concurrency", type=int, default=1, help="Celery worker processes (default 1)")
    parser.add_argument("--copy-samples", type=int, default=50000, help="samples for the COPY ceiling")
    parser.add_argument("--beat", action="store_true", help="run Celery beat too (tier refresh, sweeper)")
    parser.add_argument("--batch-sizes", default="50,500", help="batch sizes to measure (default 50,500)")
    parser.add_argument("--batch-samples", type=int, default=40000, help="samples sent per batch size")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of tables")
    args = parser.parse_args()

    env = setup_environment()
    runs = {}
    for worker_class in args.worker_classes.split(","):
        runs[worker_class] = measure_ingest(
            {**env, "GUNICORN_WORKER_CLASS": worker_class},
            args.duration,
            args.connections,
            args.threads or args.connections,
            args.servers,
            args.web_workers,
            args.worker_concurrency,
            beat=args.beat,
        )
    http, lag, cpu = next(iter(runs.values()))
    if args.json:
        print(json.dumps({"rate": http["requests"] / http["seconds"], **http, **lag}))
        return
    batches = {
        size: measure_batches(env, size, args.batch_samples, 4, args.servers, args.web_workers)
        for size in (int(b) for b in args.batch_sizes.split(",") if b)
    }
    servers = register_servers(args.servers)
    copy_rate = copy_ceiling(servers, args.copy_samples)
    reset_database()

    rate = http["requests"] / http["seconds"]
    print(f"\nIngest benchmark on {machine()}")
    print(
        f"{args.connections} connections, {args.web_workers} gunicorn workers, {args.worker_concurrency} Celery "
        f"worker process(es), {args.servers} servers, {GPUS} GPUs + {DISKS} disks per sample, "
        f"{args.duration} s\n"
    )
    print(
        table(
            ["path", "samples/s", "p50 ms", "p99 ms", "max ms", "errors", "classification lag p50 / p95 s"],
            [
                [
                    f"/healthz, {worker_class} workers (the Django floor; requests/s)",
                    f"{run_http['floor']['rate']:,.0f}",
                    f"{run_http['floor']['p50_ms']:.1f}",
                    f"{run_http['floor']['p99_ms']:.1f}",
                    "",
                    "",
                    "",
                ]
                for worker_class, (run_http, _, _) in runs.items()
            ]
            + [
                [
                    f"HTTP ingest, {worker_class} workers (gunicorn + Celery)",
                    f"{run_http['requests'] / run_http['seconds']:,.0f}",
                    f"{run_http['p50_ms']:.1f}",
                    f"{run_http['p99_ms']:.1f}",
                    f"{run_http['max_ms']:.1f}",
                    run_http["non_200"] + run_http["socket_errors"],
                    f"{run_lag['lag_p50_s']:.2f} / {run_lag['lag_p95_s']:.2f}",
                ]
                for worker_class, (run_http, run_lag, _) in runs.items()
            ]
            + [
                [
                    f"HTTP ingest, gzip batches of {size} (4 clients)",
                    f"{run['samples'] / run['seconds']:,.0f}",
                    f"{run['p50_ms']:.1f}",
                    f"{run['p99_ms']:.1f}",
                    f"{run['max_ms']:.1f}",
                    run["errors"],
                    f"{run_lag['lag_p50_s']:.2f} / {run_lag['lag_p95_s']:.2f}",
                ]
                for size, (run, run_lag) in batches.items()
            ]
            + [
                ["COPY into hypertables (ceiling)", f"{copy_rate:,.0f}", "", "", "", "", ""],
                ["ratio HTTP / COPY", f"{rate / copy_rate:.2f}", "", "", "", "", ""],
                ["ratio HTTP / /healthz", f"{rate / http['floor']['rate']:.2f}", "", "", "", "", ""],
            ]
            + [
                [f"ratio batches of {size} / COPY", f"{run['samples'] / run['seconds'] / copy_rate:.2f}"] + [""] * 5
                for size, (run, _) in batches.items()
            ],
        )
    )
    print(f"\nstored {lag['stored']:,} snapshots, classified {lag['classified']:,}")
    print(
        "\nCPU ms per sample by path: by process (a process that ended during the run may be missed), and the"
        " whole machine (the load generator included):\n"
    )
    parts = ("gunicorn", "postgres", "celery", "redis-server", "machine")
    paths = [("one sample per request", cpu, http["requests"])] + [
        (f"batches of {size}", run["cpu"], run["samples"]) for size, (run, _) in batches.items()
    ]
    print(
        table(
            ["path", *parts[:-1], "whole machine"],
            [[name, *(f"{used.get(p, 0.0) / count * 1000:.2f}" for p in parts)] for name, used, count in paths],
        )
    )
    print(f"\nWhere the CPU went during the HTTP run with {next(iter(runs))} workers (both cores together):\n")
    total = sum(used for name, used in cpu.items() if name != "machine")
    print(
        table(
            ["process", "CPU s", "share", "CPU ms per sample"],
            [
                [name, f"{used:.1f}", f"{used / total:.0%}", f"{used / http['requests'] * 1000:.2f}"]
                for name, used in sorted(cpu.items(), key=lambda item: -item[1])
                if name != "machine"
            ]
            + [["all processes", f"{total:.1f}", "100%", f"{total / http['requests'] * 1000:.2f}"]],
        )
    )


if __name__ == "__main__":
    main()
