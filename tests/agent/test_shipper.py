"""Delivery: live samples first, the spool replayed oldest first, the right fate for each answer."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta

import pytest

from trainwatch_agent.backoff import Backoff
from trainwatch_agent.shipper import Shipper
from trainwatch_agent.spool import Spool
from trainwatch_agent.transport import CONFIG, REFUSED, RETRY, SENT, Outcome

T0 = datetime(2026, 2, 26, 2, 37, 49, tzinfo=UTC)


def sample(i: int) -> dict:
    return {"collected_at": (T0 + timedelta(seconds=2 * i)).isoformat(), "i": i}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeTransport:
    """The server: answers with `outcome` (a kind, or an Outcome) and keeps what it accepted, in order."""

    def __init__(self):
        self.outcome: str | Outcome = SENT
        self.stored: list[int] = []
        self.attempts = 0

    def send(self, s: dict) -> Outcome:
        self.attempts += 1
        outcome = self.outcome if isinstance(self.outcome, Outcome) else Outcome(self.outcome, None, "msg")
        if outcome.kind == SENT:
            self.stored.append(s["i"])
        return outcome


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def server():
    return FakeTransport()


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "spool", max_samples=1000)
    s.open()
    yield s
    s.close()


@pytest.fixture
def shipper(server, spool, clock):
    return Shipper(server, spool, Backoff(base=1.0, cap=8.0, clock=clock, rng=random.Random(0)), replay_batch=5)


def tick(shipper: Shipper, i: int) -> None:
    """What the shipper thread does for one live sample: deliver it, then replay a batch."""
    shipper.deliver(sample(i))
    shipper.replay()


def test_samples_taken_while_the_server_is_down_arrive_in_order_once_it_is_back(shipper, server, spool, clock):
    tick(shipper, 0)
    server.outcome = RETRY
    for i in range(1, 13):
        tick(shipper, i)
        clock.now += 2
    assert len(spool) == 12
    assert server.stored == [0]
    server.outcome = SENT
    clock.now += 60  # past any backoff
    for i in range(13, 16):
        tick(shipper, i)
    # Each tick: the live sample first, then up to 5 spooled ones, oldest first.
    assert server.stored == [0, 13, 1, 2, 3, 4, 5, 14, 6, 7, 8, 9, 10, 15, 11, 12]
    assert len(spool) == 0
    assert shipper.stats.sent == 16 and shipper.stats.replayed == 12 and shipper.stats.spooled == 12


def test_it_does_not_knock_while_backing_off(shipper, server, spool, clock):
    server.outcome = RETRY
    tick(shipper, 0)
    assert server.attempts == 1
    tick(shipper, 1)  # within the first wait (0.5..1 s): spooled without a try
    assert server.attempts == 1
    assert len(spool) == 2
    clock.now += 1.01
    tick(shipper, 2)
    assert server.attempts == 2


def test_it_honours_the_servers_retry_after(shipper, server, spool, clock):
    server.outcome = Outcome(RETRY, 503, "HTTP 503: the database is unavailable", retry_after=20.0)
    tick(shipper, 0)
    server.outcome = SENT
    for i in range(1, 10):
        clock.now += 2
        tick(shipper, i)
    assert server.attempts == 1 + 0  # nothing before 20 s
    assert server.stored == []
    clock.now += 2.5
    tick(shipper, 10)
    assert server.stored[:6] == [10, 0, 1, 2, 3, 4]


def test_a_refused_sample_is_dropped_not_spooled(shipper, server, spool, caplog):
    server.outcome = REFUSED
    with caplog.at_level(logging.WARNING):
        tick(shipper, 0)
        tick(shipper, 1)
    assert len(spool) == 0
    assert shipper.stats.refused == 2
    assert "the server refused the sample of 2026-02-26T02:37:49+00:00, which is dropped: msg" in caplog.text
    assert caplog.text.count("refused the sample") == 1  # once a minute
    server.outcome = SENT
    tick(shipper, 2)
    assert server.stored == [2]


def test_a_spooled_sample_the_server_refuses_is_removed_from_the_spool(shipper, server, spool):
    spool.put(sample(0))
    spool.put(sample(1))
    server.outcome = REFUSED
    shipper.replay()
    assert len(spool) == 0
    assert shipper.stats.refused == 2


def test_a_wrong_token_keeps_every_sample_and_says_so_once_a_minute(shipper, server, spool, clock, caplog):
    server.outcome = Outcome(CONFIG, 401, "HTTP 401: invalid ingest token for this server")
    with caplog.at_level(logging.ERROR):
        for i in range(20):
            clock.now += 2
            tick(shipper, i)
    assert len(spool) == 20
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "the server refuses this agent (HTTP 401: invalid ingest token for this server)" in errors[0].message
    assert "check --url, --server and the token" in errors[0].message
    server.outcome = SENT
    clock.now += 60
    for i in range(20, 25):
        tick(shipper, i)
    assert sorted(server.stored) == list(range(25))
    assert len(spool) == 0


def test_a_live_sample_waiting_interrupts_the_replay(shipper, server, spool):
    for i in range(5):
        spool.put(sample(i))
    shipper.submit(sample(9))  # the shipper thread is not running: it waits in the outbox
    shipper.replay()
    assert server.stored == []


def test_samples_piling_up_behind_a_stuck_server_go_to_the_spool(server, spool, clock):
    shipper = Shipper(server, spool, Backoff(clock=clock), max_outbox=3)
    for i in range(5):
        shipper.submit(sample(i))  # the thread is not running: as if stuck in a request
    assert len(spool) == 2
    assert shipper.stats.spooled == 2


def test_stopping_delivers_what_waits_and_spools_the_rest(server, spool, clock):
    shipper = Shipper(server, spool, Backoff(clock=clock))
    shipper.start()
    shipper.submit(sample(0))
    shipper.stop(timeout=5)
    assert server.stored == [0]
    server.outcome = RETRY
    again = Shipper(server, spool, Backoff(clock=clock))
    again.start()
    again.submit(sample(1))
    again.submit(sample(2))
    again.stop(timeout=5)
    assert len(spool) == 2


def test_an_unexpected_error_while_sending_keeps_the_sample_and_the_shipper_alive(server, spool, clock, caplog):
    calls = {"n": 0}

    def flaky_send(s):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug")
        return FakeTransport.send(server, s)

    server.send = flaky_send
    shipper = Shipper(server, spool, Backoff(clock=clock))
    shipper.start()
    shipper.submit(sample(0))
    shipper.submit(sample(1))
    shipper.stop(timeout=5)
    assert "unexpected error while delivering a sample" in caplog.text
    # Sample 0 was kept (and maybe already replayed), sample 1 went through after the bug.
    assert 1 in server.stored
    assert sorted(server.stored + ([0] if len(spool) else [])) == [0, 1]
