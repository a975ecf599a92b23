"""The downsampled tiers: what they are made of, and refreshing them by hand.

manage.py tiers status     backend, edition, and how far each tier has rolled up
manage.py tiers refresh    roll up everything pending now (rollup tables) or
                           refresh the continuous aggregates over --days
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import connection
from django.utils import timezone

from monitoring import tiers


class Command(BaseCommand):
    help = "Show the tiers' state, or bring them up to date now."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="backend, edition and each tier's newest bucket")
        refresh = sub.add_parser("refresh", help="bring the tiers up to date now")
        refresh.add_argument("--days", type=float, default=3.0, help="how far back (continuous aggregates)")

    def handle(self, *args, **options):
        if options["action"] == "refresh":
            end = timezone.now()
            tiers.refresh(end - timedelta(days=options["days"]), end)
            self.stdout.write("Tiers refreshed.")
            return
        with connection.cursor() as cursor:
            edition = tiers.edition(cursor)
            self.stdout.write(f"TimescaleDB edition: {edition}; tiers are {tiers.installed_backend()}")
            for tier in tiers.TIERS:
                cursor.execute(f"SELECT max(bucket), count(DISTINCT server_id) FROM {tiers.SNAPSHOT.relation(tier)}")
                newest, servers = cursor.fetchone()
                cursor.execute("SELECT count(*), min(bucket) FROM monitoring_tierdirty WHERE tier = %s", [tier])
                pending, oldest = cursor.fetchone()
                line = f"{tier}: newest bucket {newest or '-'}, {servers} server(s)"
                if tiers.installed_backend() == "rollup":
                    line += f", {pending} bucket(s) waiting" + (f" (oldest {oldest})" if oldest else "")
                self.stdout.write(line)
