"""The downsampled tiers: what they are made of, and refreshing them by hand.

manage.py tiers status     backend, edition, how far each tier has rolled up, when beat
                           last refreshed, compressed and applied retention, and the
                           database's own jobs that fail
manage.py tiers refresh    bring every tier fully up to date now: every bucket marked dirty,
                           whatever its age (late samples, late labels), and on continuous
                           aggregates also the whole buckets of the last --days
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import connection
from django.utils import timezone

from monitoring import maintenance, tiers


class Command(BaseCommand):
    help = "Show the tiers' state, or bring them up to date now."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="backend, edition, each tier's newest bucket, beat's runs, failing jobs")
        refresh = sub.add_parser("refresh", help="bring the tiers up to date now")
        refresh.add_argument(
            "--days",
            type=float,
            default=3.0,
            help="continuous aggregates: also refresh this many days back, marked or not (e.g. after a bulk load)",
        )

    def handle(self, *args, **options):
        if options["action"] == "refresh":
            end = timezone.now()
            tiers.refresh(end - timedelta(days=options["days"]), end)
            self.stdout.write("Tiers refreshed.")
            return
        with connection.cursor() as cursor:
            edition = tiers.edition(cursor)
            self.stdout.write(f"TimescaleDB edition: {edition}; tiers are {tiers.installed_backend()}")
            for tier in tiers.ALL_TIERS:
                relation = tiers.families(tier)[0].relation(tier)
                cursor.execute(f"SELECT max(bucket), count(DISTINCT server_id) FROM {relation}")
                newest, servers = cursor.fetchone()
                cursor.execute("SELECT count(*), min(bucket) FROM monitoring_tierdirty WHERE tier = %s", [tier])
                pending, oldest = cursor.fetchone()
                line = f"{tier}: newest bucket {newest or '-'}, {servers} server(s)"
                line += f", {pending} bucket(s) waiting" + (f" (oldest {oldest})" if oldest else "")
                self.stdout.write(line)
        self._beat()
        self._database_jobs(edition)

    def _beat(self) -> None:
        state = maintenance.refresh_state()
        line = f"beat's tier refresh: last succeeded {state.succeeded_at or 'never'}"
        if state.behind:
            line += f" (BEHIND: more than {maintenance.refresh_due()} ago; is beat running?)"
        self.stdout.write(line)
        for run in maintenance.runs():
            line = f"  {run.task}: last succeeded {run.succeeded_at or 'never'}"
            if run.failing:
                line += f", FAILED at {run.failed_at}: {run.error}"
            self.stdout.write(line)

    def _database_jobs(self, edition: str) -> None:
        if edition != "timescale":
            self.stdout.write("database jobs: not checked (Apache edition; TrainWatch adds none)")
            return
        failing = tiers.failing_jobs()
        self.stdout.write(f"database jobs: {len(failing)} failing")
        for job in failing:
            self.stdout.write(f"  FAILING job {job.job_id}: {job.describe()}")
