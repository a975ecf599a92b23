"""Catching up after an outage: many agents, each with minutes of spooled samples, come back at
once while sampling live, and replay with the agent's own shipper logic against gunicorn and the
Celery worker on this machine.

    .venv/bin/python bench/catchup.py [--agents 1000] [--spooled-minutes 10] [--batch-seconds 10]

Every agent has its spool (one file per sample, as the agent writes them) and a Shipper with its
Transport, as the agent runs them; driver threads take the agents in turn: a live sample every
2 s (sent one per request, or held and sent together with --batch-seconds) and a replay of the
spool (batches of --replay-batch). Reported: the time until every spool is drained, samples lost
or stored twice (the database against what was made), and the classification lag.

Runs against its own database (DATABASE_URL's name + "_catchup"), emptied first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent"))

from bench.common import Processes, cpu_seconds_by_program, cpu_used_between, machine, setup_environment, table  # noqa: E402

INTERVAL = 2.0
GPUS, DISKS = 4, 2


def register(count: int) -> list[tuple[int, str, str]]:
    from monitoring.models import MonitoredServer

    servers = []
    for i in range(count):
        server = MonitoredServer(slug=f"catchup-{i:04d}", name=f"Catch-up {i:04d}")
        token = server.set_new_token()
        servers.append((server, token))
    MonitoredServer.objects.bulk_create([s for s, _ in servers])
    return [(s.id, s.slug, token) for s, token in servers]


def reset() -> None:
    from django.db import connection

    from monitoring.tiers import definitions as tiers

    relations = tiers.relations()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE monitoring_snapshot, monitoring_gpusample, monitoring_disksample, monitoring_xiderror, "
            f"monitoring_tierdirty, monitoring_monitoredserver, {', '.join(relations)} CASCADE"
        )


def sample_at(at: datetime) -> dict:
    from tests import samples

    return samples.sample(at, gpus=GPUS, disks=DISKS)


def write_spool(directory: Path, start: datetime, count: int) -> None:
    """`count` samples from `start`, written as the agent's spool writes them (without the fsync:
    setting up 300,000 files is not what is measured)."""
    from trainwatch_agent.spool import sample_key

    directory.mkdir(parents=True)
    for i in range(count):
        sample = sample_at(start + timedelta(seconds=INTERVAL * i))
        (directory / sample_key(sample)).write_text(json.dumps(sample))


class Agent:
    def __init__(self, base_url: str, slug: str, token: str, spool_dir: Path, replay_batch: int):
        from trainwatch_agent.backoff import Backoff
        from trainwatch_agent.shipper import Shipper
        from trainwatch_agent.spool import Spool
        from trainwatch_agent.transport import Transport

        self.spool = Spool(spool_dir, max_samples=100_000)
        self.spool.open()
        transport = Transport(f"{base_url}/api/ingest/servers/{slug}/metrics/", token, {"hostname": slug})
        self.shipper = Shipper(transport, self.spool, Backoff(base=1.0, cap=5.0), replay_batch=replay_batch)
        self.held: list[dict] = []
        self.next_live = 0.0
        self.made = 0


def drive(
    agents: list[Agent], began: float, began_at: datetime, until: threading.Event, batch_seconds: float, drained: dict
) -> None:
    """Take the agents in turn: live samples as they fall due (each agent's every 2 s from
    `began_at`, whenever its turn comes), then a replay of the spool."""
    last_flush = time.monotonic()
    while not until.is_set():
        now = time.monotonic()
        flush = batch_seconds > 0 and now - last_flush >= batch_seconds
        for agent in agents:
            while agent.next_live <= now - began:
                sample = sample_at(began_at + timedelta(seconds=agent.next_live))
                agent.made += 1
                agent.next_live += INTERVAL
                if batch_seconds > 0:
                    agent.held.append(sample)
                else:
                    agent.shipper.deliver(sample)
            if flush and agent.held:
                agent.shipper.deliver_batch(agent.held)
                agent.held = []
            if len(agent.spool):
                agent.shipper.replay()
            elif id(agent) not in drained:
                drained[id(agent)] = time.monotonic() - began
        if flush:
            last_flush = now
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--spooled-minutes", type=float, default=10.0)
    parser.add_argument("--replay-batch", type=int, default=500)
    parser.add_argument(
        "--batch-seconds", type=float, default=10.0, help="hold live samples this long (0: one per request)"
    )
    parser.add_argument("--drivers", type=int, default=8, help="threads that drive the agents")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    args = parser.parse_args()

    env = setup_environment("catchup")
    reset()
    servers = register(args.agents)
    spooled = int(args.spooled_minutes * 60 / INTERVAL)
    root = Path(tempfile.mkdtemp(prefix="tw-catchup-"))
    print(f"writing {args.agents} spools of {spooled} samples ...", flush=True)
    start = datetime.now(UTC) - timedelta(minutes=args.spooled_minutes)
    for _, slug, _ in servers:
        write_spool(root / slug, start, spooled)
    procs = Processes()
    drained: dict[int, float] = {}
    try:
        base_url = procs.web(env, args.web_workers)
        procs.worker(env, 1)
        time.sleep(2)
        agents = [Agent(base_url, slug, token, root / slug, args.replay_batch) for _, slug, token in servers]
        until = threading.Event()
        before = cpu_seconds_by_program()
        began, began_at = time.monotonic(), datetime.now(UTC).replace(microsecond=0)
        threads = [
            threading.Thread(
                target=drive, args=(agents[i :: args.drivers], began, began_at, until, args.batch_seconds, drained)
            )
            for i in range(args.drivers)
        ]
        for thread in threads:
            thread.start()
        while len(drained) < len(agents) and time.monotonic() - began < args.timeout:
            time.sleep(0.5)
        catch_up = time.monotonic() - began
        # A little more live load, then the held samples out, so that every sample made is sent.
        time.sleep(max(args.batch_seconds, INTERVAL) + 1)
        until.set()
        for thread in threads:
            thread.join()
        for agent in agents:
            if agent.held:
                agent.shipper.deliver_batch(agent.held)
            while len(agent.spool):
                agent.shipper.replay()
        cpu = cpu_used_between(before, cpu_seconds_by_program())
        from bench.ingest import classification_lag

        lag = classification_lag()
    finally:
        procs.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    from django.db import connection

    made = spooled * args.agents + sum(a.made for a in agents)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT (server_id, collected_at)) FROM monitoring_snapshot")
        stored, distinct = cursor.fetchone()
    refused = sum(a.shipper.stats.refused for a in agents)
    lost = sum(a.shipper.stats.lost for a in agents)
    print(f"\nCatch-up benchmark on {machine()}")
    print(
        f"{args.agents} agents, {spooled:,} spooled samples each ({spooled * args.agents:,} in all), live samples "
        f"every {INTERVAL:g} s ({'one per request' if not args.batch_seconds else f'held {args.batch_seconds:g} s'}), "
        f"replay batches of {args.replay_batch}, {args.web_workers} gunicorn workers, 1 Celery worker process\n"
    )
    print(
        table(
            [
                "catch-up s",
                "samples made",
                "stored",
                "lost",
                "stored twice",
                "refused",
                "classification lag p50 / p95 s",
            ],
            [
                [
                    f"{catch_up:.1f}" + ("" if len(drained) == len(agents) else " (not drained)"),
                    f"{made:,}",
                    f"{stored:,}",
                    f"{made - distinct:,}" if made >= distinct else "0",
                    f"{stored - distinct:,}",
                    f"{refused + lost:,}",
                    f"{lag['lag_p50_s']:.2f} / {lag['lag_p95_s']:.2f}",
                ]
            ],
        )
    )
    total = sum(cpu.values())
    print("\nCPU during the run (both cores together):\n")
    print(
        table(
            ["process", "CPU s", "share", "CPU ms per sample"],
            [
                [name, f"{used:.1f}", f"{used / total:.0%}", f"{used / max(1, stored) * 1000:.2f}"]
                for name, used in sorted(cpu.items(), key=lambda item: -item[1])[:6]
            ],
        )
    )
    reset()


if __name__ == "__main__":
    main()
