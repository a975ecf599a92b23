"""Create or update a monitored server, and issue its ingest token.

    manage.py register_server gpu-box-01 --name "GPU Box 01"
    manage.py register_server gpu-box-01 --rotate-token

The plaintext token is printed only when it is created or rotated; the database
keeps its hash.
"""

from __future__ import annotations

import os

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug
from django.db import transaction

from monitoring.models import MonitoredServer


class Command(BaseCommand):
    help = "Register a monitored server (or update one) and print its ingest token once."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the server's slug, used in the ingest URL")
        parser.add_argument("--name", help="display name (default: the slug)")
        parser.add_argument("--hostname", help="the node's hostname (the agent also reports it)")
        parser.add_argument("--description", help="free text shown on the dashboard")
        parser.add_argument("--rotate-token", action="store_true", help="issue a new token; the old one stops working")
        state = parser.add_mutually_exclusive_group()
        state.add_argument("--disable", action="store_true", help="refuse its samples (403) and hide it")
        state.add_argument("--enable", action="store_true", help="accept its samples again")
        parser.add_argument(
            "--token-file",
            help="write a new token to this file (mode 600) instead of printing it",
        )

    def handle(self, *args, **options):
        slug = options["slug"]
        try:
            validate_slug(slug)
        except ValidationError:
            raise CommandError(f"{slug!r} is not a valid slug: use letters, digits, '-' and '_'") from None
        if len(slug) > 64:
            raise CommandError("the slug must be at most 64 characters")

        with transaction.atomic():
            server = MonitoredServer.objects.select_for_update().filter(slug=slug).first()
            created = server is None
            if created:
                server = MonitoredServer(slug=slug, name=slug)
            for field in ("name", "hostname", "description"):
                if options[field] is not None:
                    setattr(server, field, options[field])
            if options["disable"]:
                server.is_active = False
            if options["enable"]:
                server.is_active = True
            token = server.set_new_token() if created or options["rotate_token"] else None
            server.save()

        verb = "Registered" if created else "Updated"
        state = "" if server.is_active else " (disabled)"
        self.stdout.write(f"{verb} server {server.slug} ({server.name}){state}.")
        if token is None:
            self.stdout.write("Token unchanged; use --rotate-token to issue a new one.")
        elif options["token_file"]:
            _write_secret(options["token_file"], token)
            self.stdout.write(f"Ingest token written to {options['token_file']}.")
        else:
            if not created:
                self.stdout.write("The previous token no longer works.")
            self.stdout.write("Ingest token (shown only now; store it in the agent's configuration):")
            self.stdout.write(token)


def _write_secret(path: str, token: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
