"""Alerts end to end on real processes: samples posted to gunicorn, rules evaluated by the Celery
worker and beat, notices received by a real HTTP receiver with their signature, a worker restarted
mid-episode resending nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests

from monitoring.alerts import import_text, sign
from tests import samples
from tests.conftest import eventually, process_env, register
from tests.receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def post(base: str, node, bodies: list[dict]) -> None:
    response = requests.post(
        f"{base}/api/ingest/servers/{node.slug}/metrics/",
        json={"samples": [b["sample"] for b in bodies], "agent": bodies[0]["agent"]},
        headers={"X-Monitoring-Token": node.token},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def series(count: int, start, temperature: float) -> list[dict]:
    bodies = [samples.body(start + timedelta(seconds=2 * i), step=i, gpus=1) for i in range(count)]
    for body in bodies:
        body["sample"]["gpus"][0]["temperature_c"] = temperature
    return bodies


def notices(receiver: Receiver, rule: str, status: str) -> list[dict]:
    return [r.json() for r in receiver.received if r.json()["rule"] == rule and r.json()["status"] == status]


def test_rules_fire_and_resolve_through_the_worker_and_beat(processes):
    node = register("gpu-box-01", "GPU Box 01")
    with Receiver() as receiver:
        import_text(
            json.dumps(
                {
                    "channels": [{"name": "ops", "kind": "webhook", "url": receiver.url(), "secret": "s3cret"}],
                    "rules": [
                        {
                            "name": "hot GPU",
                            "when": {"metric": "temperature_c", "op": ">", "value": 85},
                            "for": "10s",
                            "notify": ["ops"],
                        },
                        {"name": "node offline", "when": {"offline": True}, "for": "4s", "notify": ["ops"]},
                    ],
                }
            )
        )
        env = process_env(MONITORING_ALERT_OFFLINE_INTERVAL_SECONDS="1", MONITORING_ALERT_RETRY_INTERVAL_SECONDS="1")
        base = processes.web(env, workers=1)
        worker = processes.worker(env)
        processes.beat(env)

        start = samples.now_minus(30)
        post(base, node, series(10, start, 90.0))  # 18 s hot: past its `for`
        hot = eventually(lambda: notices(receiver, "hot GPU", "firing"), timeout=30, message="the hot GPU notice")
        got = next(r for r in receiver.received if r.json()["rule"] == "hot GPU")
        assert got.headers["X-TrainWatch-Signature"] == sign("s3cret", got.body)
        assert hot[0]["server"]["slug"] == node.slug and hot[0]["value"] == 90.0

        # Nothing more is sent: the node is offline within its `for` and beat's interval.
        offline = eventually(
            lambda: notices(receiver, "node offline", "firing"), timeout=30, message="the offline notice"
        )
        assert offline[0]["server"]["slug"] == node.slug

        # A worker restarted mid-episode resends nothing.
        processes.stop(worker)
        processes.worker(env)
        # Back, and cool: samples up to 20 s ahead, so that it stays online while this test looks.
        post(base, node, series(11, samples.now_minus(1), 50.0))
        eventually(lambda: notices(receiver, "hot GPU", "resolved"), timeout=30, message="hot GPU resolved")
        eventually(lambda: notices(receiver, "node offline", "resolved"), timeout=30, message="offline resolved")
        assert len(notices(receiver, "hot GPU", "firing")) == 1
        assert len(notices(receiver, "node offline", "firing")) == 1
