"""Shared fixtures: the servers the tests talk about, an ingest client, and real
web / Celery worker processes for the end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.test import Client

from monitoring import queue
from monitoring.models import MonitoredServer
from tests import hypothesis_profiles

# "ci" under CI, "dev" elsewhere: loaded before any test module builds its @settings from it.
hypothesis_profiles.load()

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@dataclass
class Node:
    """A registered server and the token its agent holds."""

    server: MonitoredServer
    token: str

    @property
    def slug(self) -> str:
        return self.server.slug

    def refresh(self) -> MonitoredServer:
        self.server.refresh_from_db()
        return self.server


def register(slug: str, name: str, *, active: bool = True) -> Node:
    server = MonitoredServer(slug=slug, name=name, is_active=active)
    token = server.set_new_token()
    server.save()
    return Node(server, token)


@pytest.fixture
def box(db) -> Node:
    """gpu-box-01: an active training node with a valid token."""
    return register("gpu-box-01", "GPU Box 01")


@pytest.fixture
def other_box(db) -> Node:
    """gpu-box-02: another active node, with a token of its own."""
    return register("gpu-box-02", "GPU Box 02")


@pytest.fixture
def retired_box(db) -> Node:
    """old-box: registered but disabled."""
    return register("old-box", "Old Box", active=False)


PASSWORD = "correct horse battery staple"


def make_user(email: str, **extra):
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=email.split("@")[0], email=email, password=PASSWORD, **extra)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


@pytest.fixture
def alice(db):
    """Allowlisted by her email address."""
    return make_user("alice@example.com")


@pytest.fixture
def carol(db):
    """Allowlisted through her domain, corp.example."""
    return make_user("carol@corp.example")


@pytest.fixture
def bob(db):
    """Signs in fine, but is on no allowlist."""
    return make_user("bob@elsewhere.example")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


class IngestClient:
    def __init__(self):
        self.client = Client()

    def post(
        self,
        slug: str,
        payload,
        *,
        token: str | None = None,
        header: str = "x-monitoring-token",
        raw: bytes | None = None,
    ):
        headers = {}
        if token is not None:
            if header == "authorization":
                headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
            else:
                headers["HTTP_X_MONITORING_TOKEN"] = token
        data = raw if raw is not None else json.dumps(payload)
        return self.client.post(
            f"/api/ingest/servers/{slug}/metrics/", data=data, content_type="application/json", **headers
        )

    def send(self, node: Node, payload, **kwargs):
        return self.post(node.slug, payload, token=node.token, **kwargs)


@pytest.fixture
def ingest() -> IngestClient:
    return IngestClient()


@pytest.fixture(autouse=True)
def _clean_test_broker():
    """Each test starts with an empty test broker database and a fresh broker client."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1)
    with contextlib.suppress(redis.RedisError):
        client.flushdb()
    queue._client = None
    queue._skip_until = 0.0
    yield
    queue._client = None
    queue._skip_until = 0.0


# --- real processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def database_url_for_tests() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def process_env(**overrides) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="trainwatch.settings",
        DATABASE_URL=database_url_for_tests(),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        MONITORING_REDIS_PREFIX=settings.MONITORING_REDIS_PREFIX,
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


class Processes:
    """Starts real processes and makes sure none outlives the test."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        with open(self.tmp_path / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                args, cwd=ROOT / "backend", env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        proc.log_path = self.tmp_path / f"{name}.log"
        self.procs.append(proc)
        return proc

    def web(self, env: dict, workers: int = 2) -> str:
        port = free_port()
        proc = self.start(
            "web",
            [str(VENV_BIN / "gunicorn"), "trainwatch.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
            env,
        )
        wait_for_port(port, proc=proc)
        return f"http://127.0.0.1:{port}"

    def worker(self, env: dict) -> subprocess.Popen:
        return self.start(
            "worker",
            [
                str(VENV_BIN / "celery"),
                "-A",
                "trainwatch",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--without-gossip",
                "--without-mingle",
            ],
            env,
        )

    def beat(self, env: dict) -> subprocess.Popen:
        schedule = self.tmp_path / "celerybeat-schedule"
        return self.start(
            "beat",
            [str(VENV_BIN / "celery"), "-A", "trainwatch", "beat", "--loglevel", "INFO", "--schedule", str(schedule)],
            env,
        )

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


def eventually(check, timeout: float = 15.0, interval: float = 0.2, message: str = "condition"):
    """Poll check() until it returns a truthy value; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout} s")
        time.sleep(interval)


# --- tiers --------------------------------------------------------------------------------


def _empty_tiers() -> None:
    from django.db import connection

    from monitoring.tiers import definitions as tiers

    with connection.cursor() as cursor:
        for relation in tiers.relations():
            cursor.execute(f"TRUNCATE {relation}")
        cursor.execute("TRUNCATE monitoring_tierdirty")


@pytest.fixture
def tier_db(transactional_db):
    """Committed data, as continuous aggregates can only be refreshed outside a transaction.

    Django's flush empties the model tables between tests; the tier relations are not
    models, so they are emptied here.
    """
    _empty_tiers()
    yield
    _empty_tiers()


def backend_is(name: str):
    from monitoring.tiers import definitions as tiers

    return tiers.installed_backend() == name
