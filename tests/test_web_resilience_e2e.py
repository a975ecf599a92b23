"""The web process against clients and faults, on real gunicorn (backend/gunicorn.conf.py:
gevent workers, a pooled database connection per request): slow clients, chunked bodies,
a database that drops every connection, and dashboard queries that hang."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests
from django.db import connection
from django.test import Client

from monitoring.models import GpuSample, Snapshot
from tests import samples
from tests.conftest import database_url_for_tests, make_user, process_env, register

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Well under the 30 s a sync worker held by a slow client would make everyone wait.
PROMPT_SECONDS = 5.0


def post(base: str, node, payload, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", PROMPT_SECONDS)
    return requests.post(
        f"{base}/api/ingest/servers/{node.slug}/metrics/",
        json=payload,
        headers={"X-Monitoring-Token": node.token},
        **kwargs,
    )


def series(count: int, start_seconds_ago: float = 600.0):
    start = samples.now_minus(start_seconds_ago)
    return [samples.body(start + samples.timedelta(seconds=2 * i), step=i, gpus=1, disks=1) for i in range(count)]


def test_hundreds_of_slow_clients_delay_nobody(processes):
    node = register("gpu-box-01", "GPU Box 01")
    base = processes.web(process_env(), workers=2)
    port = int(base.rsplit(":", 1)[1])
    held = []
    try:
        for i in range(300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:
                # Headers that never end.
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            else:
                # A body shorter than its Content-Length.
                sock.sendall(
                    f"POST /api/ingest/servers/{node.slug}/metrics/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"X-Monitoring-Token: {node.token}\r\nContent-Type: application/json\r\n"
                    'Content-Length: 5000\r\n\r\n{"sample": '.encode()
                )
            held.append(sock)
        for payload in series(10):
            started = time.monotonic()
            assert requests.get(f"{base}/healthz", timeout=PROMPT_SECONDS).status_code == 200
            assert post(base, node, payload).status_code == 200
            assert time.monotonic() - started < PROMPT_SECONDS
    finally:
        for sock in held:
            sock.close()
    assert Snapshot.objects.filter(server=node.server).count() == 10


def test_a_chunked_body_is_read(processes):
    node = register("gpu-box-01", "GPU Box 01")
    base = processes.web(process_env(), workers=1)
    body = json.dumps(series(1)[0]).encode()
    # A generator makes requests send Transfer-Encoding: chunked, without Content-Length.
    response = requests.post(
        f"{base}/api/ingest/servers/{node.slug}/metrics/",
        data=(body[i : i + 100] for i in range(0, len(body), 100)),
        headers={"X-Monitoring-Token": node.token, "Content-Type": "application/json"},
        timeout=PROMPT_SECONDS,
    )
    assert response.status_code == 200, response.text
    assert Snapshot.objects.filter(server=node.server).count() == 1


def test_text_a_node_could_not_decode_is_stored_over_http(processes):
    node = register("gpu-box-01", "GPU Box 01")
    base = processes.web(process_env(), workers=1)
    payload = series(1)[0]
    payload["sample"]["gpus"][0]["name"] = "sl\udcffep"
    payload["agent"]["hostname"] = "sl\udcffep"
    response = requests.post(
        f"{base}/api/ingest/servers/{node.slug}/metrics/",
        data=json.dumps(payload).encode(),
        headers={"X-Monitoring-Token": node.token, "Content-Type": "application/json"},
        timeout=PROMPT_SECONDS,
    )
    assert response.status_code == 200, response.text
    assert GpuSample.objects.get(server_id=node.server.id).name == "sl\ufffdep"


def _drop_every_other_connection() -> int:
    """What a database restart does to the app: every connection but this test's is cut."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_a_database_restart_costs_no_request(processes):
    node = register("gpu-box-01", "GPU Box 01")
    base = processes.web(process_env(), workers=2)
    payloads = series(40)
    # Warm both workers' pools.
    for payload in payloads[:10]:
        assert post(base, node, payload).status_code == 200
    assert _drop_every_other_connection() >= 1
    statuses = [post(base, node, payload).status_code for payload in payloads[10:]]
    assert statuses == [200] * 30
    assert Snapshot.objects.filter(server=node.server).count() == 40


# Where a tier's rows are: the table itself (rollup), or a continuous aggregate's materialization.
STORED_IN = """
SELECT coalesce((SELECT format('%%I.%%I', materialization_hypertable_schema, materialization_hypertable_name)
                 FROM timescaledb_information.continuous_aggregates WHERE view_name = %s), %s)
"""


@pytest.fixture
def hung_tier():
    """Every query that reads the 1-hour tier waits on a lock held until the test ends."""
    with psycopg.connect(database_url_for_tests()) as locker:
        table = locker.execute(STORED_IN, ["monitoring_snapshot_1h"] * 2).fetchone()[0]
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
        locker.rollback()


def test_hanging_dashboard_queries_never_starve_ingest(processes, hung_tier):
    node = register("gpu-box-01", "GPU Box 01")
    user = make_user("alice@example.com")
    client = Client()
    client.force_login(user)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    env = process_env(MONITORING_DASHBOARD_STATEMENT_TIMEOUT_SECONDS="3", MONITORING_ALLOWED_EMAILS=user.email)
    base = processes.web(env, workers=1)

    def history() -> requests.Response:
        return requests.get(
            f"{base}/api/metrics/history/",
            params={"server": node.slug, "minutes": 30 * 1440, "source": "1h"},
            cookies=cookies,
            timeout=60,
        )

    stop = threading.Event()
    latencies = []
    with ThreadPoolExecutor(max_workers=16) as pool:
        dashboard = [pool.submit(history) for _ in range(16)]
        time.sleep(0.5)  # they are all in flight, waiting on the lock or for a slot
        for payload in series(20):
            started = time.monotonic()
            assert post(base, node, payload).status_code == 200
            latencies.append(time.monotonic() - started)
        stop.set()
        answers = [future.result() for future in dashboard]

    assert max(latencies) < PROMPT_SECONDS, latencies
    # Every dashboard request got the contract's error, not a hang or a crash.
    for answer in answers:
        assert answer.status_code == 503
        assert answer.json()["ok"] is False
    messages = {answer.json()["error"] for answer in answers}
    assert "the query took longer than the dashboard's limit of 3 s; ask for a shorter window" in messages


def test_a_header_over_the_limit_is_the_contracts_json_431_from_gunicorn(processes):
    node = register("gpu-box-01", "GPU Box 01")
    base = processes.web(process_env(), workers=1)
    url = f"{base}/api/ingest/servers/{node.slug}/metrics/"
    # A 9 kB token: past gunicorn's default limit (8190), within the one gunicorn.conf.py sets.
    response = requests.post(url, json={}, headers={"Authorization": "Bearer " + "t" * 9000}, timeout=PROMPT_SECONDS)
    assert response.status_code == 431 and response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "ok": False,
        "error": "request header fields too large: Authorization is 9024 bytes; at most 8190 per header line",
    }
    # The same on the dashboard's APIs; outside the API, a page.
    response = requests.get(f"{base}/api/servers/", headers={"Cookie": "c" * 20000}, timeout=PROMPT_SECONDS)
    assert response.status_code == 431
    assert response.json()["error"].startswith("request header fields too large: Cookie is 2")
    response = requests.get(f"{base}/", headers={"Cookie": "c" * 20000}, timeout=PROMPT_SECONDS)
    assert response.status_code == 431 and response.headers["Content-Type"].startswith("text/html")
    # Ingest goes on for everyone else.
    assert post(base, node, series(1)[0]).status_code == 200
