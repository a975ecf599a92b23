"""Load realistic synthetic history for one server with COPY, and bring the tiers up to date.

    manage.py seed_history gpu-box-01 --days 30 --interval 2 --gpus 4 --disks 2 --gpu-model h100

The history ends now. The server is created if it does not exist; a server that already
has samples in the range is refused (seed a fresh slug instead). Its GPU processes carry
workloads (a Slurm job, a pod, a container, a bare process, of a few users), whose ranges are
written as ingest would have written them.
"""

from __future__ import annotations

import sys
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb
from tqdm import tqdm

from monitoring import catalogue, ingest, tiers, workloads
from monitoring.demo import GPU_MODELS, Generator, columns
from monitoring.models import MonitoredServer, Snapshot, Workload

# Columns whose values go in as JSON (throttle reasons, processes).
JSON_COLUMNS = {m.name for m in catalogue.METRICS if m.stored and m.sql == "jsonb"}


class Command(BaseCommand):
    help = "Seed synthetic history (every bottleneck label) for a server, loaded with COPY."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--days", type=float, default=7.0, help="how many days, ending now (default 7)")
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between samples (default 2)")
        parser.add_argument("--gpus", type=int, default=4, help="GPUs per sample (default 4)")
        parser.add_argument("--disks", type=int, default=2, help="disks per sample (default 2, at most 8)")
        parser.add_argument(
            "--gpu-model", choices=sorted(GPU_MODELS), default="a100", help="the GPUs' model (default a100)"
        )
        parser.add_argument("--seed", type=int, default=0, help="random seed, for repeatable data")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, **opts):
        if opts["days"] <= 0 or opts["interval"] <= 0:
            raise CommandError("--days and --interval must be positive")
        if not 0 <= opts["gpus"] <= 64 or not 0 <= opts["disks"] <= 8:
            raise CommandError("--gpus must be 0..64 and --disks 0..8")
        end = timezone.now().replace(microsecond=0)
        start = end - timedelta(days=opts["days"])
        server, _ = MonitoredServer.objects.get_or_create(slug=opts["slug"], defaults={"name": opts["slug"]})
        if Snapshot.objects.filter(server_id=server.id, collected_at__gte=start, collected_at__lt=end).exists():
            raise CommandError(f"{server.slug} already has samples in that range; seed a fresh slug")

        generator = Generator(
            server.id, opts["gpus"], opts["disks"], opts["interval"], seed=opts["seed"], gpu_model=opts["gpu_model"]
        )
        days = max(1, int(-(-opts["days"] // 1)))
        bar = tqdm(total=days, unit="day", desc=f"seeding {server.slug}", disable=opts["no_progress"], file=sys.stderr)
        total, labels, day_start, ranges = 0, set(), start, []
        while day_start < end:
            day_end = min(day_start + timedelta(days=1), end)
            count, seen = self._load(generator, day_start, day_end, ranges)
            total += count
            labels |= seen
            if tiers.installed_backend() == "rollup":
                tiers.rollup_range(server.id, day_start, day_end)
            day_start = day_end
            bar.update(1)
        bar.close()
        self._store_ranges(server, ranges)
        if tiers.installed_backend() == "continuous":
            tiers.refresh(start - timedelta(hours=1), end)
        # Counted once here, off any request path; ingest and the classifier keep them from now on.
        with connection.cursor() as cursor:
            ingest.recount(cursor, server.id, opts["interval"])
        self.stdout.write(
            f"Seeded {total:,} samples for {server.slug} from {start.isoformat()} to {end.isoformat()} "
            f"({len(labels)} bottleneck labels); tiers are up to date."
        )

    def _load(self, generator: Generator, start, end, ranges: list[dict]) -> tuple[int, set[str]]:
        rows = list(generator.rows(start, end))
        # As ingest keeps them: each GPU process with its workload's reference, the workloads as ranges.
        processes, found = workloads.split_processes([(row.at, row.gpus) for row in rows], _gap_seconds())
        ranges += found
        gpus = [{**gpu, "processes": kept} for gpu, kept in zip((g for row in rows for g in row.gpus), processes)]
        tables = {
            "monitoring_snapshot": [row.snapshot for row in rows],
            "monitoring_snapshotlabel": [row.label for row in rows],
            "monitoring_gpusample": gpus,
            "monitoring_disksample": [disk for row in rows for disk in row.disks],
        }
        with transaction.atomic(), connection.cursor() as cursor:
            for table, records in tables.items():
                if not records:
                    continue
                names = list(records[0])
                with cursor.cursor.copy(f"COPY {table} ({columns(records[0])}) FROM STDIN") as copy:
                    for record in records:
                        copy.write_row([Jsonb(record[n]) if n in JSON_COLUMNS else record[n] for n in names])
        return len(rows), {row.phase.label for row in rows}

    def _store_ranges(self, server: MonitoredServer, ranges: list[dict]) -> None:
        """The workloads' ranges of every day loaded, those that go on from one day into the next
        joined again."""
        joined: dict[tuple[str, str], list[dict]] = {}
        gap = timedelta(seconds=_gap_seconds())
        for found in sorted(ranges, key=lambda r: r["first_seen"]):
            kept = joined.setdefault((found["kind"], found["workload_id"]), [])
            if kept and found["first_seen"] - kept[-1]["last_seen"] <= gap:
                kept[-1]["last_seen"] = max(kept[-1]["last_seen"], found["last_seen"])
                kept[-1]["gpus"] = sorted(set(kept[-1]["gpus"]) | set(found["gpus"]))
            else:
                kept.append(dict(found))
        Workload.objects.bulk_create(
            Workload(
                server=server,
                kind=r["kind"],
                workload_id=r["workload_id"],
                name=r["name"],
                username=r["username"],
                labels=r["labels"],
                gpus=r["gpus"],
                first_seen=r["first_seen"],
                last_seen=r["last_seen"],
            )
            for kept in joined.values()
            for r in kept
        )


def _gap_seconds() -> float:
    """A workload seen again after a longer gap is a new range, as ingest has it."""
    return settings.MONITORING_RATE_MAX_GAP_SECONDS
