"""docs/openapi.yaml against a live gunicorn, property-based: a short, seeded schemathesis run over
every operation. The server answers what the spec allows and refuses what it forbids (400, never a
200), never with a 5xx, and every answer's status, content type and body are the spec's.

Where the spec cannot say all the server checks, a spec-valid request may still be refused: an
ingest sample's time in the future or a GPU index twice in one sample, a report's `from` after its
`to`. Those operations are not held to accepting every spec-valid request; the rest are."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
from django.test import Client

from tests import samples
from tests.conftest import ROOT, VENV_BIN, make_user, process_env, register

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SPEC = ROOT / "docs" / "openapi.yaml"
SEED = 20261124
EXAMPLES = 40


def config(slug: str, token: str, session: str) -> str:
    return f"""
seed = {SEED}
continue-on-failure = true
[generation]
max-examples = {EXAMPLES}
[auth.openapi.session]
api_key = "{session}"
[auth.openapi.ingestToken]
api_key = "{token}"
[auth.openapi.bearer]
bearer = "{token}"
[parameters]
"path.server_slug" = "{slug}"
[checks]
not_a_server_error.enabled = true
status_code_conformance.enabled = true
content_type_conformance.enabled = true
response_schema_conformance.enabled = true
negative_data_rejection.enabled = true
positive_data_acceptance.enabled = true
[[operations]]
include-path = "/api/ingest/servers/{{server_slug}}/metrics/"
checks.positive_data_acceptance.enabled = false
[[operations]]
include-path = "/api/fleet/report/"
checks.positive_data_acceptance.enabled = false
"""


def test_a_seeded_schemathesis_run_finds_the_spec_and_the_server_agree(processes, tmp_path):
    node = register("gpu-box-01", "GPU Box 01")
    client = Client()
    start = samples.now_minus(120)
    for i in range(5):
        body = samples.body(start + timedelta(seconds=2 * i), step=i)
        client.post(
            f"/api/ingest/servers/{node.slug}/metrics/",
            data=body,
            content_type="application/json",
            HTTP_X_MONITORING_TOKEN=node.token,
        )
    alice = make_user("alice@example.com")
    client.force_login(alice)
    base = processes.web(process_env(MONITORING_ALLOWED_EMAILS=alice.email), workers=2)
    settings = tmp_path / "schemathesis.toml"
    settings.write_text(config(node.slug, node.token, client.cookies["sessionid"].value))
    run = subprocess.run(
        [str(VENV_BIN / "st"), "--no-color", "--config-file", str(settings), "run", str(SPEC), "--url", base]
        + ["--phases", "examples,coverage,fuzzing", "--workers", "1", "--no-shrink"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
