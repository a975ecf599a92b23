"""docs/openapi.yaml stays true: real responses of every endpoint and status validate against it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
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
            processes=[
                {"pid": 7, "name": "python", "user": "ml", "used_memory_bytes": 9, "type": "compute"},
                {
                    "pid": 8,
                    "name": "python",
                    "user": "ml",
                    "used_memory_bytes": 9,
                    "type": "compute",
                    "workload": {"kind": "slurm", "id": "12", "name": "train", "user": "ml", "labels": {"a": "b"}},
                },
            ],
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
    check("/api/workloads/", "get", client.get("/api/workloads/"))
    check("/api/workloads/", "get", client.get("/api/workloads/", {"server": "nope"}))
    check("/api/workloads/", "get", client.get("/api/workloads/", {"q": "x" * 201}))


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


# --- the spec allows what the server takes, and forbids what it refuses --------------------------


def request_schema() -> dict:
    return SPEC["paths"]["/api/ingest/servers/{server_slug}/metrics/"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]


def valid_body(body) -> bool:
    return validator_for(request_schema()).is_valid(body)


def with_sample(**fields) -> dict:
    body = samples.body(samples.now_minus(5), gpus=1, disks=1)
    body["sample"].update(fields)
    return body


def gpu_with_process(**extra) -> dict:
    body = samples.body(samples.now_minus(5), gpus=1, disks=1)
    body["sample"]["gpus"][0]["processes"] = [{"pid": 7, "name": "python", **extra}]
    return body


def batch_of(*items) -> dict:
    return {"samples": list(items)}


NOW_SAMPLE = samples.sample(samples.now_minus(5), gpus=1, disks=1)
BODIES = [
    ("an empty sample", {"sample": {}}),
    ("a sample of nulls", {"sample": {"cpu_usage_percent": None, "gpus": None, "disks": []}}),
    ("an empty object", {}),
    ("a GPU process with a field ingest does not know", gpu_with_process(cgroup="/slurm/job_1")),
    ("a GPU process without a pid", gpu_with_process(pid=None)),
    ("a GPU process of a Slurm job", gpu_with_process(workload={"kind": "slurm", "id": "12", "labels": {"a": "b"}})),
    ("a GPU process of no workload", gpu_with_process(workload=None)),
    ("a workload of an unknown kind", gpu_with_process(workload={"kind": "lsf", "id": "12"})),
    ("a workload id of spaces", gpu_with_process(workload={"kind": "container", "id": "  "})),
    ("a workload without an id", gpu_with_process(workload={"kind": "process"})),
    ("a workload label of null", gpu_with_process(workload={"kind": "slurm", "id": "1", "labels": {"a": None}})),
    ("a GPU process name over 256 characters", gpu_with_process(name="p" * 257)),
    ("no GPUs or disks, as null", with_sample(gpus=None, disks=None)),
    ("collected_at null (now)", with_sample(collected_at=None)),
    ("a load beyond any real one", with_sample(cpu_load_1=2e15)),
    ("a counter beyond bigint", with_sample(network_rx_bytes_total=2**63)),
    ("a disk device of spaces", with_sample(disks=[{"device": "   ", "read_bytes_total": 1}])),
    ("more than 32 throttle reasons", with_sample(gpus=[{"gpu_index": 0, "throttle_reasons": ["x"] * 33}])),
    ("an agent of null", {"sample": NOW_SAMPLE, "agent": None}),
    ("an agent label key over 64 characters", {"sample": NOW_SAMPLE, "agent": {"labels": {"k" * 65: "v"}}}),
    ("an agent label of null", {"sample": NOW_SAMPLE, "agent": {"labels": {"rack": None}}}),
    ("the minimal form", {"cpu_usage_percent": 5.0}),
    ("the minimal form beside samples of null", {"cpu_usage_percent": 5.0, "samples": None}),
    ("a batch with one good sample", batch_of(NOW_SAMPLE, {"cpu_usage_percent": 500})),
    ("a batch without collected_at", batch_of({"cpu_usage_percent": 5.0})),
    ("a batch of nothing", batch_of()),
]


@pytest.mark.parametrize(("case", "body"), BODIES, ids=[case for case, _ in BODIES])
def test_the_spec_takes_the_ingest_bodies_the_server_takes_and_no_other(case, body, box, ingest):
    response = ingest.send(box, body)
    assert response.status_code in (200, 400), response.content
    assert valid_body(body) == (response.status_code == 200), f"{case}: {response.status_code} {response.content}"


def parameters(path: str) -> dict:
    """The query's schema of a GET path, each parameter (or exploded object) as a property."""
    query = {"type": "object", "properties": {}}
    for parameter in SPEC["paths"][path]["get"]["parameters"]:
        if "$ref" in parameter:
            parameter = SPEC["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        schema = parameter["schema"]
        if parameter.get("explode") and schema["type"] == "object":
            query["properties"].update(schema["properties"])
            query.update({k: v for k, v in schema.items() if k in ("if", "then")})
        else:
            query["properties"][parameter["name"]] = schema
    return query


QUERIES = [
    ("/api/metrics/history/", {"minutes": 0}),
    ("/api/metrics/history/", {"minutes": -5}),
    ("/api/metrics/history/", {"server": ""}),
    ("/api/metrics/history/", {"source": "raw", "minutes": 1440}),
    ("/api/metrics/history/", {"source": "raw", "minutes": 2000}),
    ("/api/metrics/history/", {"source": "1h", "minutes": 2000}),
    ("/api/metrics/history/", {"source": "hourly"}),
    ("/api/fleet/report/", {"days": 5e-324}),
    ("/api/fleet/report/", {"days": "1e-400"}),
    ("/api/fleet/report/", {"days": 90}),
    ("/api/fleet/report/", {"days": 90.5}),
    ("/api/fleet/report/", {"days": 0}),
    ("/api/workloads/", {"q": "x" * 200}),
    ("/api/workloads/", {"q": "x" * 201}),
    ("/api/workloads/", {"user": "a\x00"}),
    ("/api/workloads/", {"user": "alice", "q": "llama"}),
]


@pytest.mark.parametrize(("path", "query"), QUERIES, ids=[f"{p} {q}" for p, q in QUERIES])
def test_the_spec_takes_the_queries_the_server_takes_and_no_other(path, query, alice, box):
    # The number a person wrote, not the float it rounds to (1e-400 is more than 0).
    typed = {k: Decimal(str(v)) if k == "days" else v for k, v in query.items()}
    allowed = validator_for(parameters(path)).is_valid(typed)
    response = client_for(alice).get(path, {k: str(v) for k, v in query.items()})
    assert response.status_code in (200, 400), response.content
    assert allowed == (response.status_code == 200), f"{query}: {response.status_code} {response.content}"


def test_the_request_schema_has_every_bound_of_the_ingest_rules():
    from monitoring.ingest import schema as rules

    def bounds(rule) -> dict:
        if rule.kind == "number":
            low = -rules.MAX_MAGNITUDE if rule.low is None else max(rule.low, -rules.MAX_MAGNITUDE)
            high = rules.MAX_MAGNITUDE if rule.high is None else min(rule.high, rules.MAX_MAGNITUDE)
            return {"minimum": low, "maximum": high}
        if rule.kind in ("integer", "index"):
            return {"minimum": rule.low, "maximum": rule.high}
        if rule.kind in ("text", "list"):
            return {"maxLength" if rule.kind == "text" else "maxItems": rule.limit}
        return {}

    sample = SPEC["components"]["schemas"]["Sample"]["properties"]
    blocks = {
        "host": (rules.HOST, sample),
        "gpu": (rules.GPU.fields, sample["gpus"]["items"]["properties"]),
        "disk": (rules.DISK.fields, sample["disks"]["items"]["properties"]),
        "process": (rules.PROCESS.fields, SPEC["components"]["schemas"]["GpuProcessSent"]["properties"]),
    }
    for block, (fields, documented) in blocks.items():
        for name, rule in fields.items():
            shown = {
                k: documented[name][k] for k in ("minimum", "maximum", "maxLength", "maxItems") if k in documented[name]
            }
            assert shown == bounds(rule), f"{block}.{name}"
            assert ("null" in documented[name]["type"]) == (not rule.required), f"{block}.{name}"
    # At least one host metric with a value, a GPU or a disk: each one of them is a way.
    ways = SPEC["components"]["schemas"]["Sample"]["anyOf"]
    assert [way["required"][0] for way in ways] == [*rules.HOST, "gpus", "disks"]
