"""gunicorn's settings for the web process, wherever it is started from backend/ (make web,
make run, the container, the tests): gunicorn reads ./gunicorn.conf.py by itself.

gevent workers: a connection costs a greenlet, not a process, so hundreds of idle or slow
clients (a header that never ends, a body shorter than its Content-Length) wait without
holding anyone else up; while a request waits on the database, the worker serves others.
Command-line flags still win (e.g. --workers in the tests).
"""

from __future__ import annotations

import multiprocessing
import os

worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
workers = int(os.environ.get("WEB_CONCURRENCY", min(4, multiprocessing.cpu_count())))
# Connections one worker holds open at once (idle keep-alives and slow clients included).
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
timeout = 30
graceful_timeout = 20
keepalive = 5
# Requests on gevent share a small pool of database connections per worker.
if worker_class == "gevent":
    os.environ.setdefault("DATABASE_POOL_SIZE", "8")
# No control socket in the home directory: several web processes may share one machine.
control_socket_disable = True
# A header line longer than gunicorn's limit gets gunicorn's own HTML page (431). Four times the
# app's limit (monitoring.middleware.HEADER_LIMIT, 8190) lets such a line through to Django, which
# answers the contract's JSON 431 under /api/; past this one, gunicorn still answers itself.
# It also bounds what one connection may buffer of headers: 100 fields of this size (3.2 MB).
limit_request_field_size = 32768
