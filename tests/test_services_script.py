"""`make services` (scripts/services.sh) takes a PostgreSQL server as it finds it: one that already
answers and is not one of Debian's clusters (a container published on localhost, a server built by
hand) gets the role, database and extension through a connection, and no cluster is made beside it;
what cannot be done is said in one line."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.e2e


def _bin(name: str) -> str:
    return sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))[-1]


@pytest.fixture
def own_server():
    """A PostgreSQL server of our own on a free port, started by pg_ctl, not a Debian cluster."""
    home = Path(tempfile.mkdtemp(prefix="tw-own-pg-", dir="/tmp"))
    shutil.chown(home, "postgres")
    port = free_port()

    def as_postgres(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60)

    as_postgres(_bin("initdb"), "-D", str(home / "data"), "-A", "trust", "-U", "postgres")

    def start(preload: bool) -> None:
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1"
        if preload:
            options += " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
        as_postgres(_bin("pg_ctl"), "-D", str(home / "data"), "-o", options, "-l", str(home / "log"), "-w", "start")

    try:
        yield port, start
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", _bin("pg_ctl"), "-D", str(home / "data"), "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(home, ignore_errors=True)


def services(database_url: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=database_url, CELERY_BROKER_URL=settings.CELERY_BROKER_URL)
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "services.sh")], env=env, capture_output=True, text=True, timeout=300
    )


def debian_clusters_on(port: int) -> list[str]:
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[2] == str(port)]


def test_a_server_already_answering_gets_role_database_and_extension(own_server):
    port, start = own_server
    start(preload=True)
    url = f"postgres://tw_probe:s3cret@127.0.0.1:{port}/tw_probe"
    done = services(url)
    assert done.returncode == 0, done.stderr
    assert f"using the PostgreSQL server already answering at 127.0.0.1:{port}" in done.stdout
    assert "creating role tw_probe" in done.stdout and "creating database tw_probe" in done.stdout
    version = subprocess.run(
        ["psql", "-X", "-tA", url, "-c", "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"],
        capture_output=True,
        text=True,
    )
    assert version.returncode == 0 and version.stdout.strip(), version.stderr
    assert debian_clusters_on(port) == []
    again = services(url)  # idempotent
    assert again.returncode == 0 and "creating" not in again.stdout


def test_a_server_that_cannot_load_timescaledb_is_named_in_one_line(own_server):
    port, start = own_server
    start(preload=False)
    done = services(f"postgres://postgres@127.0.0.1:{port}/postgres")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port} cannot give database postgres TimescaleDB" in lines[0]
    assert "shared_preload_libraries" in lines[0]
    assert debian_clusters_on(port) == []


def test_nothing_answering_at_a_remote_address_is_said(own_server):
    port, _ = own_server  # never started: nothing listens there
    # 127.0.0.2 is loopback, but not an address the script treats as this machine's own.
    done = services(f"postgres://trainwatch@127.0.0.2:{port}/trainwatch")
    assert done.returncode == 1
    assert done.stderr.strip() == f"services: no PostgreSQL server answers at 127.0.0.2:{port} (DATABASE_URL)"
