"""django-timescaledb's backend, with a connection pool that gives up at once on a database that
is gone.

psycopg_pool makes a request wait up to its `timeout` (DATABASE_POOL_TIMEOUT_SECONDS) for a
connection: right while every connection is busy, pointless while the server refuses them or is
silent. When no connection comes within FIRST_WAIT, the pool asks the server whether it answers
at all (PostgreSQL's SSL request: one byte back, within connect_timeout) and, if it does not,
fails with the reason; otherwise it goes on waiting the rest of its timeout.
"""

from __future__ import annotations

import socket
import struct
import time

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from timescale.db.backends.postgresql import base

# How long a request waits for a pooled connection before asking whether the server is there.
FIRST_WAIT = 0.25
# After the server did not answer, for this long requests ask it first, before waiting at all.
DOWN_MEMORY = 5.0
# PostgreSQL's SSLRequest: length 8, code 80877103. Any server answers it with one byte, S or N.
SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def ensure_answers(kwargs: dict) -> None:
    """Raise psycopg.OperationalError, naming the address and the reason, unless a PostgreSQL
    server answers at one of the connection's hosts."""
    port = int(kwargs.get("port") or 5432)
    timeout = float(kwargs.get("connect_timeout") or 5)
    reasons = []
    for host in str(kwargs.get("host") or "/var/run/postgresql").split(","):
        where = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else f"{host}:{port}"
        try:
            if host.startswith("/"):
                sock = socket.socket(socket.AF_UNIX)
                sock.settimeout(timeout)
                sock.connect(where)
            else:
                sock = socket.create_connection((host, port), timeout=timeout)
            with sock:
                sock.settimeout(timeout)
                sock.sendall(SSL_REQUEST)
                if sock.recv(1) in (b"S", b"N"):
                    return
                reasons.append(f"{where}: not a PostgreSQL server")
        except TimeoutError:
            reasons.append(f"{where}: no answer within {timeout:g} s")
        except OSError as exc:
            reasons.append(f"{where}: {exc.strerror or exc}")
    raise psycopg.OperationalError("the database does not answer (" + "; ".join(reasons) + ")")


class PromptPool(ConnectionPool):
    down_until = 0.0

    def getconn(self, timeout: float | None = None):
        wait = self.timeout if timeout is None else timeout
        if time.monotonic() < self.down_until:
            self._ensure_answers()
        try:
            return super().getconn(timeout=min(wait, FIRST_WAIT))
        except PoolTimeout:
            if wait <= FIRST_WAIT:
                raise
            self._ensure_answers()
            return super().getconn(timeout=wait - FIRST_WAIT)

    def _ensure_answers(self) -> None:
        try:
            ensure_answers(self.kwargs)
        except psycopg.OperationalError:
            self.down_until = time.monotonic() + DOWN_MEMORY
            raise
        self.down_until = 0.0


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        pool = super().pool
        # Django makes the pool; it becomes a PromptPool before anyone takes a connection from it.
        if pool is not None and type(pool) is ConnectionPool:
            pool.__class__ = PromptPool
        return pool
