"""docs/openapi.yaml stays true: real responses of every endpoint and status validate against it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.test import Client
from django.urls import get_resolver
from jsonschema import Draft202012Validator

from monitoring.alerts import AlertEpisode, AlertRule
from monitoring.tasks import classify_server
from tests import samples
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

SPEC = yaml.safe_load((Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml").read_text())


def validator_for(schema: dict) -> Draft202012Validator:
    # The spec's components ride along so that "#/components/..." references resolve.
    return Draft202012Validator(
        {**schema, "components": SPEC["components"]}, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def response_schema(path: str, method: str, status: int) -> dict:
    answer = SPEC["paths"][path][method]["responses"][str(status)]
    if "$ref" in answer:
        answer = SPEC["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return answer["content"]["application/json"]["schema"]


def check(path: str, method: str, response) -> None:
    schema = response_schema(path, method, response.status_code)
    errors = sorted(validator_for(schema).iter_errors(response.json()), key=str)
    assert not errors, f"{method.upper()} {path} {response.status_code}: {errors[0]}"


@pytest.fixture
def fed_box(box, ingest):
    start = samples.now_minus(60)
    for i in range(5):
        payload = samples.body(start + timedelta(seconds=2 * i), step=i)
        payload["sample"]["gpus"][0].update(
            processes=[{"pid": 7, "name": "python", "user": "ml", "used_memory_bytes": 9, "type": "compute"}],
            throttle_reasons=["sw_power_cap"],
            fan_percent=30.0,
            xid_errors=[{"xid": 79 if i else 999, "at": (start + timedelta(seconds=2 * i - 1)).isoformat()}],
        )
        ingest.send(box, payload)
    classify_server(box.server.id)
    return box


def test_dashboard_responses_match_the_spec(alice, bob, fed_box, other_box):
    client = client_for(alice)
    check("/api/servers/", "get", client.get("/api/servers/"))
    check("/api/metrics/latest/", "get", client.get("/api/metrics/latest/"))
    check("/api/metrics/history/", "get", client.get("/api/metrics/history/", {"minutes": 5}))
    check("/api/metrics/history/", "get", client.get("/api/metrics/history/", {"server": "gpu-box-02"}))
    check("/api/metrics/latest/", "get", client.get("/api/metrics/latest/", {"server": "gpu-box-02"}))
    check("/api/metrics/history/", "get", client.get("/api/metrics/history/", {"minutes": "x"}))
    check("/api/servers/", "get", client.post("/api/servers/"))
    check("/api/servers/", "get", client_for(bob).get("/api/servers/"))
    check("/api/metrics/latest/", "get", Client().get("/api/metrics/latest/"))
    rule = AlertRule.objects.create(name="node offline", when={"offline": True}, for_seconds=120)
    now = samples.now_minus(0)
    AlertEpisode.objects.create(rule=rule, server=fed_box.server, state="firing", started_at=now, fired_at=now)
    AlertEpisode.objects.create(
        rule=rule, server=fed_box.server, state="resolved", started_at=now, fired_at=now, ended_at=now, value=130.0
    )
    check("/api/alerts/", "get", client.get("/api/alerts/"))
    check("/api/alerts/", "get", client_for(bob).get("/api/alerts/"))
    check("/api/fleet/report/", "get", client.get("/api/fleet/report/", {"days": 1}))
    check("/api/fleet/report/", "get", client.get("/api/fleet/report/", {"days": "x"}))
    check("/api/servers/", "get", client.get("/api/servers/", HTTP_COOKIE="c" * 9000))


def test_ingest_responses_match_the_spec(fed_box, retired_box, ingest, settings):
    path = "/api/ingest/servers/{server_slug}/metrics/"
    body = samples.body(samples.now_minus(5))
    check(path, "post", ingest.send(fed_box, body))
    check(path, "post", ingest.send(fed_box, samples.body(samples.now_minus(58))))  # a resend, classified
    check(path, "post", ingest.send(fed_box, None, raw=b"{"))
    start = samples.now_minus(30)
    batch = {"samples": [samples.sample(start), samples.sample(start, cpu_usage_percent=-1)]}
    check(path, "post", ingest.send(fed_box, batch))  # one stored, one refused
    check(path, "post", ingest.send(fed_box, {"samples": [{"cpu_usage_percent": 1}]}))  # all refused
    check(path, "post", ingest.post(fed_box.slug, body, token="wrong"))
    check(path, "post", ingest.send(retired_box, body))
    check(path, "post", ingest.post("missing", body, token="x"))
    check(path, "post", ingest.client.get(f"/api/ingest/servers/{fed_box.slug}/metrics/"))
    check(path, "post", ingest.post(fed_box.slug, body, token="t" * 9000))
    settings.MONITORING_INGEST_MAX_BODY_BYTES = 1024
    check(path, "post", ingest.send(fed_box, body))


def test_the_bodies_agents_send_match_the_request_schema():
    schema = SPEC["paths"]["/api/ingest/servers/{server_slug}/metrics/"]["post"]["requestBody"]
    validator = validator_for(schema["content"]["application/json"]["schema"])
    validator.validate(samples.body(samples.now_minus(5)))
    validator.validate(samples.sample(samples.now_minus(5)))


def test_every_api_route_is_described_and_every_described_path_exists():
    routes = {"/" + str(p.pattern) for p in get_resolver().url_patterns[-1].url_patterns}
    api_routes = {r.replace("<str:server_slug>", "{server_slug}") for r in routes if r.startswith("/api/")}
    assert api_routes == set(SPEC["paths"])


def test_the_request_schema_names_every_metric_an_agent_sends():
    from monitoring import catalogue

    schemas = SPEC["components"]["schemas"]
    sample = schemas["Sample"]["properties"]
    documented = {
        "host": set(sample),
        "gpu": set(sample["gpus"]["items"]["properties"]),
        "disk": set(sample["disks"]["items"]["properties"]),
    }
    for block, names in documented.items():
        missing = set(catalogue.names(catalogue.block(block, derived=False))) - names
        assert not missing, f"docs/openapi.yaml's Sample lacks {block} metrics {sorted(missing)}"
