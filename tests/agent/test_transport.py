"""Posting a sample, against a small local HTTP server: the request, and what each answer means."""

from __future__ import annotations

import gzip
import json
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import free_port
from trainwatch_agent.transport import (
    CONFIG,
    GZIP_MIN_BYTES,
    REFUSED,
    RETRY,
    SENT,
    TOO_LARGE,
    UNSUPPORTED,
    Transport,
    agent_info,
    classify,
    parse_retry_after,
)

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
    assert set(body["agent"]) == {"version", "packaging", "hostname", "platform", "python", "labels"}
    assert body["agent"]["labels"] == {"rack": "r1"}
    assert body["agent"]["packaging"] == "pip"  # installed from agent/, not from one of the builds


def test_a_build_says_how_it_was_installed_and_an_unknown_word_reads_as_pip(monkeypatch):
    import sys
    import types

    from trainwatch_agent.packaging import packaging

    for written, reported in (("deb", "deb"), ("container", "container"), ("<b>x</b>", "pip")):
        monkeypatch.setitem(sys.modules, "trainwatch_agent._packaging", types.SimpleNamespace(PACKAGING=written))
        assert packaging() == reported


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


# --- batches and gzip ---


def batch_of(count: int) -> list[dict]:
    return [{**SAMPLE, "collected_at": f"2026-02-26T02:{i // 30:02d}:{i % 30 * 2:02d}+00:00"} for i in range(count)]


def body_of(request: dict) -> dict:
    """The JSON a request carried, inflated when it came gzip-compressed."""
    raw = request["body"]
    if request["headers"].get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def answer(status: int, **fields) -> tuple[int, dict, bytes, float]:
    return (status, {}, json.dumps({"ok": 200 <= status < 300, **fields}).encode(), 0)


def test_a_batch_goes_in_the_batch_form_gzip_compressed(stub):
    samples = batch_of(60)
    stub.script.append(answer(200, server={}, accepted=60, duplicates=0, refused=[]))
    outcome = transport_for(stub.base).send_batch(samples)
    assert (outcome.kind, outcome.accepted, outcome.refused) == (SENT, 60, [])
    (request,) = stub.requests
    assert request["headers"]["Content-Encoding"] == "gzip"
    assert request["body"][:2] == b"\x1f\x8b"  # the gzip magic
    assert len(gzip.decompress(request["body"])) > GZIP_MIN_BYTES > len(request["body"])
    body = body_of(request)
    assert body["samples"] == samples
    assert body["agent"]["labels"] == {"rack": "r1"}
    assert set(body) == {"samples", "agent"}


def test_small_bodies_stay_plain_json_and_large_single_samples_are_compressed(stub):
    transport = transport_for(stub.base)
    assert transport.send(SAMPLE).kind == SENT
    big = {**SAMPLE, "disks": [{"device": f"nvme{i}n1", "read_bytes_total": i} for i in range(100)]}
    assert transport.send(big).kind == SENT
    small, large = stub.requests
    assert "Content-Encoding" not in small["headers"]
    assert json.loads(small["body"])["sample"] == SAMPLE
    assert large["headers"]["Content-Encoding"] == "gzip"
    assert body_of(large)["sample"] == big


@pytest.mark.parametrize(
    "reply, kind, refused",
    [
        (answer(200, accepted=2, duplicates=1, refused=[]), SENT, []),
        (answer(200, accepted=1, duplicates=0, refused=[{"index": 1, "error": "samples[1].x: bad"}]), SENT, [1]),
        # Every sample refused: 400 with the batch fields.
        (
            answer(400, accepted=0, duplicates=0, refused=[{"index": i, "error": "e"} for i in range(3)]),
            REFUSED,
            [0, 1, 2],
        ),
        # A server without batches: 400 without them.
        ((400, {}, b'{"ok": false, "error": "sample: has none of the known metric fields"}', 0), UNSUPPORTED, []),
        ((200, {}, b'{"ok": true, "snapshot": {}}', 0), UNSUPPORTED, []),
        ((413, {}, b'{"ok": false, "error": "body is larger than 1048576 bytes"}', 0), TOO_LARGE, []),
        ((503, {"Retry-After": "5"}, b'{"ok": false, "error": "the database is unavailable"}', 0), RETRY, []),
        ((401, {}, b'{"ok": false, "error": "invalid ingest token for this server"}', 0), CONFIG, []),
    ],
)
def test_each_answer_to_a_batch_means_something_for_its_samples(stub, reply, kind, refused):
    stub.script.append(reply)
    outcome = transport_for(stub.base).send_batch(batch_of(3))
    assert outcome.kind == kind
    assert [index for index, _ in outcome.refused] == refused
    if kind == UNSUPPORTED:
        assert outcome.message.startswith(f"HTTP {reply[0]}")
    if kind == RETRY:
        assert outcome.retry_after == 5.0


def test_a_refused_sample_is_named_with_the_servers_words(stub):
    error = "samples[1].cpu_usage_percent: must be between 0 and 100"
    stub.script.append(answer(200, accepted=2, duplicates=0, refused=[{"index": 1, "error": error}, {"index": 9}]))
    outcome = transport_for(stub.base).send_batch(batch_of(3))
    assert outcome.refused == [(1, error)]  # an index outside the batch is ignored


def test_a_sample_that_cannot_be_encoded_is_left_out_of_its_batch(stub):
    samples = batch_of(4)
    samples[1] = {**samples[1], "cpu_usage_percent": float("nan")}
    # The server sees 3 samples and refuses its index 2: the agent's index 3.
    stub.script.append(answer(200, accepted=2, duplicates=0, refused=[{"index": 2, "error": "samples[2].x: bad"}]))
    outcome = transport_for(stub.base).send_batch(samples)
    assert outcome.kind == SENT
    assert [index for index, _ in outcome.refused] == [1, 3]
    assert "cannot encode the sample" in outcome.refused[0][1]
    assert body_of(stub.requests[0])["samples"] == [samples[0], samples[2], samples[3]]
    stub.requests.clear()
    outcome = transport_for(stub.base).send_batch([samples[1]])
    assert outcome.kind == REFUSED and outcome.refused[0][0] == 0
    assert stub.requests == []


def test_a_server_that_cannot_read_gzip_gets_plain_bodies_from_then_on(stub, caplog):
    invalid = (400, {}, b'{"ok": false, "error": "body: invalid JSON: ..."}', 0)
    stub.script += [invalid, (200, {}, b'{"ok": true}', 0)]
    transport = transport_for(stub.base)
    big = {**SAMPLE, "disks": [{"device": f"nvme{i}n1", "read_bytes_total": i} for i in range(100)]}
    with caplog.at_level("INFO"):
        assert transport.send(big).kind == SENT
        assert transport.send(big).kind == SENT
    first, again, later = stub.requests
    assert first["headers"]["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in again["headers"] and json.loads(again["body"])["sample"] == big
    assert "Content-Encoding" not in later["headers"]
    assert transport.gzip is False
    assert caplog.text.count("the server does not read gzip-compressed bodies") == 1


def test_a_refused_compressed_sample_is_not_sent_twice_once_gzip_is_known_to_work(stub):
    transport = transport_for(stub.base)
    big = {**SAMPLE, "disks": [{"device": f"nvme{i}n1", "read_bytes_total": i} for i in range(100)]}
    stub.script += [(200, {}, b'{"ok": true}', 0), (400, {}, b'{"ok": false, "error": "sample: bad"}', 0)]
    assert transport.send(big).kind == SENT
    outcome = transport.send(big)
    assert (outcome.kind, outcome.message) == (REFUSED, "HTTP 400: sample: bad")
    assert len(stub.requests) == 2 and transport.gzip is True


def test_a_compressed_batch_a_server_without_batches_refuses_is_tried_once_plain(stub):
    # Both answers say "no batches": gzip may be fine, and stays on.
    no_batches = (400, {}, b'{"ok": false, "error": "sample: has none of the known metric fields"}', 0)
    stub.script += [no_batches, no_batches]
    transport = transport_for(stub.base)
    assert transport.send_batch(batch_of(60)).kind == UNSUPPORTED
    assert [r["headers"].get("Content-Encoding") for r in stub.requests] == ["gzip", None]
    assert transport.gzip is True
