"""End to end with real processes: gunicorn serving ingest, a Celery worker classifying,
Redis as the broker, TimescaleDB storing. Also the faults: broker gone, database gone."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta

import pytest
import requests
from django.test import Client

from monitoring import queue
from monitoring.models import Snapshot, SnapshotLabel
from tests import samples
from tests.conftest import eventually, free_port, process_env, register, wait_for_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def post(base: str, node, payload, timeout: float = 5.0) -> requests.Response:
    return requests.post(
        f"{base}/api/ingest/servers/{node.slug}/metrics/",
        json=payload,
        headers={"X-Monitoring-Token": node.token, "Accept": "application/json"},
        timeout=timeout,
    )


def classified(node) -> int:
    return SnapshotLabel.objects.filter(server_id=node.server.id).count()


def series(count: int, start_seconds_ago: float = 120.0):
    start = samples.now_minus(start_seconds_ago)
    return [samples.body(start + timedelta(seconds=2 * i), step=i) for i in range(count)]


def test_samples_posted_over_http_are_classified_within_seconds(processes):
    node = register("gpu-box-01", "GPU Box 01")
    env = process_env()
    base = processes.web(env)
    processes.worker(env)
    payloads = series(20)
    for payload in payloads:
        assert post(base, node, payload).status_code == 200
    eventually(lambda: classified(node) == 20, timeout=20, message="all 20 snapshots classified")
    labels = set(SnapshotLabel.objects.values_list("label", flat=True))
    assert labels == {"gpu-bound"}
    # A resend after classification answers with the label.
    again = post(base, node, payloads[0]).json()
    assert again["snapshot"]["bottleneck"] == "gpu-bound"
    assert Snapshot.objects.count() == 20


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of the test's own, so that stopping it disturbs nobody else."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; `make services` installs it")
    port = free_port()

    def start():
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port, proc=proc)
        return proc

    state = {"proc": start()}

    class Control:
        url = f"redis://127.0.0.1:{port}/0"

        def stop(self):
            state["proc"].terminate()
            state["proc"].wait(10)

        def restart(self):
            state["proc"] = start()

    yield Control()
    if state["proc"].poll() is None:
        state["proc"].terminate()
        state["proc"].wait(10)


def test_ingest_keeps_storing_while_redis_is_down_and_classification_catches_up(processes, private_redis):
    node = register("gpu-box-01", "GPU Box 01")
    env = process_env(
        CELERY_BROKER_URL=private_redis.url, MONITORING_SWEEP_GRACE_SECONDS="0", MONITORING_SWEEP_INTERVAL_SECONDS="2"
    )
    base = processes.web(env)
    worker = processes.worker(env)
    processes.beat(env)
    payloads = series(12)

    for payload in payloads[:4]:
        assert post(base, node, payload).status_code == 200
    eventually(lambda: classified(node) == 4, timeout=20, message="classification before the outage")

    private_redis.stop()
    for payload in payloads[4:8]:
        response = post(base, node, payload)
        assert response.status_code == 200, response.text
        assert response.elapsed.total_seconds() < 2.5
    assert Snapshot.objects.filter(server=node.server).count() == 8
    assert classified(node) == 4

    private_redis.restart()
    # The worker and beat reconnect by themselves; the agent keeps posting meanwhile.
    for payload in payloads[8:]:
        assert post(base, node, payload).status_code == 200
    eventually(lambda: classified(node) == 12, timeout=40, message="classification after Redis returned")
    assert worker.poll() is None


def test_the_sweeper_classifies_what_no_task_was_queued_for(processes):
    node = register("gpu-box-01", "GPU Box 01")
    # Stored while the broker looked unreachable to ingest: no task was queued for them.
    queue._skip_until = float("inf")
    client = Client()
    for payload in series(3):
        response = client.post(
            f"/api/ingest/servers/{node.slug}/metrics/",
            data=payload,
            content_type="application/json",
            HTTP_X_MONITORING_TOKEN=node.token,
        )
        assert response.status_code == 200
    env = process_env(MONITORING_SWEEP_GRACE_SECONDS="0", MONITORING_SWEEP_INTERVAL_SECONDS="1")
    processes.worker(env)
    processes.beat(env)
    eventually(lambda: classified(node) == 3, timeout=30, message="the sweeper's catch-up")


def test_ingest_answers_503_with_retry_after_when_the_database_is_down(processes):
    node = register("gpu-box-01", "GPU Box 01")
    dead = f"postgres://nobody@127.0.0.1:{free_port()}/trainwatch"
    base = processes.web(process_env(DATABASE_URL=dead))
    response = post(base, node, series(1)[0], timeout=15)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"ok": False, "error": "the database is unavailable; retry later"}
