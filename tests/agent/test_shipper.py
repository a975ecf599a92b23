"""Delivery: live samples first, the spool replayed oldest first, the right fate for each answer."""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from trainwatch_agent.backoff import Backoff
from trainwatch_agent.shipper import Shipper
from trainwatch_agent.spool import Spool
from trainwatch_agent.transport import CONFIG, REFUSED, RETRY, SENT, TOO_LARGE, UNSUPPORTED, Outcome

T0 = datetime(2026, 2, 26, 2, 37, 49, tzinfo=UTC)


def sample(i: int) -> dict:
    return {"collected_at": (T0 + timedelta(seconds=2 * i)).isoformat(), "i": i}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeTransport:
    """The server: answers with `outcome` (a kind, or an Outcome) and keeps what it accepted, in order.

    `script` answers the next requests first. Batches: more than `max_batch` samples is 413; with
    `takes_batches` off it answers as a server without batches does. Samples whose "i" is in
    `refuse` are refused (named in a batch's answer).
    """

    def __init__(self):
        self.outcome: str | Outcome = SENT
        self.script: list[str | Outcome] = []
        self.stored: list[int] = []
        self.attempts = 0
        self.requests: list[tuple[str, int]] = []  # ("single", 1) or ("batch", samples)
        self.max_batch: int | None = None
        self.takes_batches = True
        self.refuse: set[int] = set()

    def _next(self) -> Outcome:
        outcome = self.script.pop(0) if self.script else self.outcome
        return outcome if isinstance(outcome, Outcome) else Outcome(outcome, None, "msg")

    def send(self, s: dict) -> Outcome:
        self.attempts += 1
        self.requests.append(("single", 1))
        outcome = self._next()
        if outcome.kind == SENT:
            if s["i"] in self.refuse:
                return Outcome(REFUSED, 400, f"HTTP 400: sample {s['i']} is wrong")
            self.stored.append(s["i"])
        return outcome

    def send_batch(self, samples: list[dict]) -> Outcome:
        self.attempts += 1
        self.requests.append(("batch", len(samples)))
        if not self.takes_batches:
            return Outcome(UNSUPPORTED, 400, "HTTP 400: sample: has none of the known metric fields")
        if self.max_batch is not None and len(samples) > self.max_batch:
            return Outcome(TOO_LARGE, 413, "HTTP 413: body is larger than 1048576 bytes")
        outcome = self._next()
        if outcome.kind == REFUSED:
            return Outcome(REFUSED, 400, "msg", refused=[(k, "msg") for k in range(len(samples))])
        if outcome.kind != SENT:
            return outcome
        refused = [(k, f"samples[{k}].i: {s['i']} is wrong") for k, s in enumerate(samples) if s["i"] in self.refuse]
        if len(refused) == len(samples):
            return Outcome(REFUSED, 400, "HTTP 400: every sample refused", refused=refused)
        self.stored += [s["i"] for s in samples if s["i"] not in self.refuse]
        return Outcome(SENT, 200, accepted=len(samples) - len(refused), refused=refused)


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
    # Each tick: the live sample first, then up to 5 spooled ones in one request, oldest first.
    assert server.stored == [0, 13, 1, 2, 3, 4, 5, 14, 6, 7, 8, 9, 10, 15, 11, 12]
    assert server.requests[-6:] == [
        ("single", 1),
        ("batch", 5),
        ("single", 1),
        ("batch", 5),
        ("single", 1),
        ("batch", 2),
    ]
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


# --- batches ---


def fill(spool: Spool, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        spool.put(sample(i))


def test_the_spool_is_replayed_in_batches_oldest_first(server, spool, clock):
    shipper = Shipper(server, spool, Backoff(clock=clock), replay_batch=400)
    fill(spool, 1000)
    for _ in range(3):
        shipper.replay()
    assert server.requests == [("batch", 400), ("batch", 400), ("batch", 200)]
    assert server.stored == list(range(1000))
    assert len(spool) == 0
    assert (shipper.stats.sent, shipper.stats.replayed, shipper.stats.refused) == (1000, 1000, 0)
    shipper.replay()  # nothing left: no request
    assert len(server.requests) == 3


def test_a_batch_too_large_is_sent_again_in_halves_for_the_rest_of_that_replay(server, spool, clock):
    shipper = Shipper(server, spool, Backoff(clock=clock), replay_batch=10)
    server.max_batch = 3
    fill(spool, 20)
    shipper.replay()
    # 10 is too many, 5 too: 2 at a time for the rest of this replay.
    assert server.requests == [("batch", 10), ("batch", 5)] + [("batch", 2)] * 5
    assert server.stored == list(range(10))
    server.requests.clear()
    shipper.replay()  # the next replay tries the whole size again
    assert server.requests[:2] == [("batch", 10), ("batch", 5)]
    assert server.stored == list(range(20))
    assert len(spool) == 0 and shipper.stats.replayed == 20 and shipper.stats.refused == 0


def test_a_single_sample_too_large_for_the_server_is_dropped(server, spool, clock, caplog):
    shipper = Shipper(server, spool, Backoff(clock=clock), replay_batch=4)
    server.max_batch = 0  # not even one sample fits
    fill(spool, 2)
    with caplog.at_level(logging.WARNING):
        shipper.replay()
    assert server.requests == [("batch", 2), ("batch", 1), ("batch", 1)]
    assert len(spool) == 0
    assert shipper.stats.refused == 2 and shipper.stats.sent == 0
    assert "which is dropped: HTTP 413: body is larger than 1048576 bytes" in caplog.text


def test_refused_samples_of_a_batch_are_dropped_and_never_sent_again(server, spool, clock, caplog):
    shipper = Shipper(server, spool, Backoff(clock=clock), replay_batch=10)
    server.refuse = {1, 3}
    fill(spool, 6)
    with caplog.at_level(logging.WARNING):
        shipper.replay()
        shipper.replay()
    assert server.requests == [("batch", 6)]
    assert server.stored == [0, 2, 4, 5]
    assert len(spool) == 0
    assert (shipper.stats.sent, shipper.stats.replayed, shipper.stats.refused) == (4, 4, 2)
    assert "the server refused the sample of 2026-02-26T02:37:51+00:00, which is dropped: samples[1].i" in caplog.text
    assert caplog.text.count("refused the sample") == 1  # once a minute


def test_a_batch_refused_whole_is_dropped(server, spool, clock):
    shipper = Shipper(server, spool, Backoff(clock=clock), replay_batch=10)
    server.refuse = {0, 1, 2}
    fill(spool, 3)
    shipper.replay()
    assert server.requests == [("batch", 3)]
    assert len(spool) == 0
    assert (shipper.stats.sent, shipper.stats.refused) == (0, 3)
    assert shipper.backoff.failures == 0  # an answer, not a failure


def test_a_batch_the_server_cannot_take_now_stays_in_the_spool(server, spool, clock):
    shipper = Shipper(server, spool, Backoff(base=1.0, clock=clock), replay_batch=10)
    fill(spool, 4)
    server.outcome = Outcome(RETRY, 503, "HTTP 503: the database is unavailable", retry_after=5.0)
    shipper.replay()
    assert len(spool) == 4 and server.requests == [("batch", 4)]
    shipper.replay()  # backing off: no try
    assert len(server.requests) == 1
    server.outcome = SENT
    clock.now += 5.0
    shipper.replay()
    assert server.stored == [0, 1, 2, 3] and len(spool) == 0
    assert (shipper.stats.sent, shipper.stats.replayed, shipper.stats.spooled) == (4, 4, 0)


def test_a_server_without_batches_gets_one_sample_per_request_from_then_on(server, spool, clock, caplog):
    shipper = Shipper(server, spool, Backoff(clock=clock), replay_batch=5)
    server.takes_batches = False
    fill(spool, 8)
    with caplog.at_level(logging.INFO):
        shipper.replay()
        assert server.requests == [("batch", 5)] + [("single", 1)] * 5  # that batch again, one by one
        shipper.replay()
    assert server.requests[6:] == [("single", 1)] * 3
    assert server.stored == list(range(8))
    assert len(spool) == 0 and shipper.batches is False
    assert (shipper.stats.sent, shipper.stats.replayed) == (8, 8)
    assert caplog.text.count("the server does not take batches of samples") == 1
    fallback = [r for r in caplog.records if "does not take batches" in r.message]
    assert fallback[0].levelno == logging.INFO
    assert "HTTP 400: sample: has none of the known metric fields" in fallback[0].message
    # Live batches too.
    shipper.deliver_batch([sample(8), sample(9)])
    assert server.requests[-2:] == [("single", 1), ("single", 1)]
    assert server.stored[-2:] == [8, 9]


def test_replaying_one_by_one_stops_at_the_first_failure(server, spool, clock):
    shipper = Shipper(server, spool, Backoff(clock=clock), replay_batch=5)
    server.takes_batches = False
    server.script = [SENT, RETRY]
    fill(spool, 5)
    shipper.replay()
    assert server.requests == [("batch", 5), ("single", 1), ("single", 1)]
    assert server.stored == [0]
    assert len(spool) == 4 and shipper.stats.sent == 1


def test_a_live_sample_waiting_interrupts_a_replay_between_requests(server, spool, clock):
    shipper = Shipper(server, spool, Backoff(clock=clock), replay_batch=10)
    server.max_batch = 5
    fill(spool, 10)

    def first_half_then_a_live_sample(samples):
        outcome = FakeTransport.send_batch(server, samples)
        if outcome.kind == SENT:
            shipper.submit(sample(99))
        return outcome

    server.send_batch = first_half_then_a_live_sample
    shipper.replay()
    assert server.requests == [("batch", 10), ("batch", 5)]
    assert len(spool) == 5


# --- live samples in batches (--batch-seconds) ---


def test_live_samples_are_held_for_batch_seconds_then_sent_together(server, spool, clock):
    shipper = Shipper(server, spool, Backoff(clock=clock), replay_batch=2, batch_seconds=10, clock=clock)
    for i in range(5):
        shipper.submit(sample(i))  # the thread is not running: they wait in the outbox
    with shipper._cond:
        # At most replay_batch at a time; what is left waits for its time.
        assert [s["i"] for s in shipper._take_live()] == [0, 1]
        assert [s["i"] for s in shipper._take_live()] == [2, 3]
        assert shipper._take_live() is None
        assert shipper._wait_time() == 10.0
        clock.now += 9.9
        assert shipper._take_live() is None
        clock.now += 0.1
        assert [s["i"] for s in shipper._take_live()] == [4]
        assert shipper._take_live() is None
        assert shipper._wait_time() is None  # nothing held: sleep until a sample comes


def test_batch_seconds_sends_live_samples_in_one_request(server, spool):
    shipper = Shipper(server, spool, Backoff(), batch_seconds=3600)
    shipper.start()
    for i in range(5):
        shipper.submit(sample(i))
    shipper.stop(timeout=5)  # stopping sends what is held
    assert server.requests == [("batch", 5)]
    assert server.stored == [0, 1, 2, 3, 4]
    assert (shipper.stats.sent, shipper.stats.replayed, shipper.stats.spooled) == (5, 0, 0)


def test_held_samples_go_once_their_time_is_up(server, spool):
    shipper = Shipper(server, spool, Backoff(), batch_seconds=0.2)
    shipper.start()
    try:
        started = time.monotonic()
        shipper.submit(sample(0))
        deadline = started + 10
        while not server.stored and time.monotonic() < deadline:
            time.sleep(0.01)
        assert time.monotonic() - started >= 0.2
    finally:
        shipper.stop(timeout=5)
    assert server.requests == [("batch", 1)]
    assert server.stored == [0]


def test_a_live_batch_that_cannot_go_now_is_spooled(server, spool, clock):
    shipper = Shipper(server, spool, Backoff(base=1.0, clock=clock), batch_seconds=10, clock=clock)
    server.outcome = RETRY
    shipper.deliver_batch([sample(i) for i in range(3)])
    assert len(spool) == 3 and server.requests == [("batch", 3)]
    shipper.deliver_batch([sample(i) for i in range(3, 6)])  # backing off: no try
    assert len(spool) == 6 and len(server.requests) == 1
    assert (shipper.stats.sent, shipper.stats.spooled) == (0, 6)
    server.outcome = SENT
    clock.now += 5
    shipper.replay()
    assert server.stored == list(range(6))
    assert (shipper.stats.sent, shipper.stats.replayed) == (6, 6)


def test_a_live_batch_split_by_413_spools_what_the_failure_left(server, spool, clock):
    shipper = Shipper(server, spool, Backoff(clock=clock), batch_seconds=10, clock=clock)
    server.max_batch = 2
    server.script = [SENT, RETRY]
    shipper.deliver_batch([sample(i) for i in range(5)])
    assert server.requests == [("batch", 5), ("batch", 2), ("batch", 2)]
    assert server.stored == [0, 1]
    assert len(spool) == 3
    assert (shipper.stats.sent, shipper.stats.spooled, shipper.stats.refused) == (2, 3, 0)
