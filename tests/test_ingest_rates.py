"""Rates from the counters a web process holds: the same figures as reading the previous sample
back, across batches, gaps, counter resets, late samples, restarts and another process's writes;
and no read of the previous sample in the steady state."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.db import connection

from monitoring import catalogue
from monitoring.ingest import store
from monitoring.models import MonitoredServer
from tests import samples
from tests.conftest import register

T0 = samples.utc(2026, 3, 1, 12, 0, 0)
DERIVED = {block: [m.name for m in catalogue.columns(block, derived=True)] for block in ("host", "gpu", "disk")}
TABLES = {"host": "monitoring_snapshot", "gpu": "monitoring_gpusample", "disk": "monitoring_disksample"}
KEYS = {"host": "", "gpu": ", gpu_index", "disk": ", device"}


class Walk:
    """One node's samples: counters that grow by random amounts, now and then a reboot (they
    start over), a GPU or a disk that comes and goes, and gaps longer than rates bridge."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.at = T0
        self.net = [10**11, 10**10]
        self.energy = [4.0e8, 4.1e8]
        self.disks = {"nvme0n1": [10**11, 10**10, 10**6, 10**5, 10**6], "sda": [10**9, 10**8, 10**5, 10**4, 10**5]}

    def next(self) -> dict:
        rng = self.rng
        self.at += timedelta(seconds=rng.choice([2, 2, 2, 3, 400]))  # 400 s: beyond the rates' gap
        if rng.random() < 0.05:  # a reboot: counters start over
            self.net = [0, 0]
            self.disks = {d: [0] * 5 for d in self.disks}
        self.net = [v + rng.randrange(10**6, 10**8) for v in self.net]
        self.energy = [v + rng.uniform(100, 900) for v in self.energy]
        for totals in self.disks.values():
            for i in range(5):
                totals[i] += rng.randrange(0, 10**7 if i < 2 else 2000)
        body = samples.sample(self.at, gpus=0, disks=0)
        body["network_rx_bytes_total"], body["network_tx_bytes_total"] = self.net
        gpus = 2 if rng.random() < 0.9 else 1
        body["gpus"] = [samples.gpu(i, energy_joules_total=self.energy[i]) for i in range(gpus)]
        devices = list(self.disks) if rng.random() < 0.9 else list(self.disks)[:1]
        body["disks"] = [
            dict(
                zip(
                    (
                        "read_bytes_total",
                        "write_bytes_total",
                        "read_count_total",
                        "write_count_total",
                        "busy_time_ms_total",
                    ),
                    self.disks[d],
                ),
                device=d,
            )
            for d in devices
        ]
        return body


def requests(seed: int) -> list[list[dict]]:
    """What an agent posts: mostly one sample, sometimes a batch, sometimes an older one late."""
    walk, out = Walk(seed), []
    for _ in range(70):
        size = walk.rng.randint(2, 6) if walk.rng.random() < 0.15 else 1
        out.append([walk.next() for _ in range(size)])
    # Late ones: samples held back, then sent after newer ones (as a replayed spool is).
    for i in (5, 20, 40):
        late = out.pop(i)
        out.append(late)
    return out


def at(sample: dict):
    return datetime.fromisoformat(sample["collected_at"])


def post(ingest, node, batch: list[dict]):
    payload = {"sample": batch[0]} if len(batch) == 1 else {"samples": batch}
    response = ingest.send(node, payload)
    assert response.status_code == 200, response.text


def derived_rows(server_id: int) -> dict[str, list[tuple]]:
    rows = {}
    with connection.cursor() as cursor:
        for block, names in DERIVED.items():
            cursor.execute(
                f"SELECT collected_at{KEYS[block]}, {', '.join(names)} FROM {TABLES[block]} "
                f"WHERE server_id = %s ORDER BY collected_at{KEYS[block]}",
                [server_id],
            )
            rows[block] = cursor.fetchall()
    return rows


def test_rates_from_held_counters_equal_rates_read_back(ingest, db, monkeypatch):
    held, read = register("held", "Held"), register("read-back", "Read back")
    reads = []
    real_previous = store._previous
    monkeypatch.setattr(store, "_previous", lambda *a: reads.append(a[1]) or real_previous(*a))
    store._newest.clear()
    sent = requests(seed=7)
    # Where another process writes: a request whose samples lie close to those before and after
    # it, so that the next request's rates would differ if taken from the held (older) counters.
    other = next(n for n in range(45, len(sent) - 1) if at(sent[n + 1][0]) - at(sent[n - 1][-1]) < timedelta(minutes=1))
    for n, batch in enumerate(sent):
        if n == 30:
            store._newest.clear()  # a restart of the web process
        held_before = store._newest.get(held.server.id)
        post(ingest, held, batch)
        if n == other:
            assert held_before is not None
            store._newest[held.server.id] = held_before  # as if another process had written `batch`
        # The other server: always read back from the stored samples (as before counters were held).
        store._newest.pop(read.server.id, None)
        MonitoredServer.objects.filter(pk=read.server.pk).update(latest_counters=None)
        post(ingest, read, batch)
    first, second = derived_rows(held.server.id), derived_rows(read.server.id)
    assert first == second
    # Every derived figure was exercised: rates known, and unknown (first sample, gaps, resets).
    assert any(None not in row for row in first["host"]) and any(None in row for row in first["host"])
    held_reads = [server for server in reads if server == held.server.id]
    # Read back only for the first sample and the late ones (a restart and stale counters take
    # the server row's).
    assert 0 < len(held_reads) <= 4, len(held_reads)
    assert len([server for server in reads if server == read.server.id]) >= 70


def test_steady_samples_read_nothing_back(ingest, box, monkeypatch):
    reads = []
    monkeypatch.setattr(store, "_previous", lambda *a: reads.append(a) or None)
    store._newest.clear()
    walk = Walk(seed=3)
    post(ingest, box, [walk.next()])
    assert len(reads) == 1  # the first: nothing held yet
    for n in range(20):
        if n % 5 == 0:
            store._newest.clear()  # another process, or a restart: the server row holds them
        post(ingest, box, [walk.next()])
    post(ingest, box, [walk.next() for _ in range(5)])
    assert len(reads) == 1
