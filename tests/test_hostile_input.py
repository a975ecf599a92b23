"""What real nodes and hostile clients send: text that is not valid Unicode, paths and
parameters the API does not know, and errors that must stay one line of JSON."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from monitoring.models import DiskSample, GpuSample, MonitoredServer
from tests import samples
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

T0 = samples.utc(2026, 2, 26, 2, 0, 0)
# What a node whose names are not valid UTF-8 sends: psutil decodes b'sl\xffep' to 'sl\udcffep',
# and json escapes the lone surrogate. It must reach the server as that escape.
ODD = "sl\udcffep"
STORED = "sl\ufffdep"


def raw_body(payload: dict) -> bytes:
    text = json.dumps(payload)  # ensure_ascii: the surrogate travels as \udcff
    assert "\\udcff" in text
    return text.encode()


def test_text_with_lone_surrogates_is_stored_with_replacement_characters(ingest, box):
    payload = samples.body(T0, gpus=1, disks=1)
    gpu = payload["sample"]["gpus"][0]
    gpu.update(name=ODD, uuid=f"GPU-{ODD}", processes=[{"pid": 7, "name": ODD, "user": ODD}])
    gpu["throttle_reasons"] = [ODD]
    payload["sample"]["disks"][0]["device"] = ODD
    payload["agent"].update(hostname=ODD, platform=ODD, labels={ODD: ODD, "rack": "r1"})
    response = ingest.post(box.slug, None, token=box.token, raw=raw_body(payload))
    assert response.status_code == 200, response.content
    assert response.json()["server"]["hostname"] == STORED

    stored_gpu = GpuSample.objects.get(server_id=box.server.id)
    assert (stored_gpu.name, stored_gpu.uuid) == (STORED, f"GPU-{STORED}")
    assert stored_gpu.processes == [{"pid": 7, "name": STORED, "user": STORED, "used_memory_bytes": None, "type": None}]
    assert stored_gpu.throttle_reasons == [STORED]
    assert DiskSample.objects.get(server_id=box.server.id).device == STORED
    server = MonitoredServer.objects.get(pk=box.server.id)
    assert (server.hostname, server.agent_platform) == (STORED, STORED)
    assert server.agent_labels == {STORED: STORED, "rack": "r1"}


def test_a_nul_in_a_name_costs_nothing_either(ingest, box):
    payload = samples.body(T0, gpus=1, disks=0)
    payload["sample"]["gpus"][0]["name"] = "A100\x00"
    response = ingest.send(box, payload)
    assert response.status_code == 200
    assert GpuSample.objects.get(server_id=box.server.id).name == "A100\ufffd"


def test_numbers_stay_strict(ingest, box):
    payload = samples.body(T0, gpus=1, disks=0)
    payload["sample"]["gpus"][0]["temperature_c"] = "64"
    response = ingest.send(box, payload)
    assert response.status_code == 400
    assert response.json()["error"] == "sample.gpus[0].temperature_c: must be a number"


@pytest.mark.parametrize(
    "key", ["a\nb", "a\r\nb", "\u2028", "\x1b[31m", "sl\udcffep"], ids=["lf", "crlf", "ls", "esc", "surrogate"]
)
def test_an_error_naming_a_clients_key_stays_one_line_of_valid_json(ingest, box, key):
    # Found by the property test: a label key with a newline, echoed in the error.
    payload = samples.body(T0, gpus=0, disks=0)
    payload["agent"]["labels"] = {key: 5}
    response = ingest.post(box.slug, None, token=box.token, raw=json.dumps(payload).encode())
    assert response.status_code == 400
    text = response.content.decode("utf-8")  # strict: fails on an encoded surrogate
    message = json.loads(text)["error"]
    assert not any(c in message for c in "\n\r\u2028\u2029\x1b")
    assert message.startswith("agent.labels.") and message.endswith(": must be a string")


def test_a_slug_that_is_not_a_slug_is_an_unknown_server(ingest, box):
    for slug in ("%00", "%0A", "gpu-box-01%00", "x" * 65, "%C2%B2"):
        response = ingest.client.post(
            f"/api/ingest/servers/{slug}/metrics/", data=b"{}", content_type="application/json"
        )
        assert response.status_code == 404, slug
        assert response.json()["ok"] is False
        assert "unknown server" in response.json()["error"]
        assert "\n" not in response.content.decode()


@pytest.mark.parametrize("wanted", ["²", "①", "٣", "1²", "-1", "1e3"])
def test_a_server_parameter_with_other_digits_is_just_unknown(alice, box, wanted):
    response = client_for(alice).get("/api/metrics/latest/", {"server": wanted})
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error": f"no active server {wanted!r}"}


def test_a_numeric_server_parameter_still_picks_by_id(alice, box):
    response = client_for(alice).get("/api/servers/", {"server": str(box.server.id)})
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/api/", "/api/nope/", "/api/servers/x/", "/api/ingest/", "/api/metrics/"])
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_api_paths_answer_a_json_404(alice, path, method):
    response = getattr(client_for(alice), method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"ok": False, "error": f"no such endpoint: {method.upper()} {path}; see docs/api.md"}


def test_an_unknown_path_with_a_newline_is_one_line(alice):
    response = client_for(alice).get("/api/a%0Ab/")
    assert response.status_code == 404
    assert "\n" not in response.json()["error"]


def test_pages_outside_the_api_keep_their_html_404(alice):
    response = client_for(alice).get("/nope/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("path", ["/api/servers/", "/api/metrics/latest/", "/api/metrics/history/"])
def test_a_post_without_csrf_token_to_a_dashboard_api_is_a_json_405(alice, path):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(path, {"x": 1})
    assert response.status_code == 405
    assert response.json()["ok"] is False
    assert response["Allow"] == "GET, HEAD"


def test_a_disallowed_host_under_the_api_is_a_json_400(alice):
    response = client_for(alice).get("/api/servers/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error": "bad request"}


@pytest.mark.parametrize("field", ["cpu_count_logical", "cpu_count_physical", "process_count"])
def test_a_count_too_large_for_its_column_names_the_field(ingest, box, field):
    # Found by the property test: the database refused it, and the error did not say which field.
    payload = samples.body(T0, gpus=0, disks=0)
    payload["sample"][field] = 2**31
    response = ingest.send(box, payload)
    assert response.status_code == 400
    assert response.json()["error"] == f"sample.{field}: is too large"
    payload["sample"][field] = 2**31 - 1
    assert ingest.send(box, payload).status_code == 200


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mig_mode", "yes", "must be true or false"),
        ("mig_mode", 1, "must be true or false"),
        ("mig_instances", -1, "must be 0 or more"),
        ("pcie_rx_bytes_per_s", -5.0, "must be 0 or more"),
        ("decoder_util_percent", 101, "must be between 0 and 100"),
    ],
)
def test_the_newer_gpu_fields_are_checked_like_the_rest(ingest, box, field, value, message):
    payload = samples.body(T0, gpus=2, disks=0)
    payload["sample"]["gpus"][1][field] = value
    response = ingest.send(box, payload)
    assert response.status_code == 400
    assert response.json()["error"] == f"sample.gpus[1].{field}: {message}"


def test_a_header_line_over_the_limit_is_a_json_431_under_the_api(ingest, box, alice):
    # A 9 kB token: Django answers, not the web server (see tests/test_web_resilience_e2e.py).
    response = ingest.post(box.slug, samples.body(T0), token="x" * 9000, header="authorization")
    assert response.status_code == 431
    assert response.json() == {
        "ok": False,
        "error": "request header fields too large: Authorization is 9024 bytes; at most 8190 per header line",
    }
    response = client_for(alice).get("/api/servers/", HTTP_X_NOTE="n" * 8200)
    assert response.status_code == 431 and response.json()["error"].startswith(
        "request header fields too large: X-Note"
    )
    # Outside the API people read a page; a long header within the limit is fine.
    page = client_for(alice).get("/", HTTP_X_NOTE="n" * 8200)
    assert page.status_code == 431 and page["Content-Type"].startswith("text/html")
    assert ingest.send(box, samples.body(T0), header="x-monitoring-token").status_code == 200
    assert client_for(alice).get("/api/servers/", HTTP_X_NOTE="n" * 8000).status_code == 200
