"""Retry waits: exponential, jittered, capped, and never sooner than the server's Retry-After."""

from __future__ import annotations

import random

from trainwatch_agent.backoff import Backoff


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_waits_double_with_each_failure_up_to_the_cap():
    backoff = Backoff(base=1.0, cap=30.0, clock=Clock(), rng=random.Random(1))
    waits = [backoff.fail() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 16, 30, 30, 30]
    for wait, ceiling in zip(waits, ceilings):
        # Equal jitter: somewhere in the upper half of the ceiling.
        assert ceiling / 2 <= wait <= ceiling


def test_jitter_spreads_nodes_that_failed_together():
    waits = {round(Backoff(cap=30.0, clock=Clock(), rng=random.Random(seed)).fail(), 3) for seed in range(20)}
    assert len(waits) > 10


def test_retry_after_is_a_floor():
    clock = Clock()
    backoff = Backoff(base=1.0, cap=30.0, clock=clock, rng=random.Random(1))
    assert backoff.fail(retry_after=45.0) == 45.0
    assert backoff.retry_at == 145.0
    assert 1 <= backoff.fail(retry_after=0.0) <= 2


def test_it_waits_until_the_retry_time_then_lets_a_try_through():
    clock = Clock()
    backoff = Backoff(base=1.0, cap=30.0, clock=clock)
    assert not backoff.waiting
    wait = backoff.fail()
    assert backoff.waiting
    clock.now += wait + 0.001
    assert not backoff.waiting


def test_a_success_resets_it():
    backoff = Backoff(base=1.0, cap=30.0, clock=Clock())
    for _ in range(6):
        backoff.fail()
    backoff.succeed()
    assert not backoff.waiting
    assert backoff.fail() <= 1.0
