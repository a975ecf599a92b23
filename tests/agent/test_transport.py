"""Posting a sample, against a small local HTTP server: the request, and what each answer means."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import free_port
from trainwatch_agent.transport import CONFIG, REFUSED, RETRY, SENT, Transport, agent_info, classify, parse_retry_after

SAMPLE = {"collected_at": "2026-02-26T02:37:49.120000+00:00", "cpu_usage_percent": 32.1, "disks": [], "gpus": []}


class Stub:
    """Answers each POST with the next scripted (status, headers, body, delay); records the requests."""

    def __init__(self):
        self.script: list[tuple[int, dict, bytes, float]] = []
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, headers, payload, delay = stub.script.pop(0) if stub.script else (200, {}, b"{}", 0)
                time.sleep(delay)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    server = Stub()
    yield server
    server.close()


def transport_for(base: str, timeout: float = 5.0) -> Transport:
    url = f"{base}/api/ingest/servers/gpu-box-01/metrics/"
    return Transport(url, "tok-123", agent_info({"rack": "r1"}), timeout=timeout)


def test_it_posts_the_sample_and_agent_block_with_the_token(stub):
    outcome = transport_for(stub.base).send(SAMPLE)
    assert outcome.kind == SENT
    (request,) = stub.requests
    assert request["path"] == "/api/ingest/servers/gpu-box-01/metrics/"
    assert request["headers"]["X-Monitoring-Token"] == "tok-123"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"] == "trainwatch-agent/0.1.0"
    body = json.loads(request["body"])
    assert body["sample"] == SAMPLE
    assert set(body["agent"]) == {"version", "hostname", "platform", "python", "labels"}
    assert body["agent"]["labels"] == {"rack": "r1"}


@pytest.mark.parametrize(
    "status, kind",
    [
        (200, SENT),
        (201, SENT),
        (400, REFUSED),
        (413, REFUSED),
        (401, CONFIG),
        (403, CONFIG),
        (404, CONFIG),
        (405, CONFIG),
        (408, RETRY),
        (429, RETRY),
        (500, RETRY),
        (502, RETRY),
        (503, RETRY),
    ],
)
def test_each_answer_means_something_for_the_sample(stub, status, kind):
    stub.script.append((status, {}, json.dumps({"ok": False, "error": "the reason"}).encode(), 0))
    outcome = transport_for(stub.base).send(SAMPLE)
    assert (outcome.kind, outcome.status) == (kind, status)
    if kind != SENT:
        assert outcome.message == f"HTTP {status}: the reason"


def test_it_honours_retry_after_on_503_and_429(stub):
    stub.script.append((503, {"Retry-After": "5"}, b'{"ok": false, "error": "the database is unavailable"}', 0))
    stub.script.append((429, {"Retry-After": "120"}, b"slow down", 0))
    transport = transport_for(stub.base)
    first, second = transport.send(SAMPLE), transport.send(SAMPLE)
    assert (first.kind, first.retry_after) == (RETRY, 5.0)
    assert (second.kind, second.retry_after, second.message) == (RETRY, 120.0, "HTTP 429: slow down")


def test_a_redirect_is_not_followed_and_says_where_to_point_the_agent(stub):
    stub.script.append((301, {"Location": "https://web.example/api/ingest/servers/gpu-box-01/metrics/"}, b"", 0))
    outcome = transport_for(stub.base).send(SAMPLE)
    assert outcome.kind == CONFIG
    assert "redirected to 'https://web.example/" in outcome.message
    assert len(stub.requests) == 1


def test_a_server_that_does_not_answer_in_time_is_retried_later(stub):
    stub.script.append((200, {}, b"{}", 2.0))
    started = time.monotonic()
    outcome = transport_for(stub.base, timeout=0.5).send(SAMPLE)
    assert outcome.kind == RETRY
    assert outcome.message == "no answer within 0.5 s"
    assert time.monotonic() - started < 1.9


def test_a_server_that_is_down_is_retried_later():
    outcome = transport_for(f"http://127.0.0.1:{free_port()}").send(SAMPLE)
    assert outcome.kind == RETRY
    assert outcome.status is None
    assert "Connection refused" in outcome.message
    assert "object at 0x" not in outcome.message


def test_a_sample_that_cannot_be_encoded_is_refused_without_a_request(stub):
    outcome = transport_for(stub.base).send({**SAMPLE, "cpu_usage_percent": float("nan")})
    assert outcome.kind == REFUSED
    assert stub.requests == []


def test_retry_after_as_a_date_or_nonsense():
    now = 1_000_000.0
    in_a_minute = format_datetime(datetime.fromtimestamp(now + 60, tz=UTC), usegmt=True)
    assert parse_retry_after(in_a_minute, now=now) == 60.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("99999") == 3600.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert classify(503, {}, b"").retry_after is None


def test_it_reads_proxy_settings_from_the_environment_once(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "trainwatch.internal")
    through = Transport("https://web.example/api/", "t", agent_info({}))
    assert through.session.proxies.get("https") == "http://proxy.internal:3128"
    direct = Transport("https://trainwatch.internal/api/", "t", agent_info({}))
    assert "https" not in direct.session.proxies
    assert through.session.trust_env is False  # not re-read (nor ~/.netrc looked up) on every post
