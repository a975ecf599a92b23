"""The database helper every hot path shares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection


@contextmanager
def prepared_cursor() -> Iterator[psycopg.Cursor]:
    """A cursor on Django's connection that binds parameters server-side, so that the hot
    path's statements are parsed and planned once per connection (Django's own cursors bind
    client-side). psycopg's errors come out as Django's, as from Django's cursors."""
    with connection.wrap_database_errors:
        # As Django's own cursors do: a connection that broke (a database restart) is replaced.
        connection.close_if_health_check_failed()
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            yield cursor
