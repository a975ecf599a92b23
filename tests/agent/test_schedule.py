"""The sampling schedule: steady on the monotonic clock, no drift, missed ticks skipped, not burst."""

from __future__ import annotations

import threading
import time

from trainwatch_agent.schedule import Schedule


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_ticks_stay_on_the_grid_whatever_each_sample_costs():
    clock = Clock()
    schedule = Schedule(2.0, clock=clock)
    dues = []
    for cost in (0.3, 1.9, 0.0, 0.7):
        due = schedule.next_due()
        dues.append(due)
        clock.now = due + cost  # sleep until due, then spend `cost` sampling
    assert dues == [1002.0, 1004.0, 1006.0, 1008.0]


def test_missed_ticks_are_skipped_not_taken_in_a_burst():
    clock = Clock()
    schedule = Schedule(2.0, clock=clock)
    clock.now = schedule.next_due() + 7.1  # a sample (or a suspend) took 7.1 s: ticks at 1004, 1006, 1008 missed
    assert schedule.next_due() == 1010.0
    assert schedule.skipped == 3
    clock.now = 1010.0
    assert schedule.next_due() == 1012.0


def test_it_stops_waiting_as_soon_as_asked():
    stop = threading.Event()
    schedule = Schedule(30.0)
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert schedule.wait(stop) is False
    assert time.monotonic() - started < 5
