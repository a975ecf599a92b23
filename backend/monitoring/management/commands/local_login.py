"""A local sign-in for `make run`: a superuser whose password is printed once and kept in a file.

manage.py local_login --file .run/login.txt [--email admin@localhost]
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create (once) a local superuser for the password form and print how to sign in."

    def add_arguments(self, parser):
        parser.add_argument("--file", required=True, help="where the email and password are kept (mode 600)")
        parser.add_argument("--email", default="admin@localhost")

    def handle(self, *args, **options):
        path, email = Path(options["file"]), options["email"]
        users = get_user_model().objects
        user = users.filter(email=email).first()
        if user is not None and path.exists():
            self.stdout.write(f"Sign in as {email} (password in {path})")
            return
        password = secrets.token_urlsafe(12)
        if user is None:
            user = users.create_superuser(username=email.split("@")[0], email=email, password=password)
        else:
            # The file was lost: a new password, since the old one is only stored hashed.
            user.set_password(password)
            user.save()
        EmailAddress.objects.update_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{email}\n{password}\n")
        self.stdout.write(f"Sign in as {email} with password {password} (kept in {path})")
