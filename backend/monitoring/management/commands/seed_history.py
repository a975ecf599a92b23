"""Load realistic synthetic history for one server with COPY, and bring the tiers up to date.

    manage.py seed_history gpu-box-01 --days 30 --interval 2 --gpus 4 --disks 2 --gpu-model h100

The history ends now. The server is created if it does not exist; a server that already
has samples in the range is refused (seed a fresh slug instead).
"""

from __future__ import annotations

import sys
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb
from tqdm import tqdm

from monitoring import catalogue, ingest, tiers
from monitoring.demo import GPU_MODELS, Generator, columns
from monitoring.models import MonitoredServer, Snapshot

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
        total, labels, day_start = 0, set(), start
        while day_start < end:
            day_end = min(day_start + timedelta(days=1), end)
            count, seen = self._load(generator, day_start, day_end)
            total += count
            labels |= seen
            if tiers.installed_backend() == "rollup":
                tiers.rollup_range(server.id, day_start, day_end)
            day_start = day_end
            bar.update(1)
        bar.close()
        if tiers.installed_backend() == "continuous":
            tiers.refresh(start - timedelta(hours=1), end)
        # Counted once here, off any request path; ingest and the classifier keep them from now on.
        with connection.cursor() as cursor:
            ingest.recount(cursor, server.id, opts["interval"])
        self.stdout.write(
            f"Seeded {total:,} samples for {server.slug} from {start.isoformat()} to {end.isoformat()} "
            f"({len(labels)} bottleneck labels); tiers are up to date."
        )

    def _load(self, generator: Generator, start, end) -> tuple[int, set[str]]:
        rows = list(generator.rows(start, end))
        tables = {
            "monitoring_snapshot": [row.snapshot for row in rows],
            "monitoring_snapshotlabel": [row.label for row in rows],
            "monitoring_gpusample": [gpu for row in rows for gpu in row.gpus],
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
