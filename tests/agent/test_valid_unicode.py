"""Names Python could not decode reach the agent as lone surrogates ('\\udcff' for the byte 0xff):
a process, a GPU, the hostname, a label from the command line. What the agent sends is valid
UTF-8 JSON all the same, with U+FFFD where the bytes were not UTF-8."""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime

import pytest

from tests.agent import recorded
from tests.agent.fake_nvml import FakeNVML, a100
from tests.agent.test_transport import Stub
from trainwatch_agent import values
from trainwatch_agent.collectors import Sampler
from trainwatch_agent.config import load
from trainwatch_agent.transport import SENT, Transport, agent_info, encode

T0 = datetime(2026, 2, 26, 2, 37, 49, 120000, tzinfo=UTC)
# A JSON escape of a UTF-16 surrogate: what the server cannot store.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")


@pytest.fixture
def undecodable(recorded_psutil, monkeypatch):
    """A node whose process 4242, first GPU, hostname and rack label have undecodable bytes."""
    monkeypatch.setitem(recorded.PROCESSES, 4242, ("sl\udcffep", "alice"))
    monkeypatch.setattr(socket, "gethostname", lambda: "node-\udcfe\udcff")
    sampler = Sampler(nvml=FakeNVML([a100(name="NVIDIA A100 \udcff")]), clock=lambda: T0)
    sampler.start()
    labels = load(["--once", "--label", "rack=r\udcff1", "--label", "z\udcffne=b"], {}).labels
    return sampler.sample(), agent_info(labels)


def assert_valid(body: bytes) -> dict:
    body.decode("utf-8")  # strict: raises on anything that is not UTF-8
    assert not SURROGATE_ESCAPE.search(body), body
    return json.loads(body)


def test_the_encoded_body_is_valid_utf8_with_replacement_characters(undecodable):
    sample, agent = undecodable
    body = assert_valid(encode(sample, agent))
    gpu = body["sample"]["gpus"][0]
    assert gpu["name"] == "NVIDIA A100 \ufffd"
    assert [p["name"] for p in gpu["processes"] if p["pid"] == 4242] == ["sl\ufffdep"]
    assert body["agent"]["hostname"] == "node-\ufffd\ufffd"
    assert body["agent"]["labels"] == {"rack": "r\ufffd1", "z\ufffdne": "b"}


def test_the_server_receives_valid_utf8(undecodable):
    sample, agent = undecodable
    stub = Stub()
    try:
        transport = Transport(f"{stub.base}/api/ingest/servers/gpu-box-01/metrics/", "tok-123", agent)
        assert transport.send(sample).kind == SENT
    finally:
        stub.close()
    (request,) = stub.requests
    body = assert_valid(request["body"])
    assert body["sample"]["gpus"][0]["name"] == "NVIDIA A100 \ufffd"


def test_a_spooled_sample_is_repaired_when_it_is_sent(undecodable, tmp_path):
    # The spool keeps the sample as read; the repair happens on the way out, replays included.
    sample, agent = undecodable
    respooled = json.loads(json.dumps(sample))
    assert assert_valid(encode(respooled, agent))["sample"] == assert_valid(encode(sample, agent))["sample"]


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        ("plain", "plain"),
        ("caf\u00e9 \u2603 \U0001f680", "caf\u00e9 \u2603 \U0001f680"),
        ("sl\udcffep", "sl\ufffdep"),
        # UTF-8 bytes decoded as ASCII come back whole: the original bytes were UTF-8.
        ("caf\udcc3\udca9", "caf\u00e9"),
        # A surrogate no decoding made carries no bytes to recover.
        ("a\ud800b", "a\ufffdb"),
    ],
)
def test_each_string_keeps_what_is_valid_and_replaces_the_rest(raw, sent):
    assert values.valid_unicode({raw: [raw, (raw,), 1, None]}) == {sent: [sent, [sent], 1, None]}
