"""The demo fleet of `make run DEMO=1` (monitoring/demo/fleet.py): its history, then live samples.

    manage.py demo seed --token-dir .run/demo          # 30 days of history each, once; a token each
    manage.py demo feed --url http://127.0.0.1:8000 --token-dir .run/demo   # until stopped

`seed` loads the history of every demo server that has none (seed_history) and, where its token
file is missing, issues a token into it (mode 600). `feed` goes on from where each server's
history ends, posting through the ingest API with those tokens, until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from monitoring.demo import FLEET, Feed, Poster, resume_point, run_feeder
from monitoring.models import MonitoredServer


class Command(BaseCommand):
    help = "Seed the demo fleet's history, or keep it going live through the ingest API."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        seed = sub.add_parser("seed", help="history for every demo server without any, and a token each")
        seed.add_argument("--token-dir", required=True, help="where each server's token file goes (<slug>)")
        seed.add_argument("--days", type=float, help="days of history (default: the fleet's, 30)")
        seed.add_argument("--interval", type=float, help="seconds between samples (default: the fleet's, 10)")
        seed.add_argument("--no-progress", action="store_true", help="no progress bar")
        feed = sub.add_parser("feed", help="post each demo server's samples as they fall due, until stopped")
        feed.add_argument("--url", required=True, help="the web process, e.g. http://127.0.0.1:8000")
        feed.add_argument("--token-dir", required=True, help="the token files `demo seed` wrote")
        feed.add_argument(
            "--phase-seconds",
            type=float,
            nargs=2,
            default=(120.0, 300.0),
            metavar=("SHORTEST", "LONGEST"),
            help="how long each phase of a run lasts (default 120 300: a new bottleneck every few minutes)",
        )
        feed.add_argument(
            "--catch-up-hours", type=float, default=24.0, help="how far back to fill a gap since the newest sample"
        )

    def handle(self, *args, **opts):
        if opts["action"] == "seed":
            self.seed(Path(opts["token_dir"]), opts["days"], opts["interval"], opts["no_progress"])
        else:
            self.feed(opts)

    def seed(self, token_dir: Path, days: float | None, interval: float | None, no_progress: bool) -> None:
        token_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for demo in FLEET:
            server = MonitoredServer.objects.filter(slug=demo.slug).first()
            if server is None or not server.snapshot_count:
                call_command(
                    "seed_history",
                    demo.slug,
                    *("--days", str(days or demo.days), "--interval", str(interval or demo.interval)),
                    *("--gpus", str(demo.gpus), "--disks", str(demo.disks), "--gpu-model", demo.gpu_model),
                    *("--seed", str(demo.seed), *(["--no-progress"] if no_progress else [])),
                    stdout=self.stdout,
                )
            else:
                self.stdout.write(f"{demo.slug}: seeded already; its history goes on from its newest sample")
            token = token_dir / demo.slug
            register = [demo.slug, "--name", demo.name, "--hostname", demo.slug, "--enable"]
            if not token.exists():
                register += ["--rotate-token", "--token-file", str(token)]
            call_command("register_server", *register, stdout=StringIO())

    def feed(self, opts) -> None:
        token_dir, now = Path(opts["token_dir"]), datetime.now(UTC)
        shortest, longest = opts["phase_seconds"]
        if not 0 < shortest <= longest:
            raise CommandError("--phase-seconds: two numbers, 0 < SHORTEST <= LONGEST")
        feeds = []
        for demo in FLEET:
            server = MonitoredServer.objects.filter(slug=demo.slug).first()
            token = token_dir / demo.slug
            if server is None or not token.exists():
                raise CommandError(f"{demo.slug} is not set up; run `manage.py demo seed --token-dir {token_dir}`")
            feeds.append(
                Feed(
                    demo,
                    token.read_text().strip(),
                    resume_point(server, demo.interval),
                    now,
                    phase_seconds=(shortest, longest),
                    catch_up=timedelta(hours=opts["catch_up_hours"]),
                )
            )
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        slugs = ", ".join(feed.server.slug for feed in feeds)
        self.stdout.write(f"Feeding {slugs} to {opts['url']} (pid {os.getpid()}); SIGTERM stops it.")
        self.stdout.flush()
        run_feeder(feeds, Poster(opts["url"]), stop)
        self.stdout.write("Stopped.")
