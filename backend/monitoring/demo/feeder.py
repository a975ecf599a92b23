"""The demo fleet kept alive: each demo server's synthetic history goes on in real time, posted
through the ingest API with the server's own token, as an agent would post it, so that the whole
pipeline (ingest, classification, tiers, alerts) runs on it.

A `Feed` continues one server from its newest stored sample: its counters go on growing from
there, and its phases follow timeline.live_schedule, so the bottleneck changes every few minutes.
Samples due while the web process could not take them (not up yet, restarting) wait in memory and
go in batches, oldest first; so does the stretch since the newest stored sample, up to
`catch_up`. While MAX_WAITING wait, a feed makes no more: it goes on from there once they are
posted, so none is lost. `run` posts every feed's due samples until it is told to stop.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests

from .. import catalogue
from ..models import DiskSample, GpuSample, MonitoredServer, Snapshot
from .fleet import DemoServer
from .generator import DISK_COUNTERS, Generator, Row
from .timeline import live_schedule

log = logging.getLogger(__name__)

# What an agent sends of each block: every metric of the catalogue that ingest does not derive.
SENT = {block: catalogue.names(catalogue.columns(block, derived=False)) for block in ("host", "gpu", "disk")}
BATCH = 500  # samples per request at most, as the agent's replay
MAX_WAITING = 5000  # samples made and not posted yet, per server, at most
AGENT_VERSION = "demo-feeder"


def ingest_sample(row: Row) -> dict:
    """A generated row as the agent sends it: `collected_at` and the metrics it reads, per GPU and
    per disk; nothing ingest derives (rates, sums, labels)."""
    sample = {"collected_at": row.at.isoformat(), **{n: row.snapshot[n] for n in SENT["host"] if n in row.snapshot}}
    sample["gpus"] = [{"gpu_index": g["gpu_index"], **{n: g[n] for n in SENT["gpu"] if n in g}} for g in row.gpus]
    sample["disks"] = [{"device": d["device"], **{n: d[n] for n in SENT["disk"] if n in d}} for d in row.disks]
    return sample


@dataclass(frozen=True)
class Resume:
    """Where a server's stored history ends: the newest sample's time and its counters."""

    at: datetime | None
    interval: float
    net: tuple[int | None, int | None] = (None, None)
    disks: dict[str, tuple[int, ...]] | None = None
    energy: dict[int, float] | None = None


def resume_point(server: MonitoredServer, default_interval: float) -> Resume:
    """The newest stored sample of `server` with its counters (None for a server without one)."""
    interval = server.sample_interval_seconds or default_interval
    at = server.latest_snapshot_at
    snapshot = Snapshot.objects.filter(server_id=server.id, collected_at=at).first() if at else None
    if snapshot is None:
        return Resume(None, interval)
    disks = DiskSample.objects.filter(server_id=server.id, collected_at=at)
    gpus = GpuSample.objects.filter(server_id=server.id, collected_at=at)
    return Resume(
        at,
        interval,
        (snapshot.network_rx_bytes_total, snapshot.network_tx_bytes_total),
        {d.device: tuple(getattr(d, name) or 0 for name in DISK_COUNTERS) for d in disks},
        {g.gpu_index: g.energy_joules_total or 0.0 for g in gpus},
    )


class Feed:
    """One demo server's samples from where its stored history ends (or `now`, for one without
    any; at most `catch_up` back), along the live schedule's phases of `phase_seconds` each."""

    def __init__(
        self,
        server: DemoServer,
        token: str,
        resume: Resume,
        now: datetime,
        *,
        phase_seconds: tuple[float, float] = (120.0, 300.0),
        catch_up: timedelta = timedelta(hours=24),
    ):
        self.server, self.token = server, token
        # The server id only goes into rows for the database; samples do not carry one.
        generator = Generator(
            0, server.gpus, server.disks, resume.interval, seed=server.seed, gpu_model=server.gpu_model
        )
        generator.resume(resume.net, resume.disks or {}, resume.energy or {})
        start = now if resume.at is None else resume.at + timedelta(seconds=resume.interval)
        start = max(start, now - catch_up)
        # Its own random stream for the phases: the samples' numbers do not shift their lengths.
        phases = live_schedule(start, random.Random(f"{server.slug}:{server.seed}"), phase_seconds)
        self._rows = generator.along(phases, start)
        self._next = next(self._rows)
        self.waiting: list[dict] = []
        self.labels: list[str] = []  # the phases' labels of the samples taken so far (for tests and logs)

    @property
    def next_at(self) -> datetime:
        return self._next.at

    def collect(self, now: datetime) -> int:
        """Take the samples collected up to `now` into `waiting`, up to MAX_WAITING; how many."""
        taken = 0
        while self._next.at <= now and len(self.waiting) < MAX_WAITING:
            self.waiting.append(ingest_sample(self._next))
            self.labels.append(self._next.phase.label)
            self._next = next(self._rows)
            taken += 1
        return taken


class Poster:
    """Posts a server's samples as one batch to the ingest API, with its token."""

    def __init__(self, url: str, session: requests.Session | None = None, timeout: float = 10.0):
        self.url, self.timeout = url.rstrip("/"), timeout
        self.session = session or requests.Session()

    def post(self, feed: Feed, samples: Sequence[dict]) -> requests.Response:
        body = {
            "samples": list(samples),
            "agent": {"version": AGENT_VERSION, "hostname": feed.server.slug, "labels": {"source": "demo"}},
        }
        return self.session.post(
            f"{self.url}/api/ingest/servers/{feed.server.slug}/metrics/",
            json=body,
            headers={"X-Monitoring-Token": feed.token, "Accept": "application/json"},
            timeout=self.timeout,
        )


def flush(feed: Feed, poster: Poster) -> bool:
    """Post what waits, oldest first, in batches. False when the web process did not take them
    (down, busy): they wait for the next try. A refusal (a 4xx) drops them, said in the log."""
    while feed.waiting:
        batch = feed.waiting[:BATCH]
        try:
            response = poster.post(feed, batch)
        except requests.RequestException as exc:
            log.warning("%s: ingest unreachable (%s); %d samples wait", feed.server.slug, exc, len(feed.waiting))
            return False
        if response.status_code >= 500 or response.status_code in (408, 429):
            log.warning("%s: ingest answered %d; %d samples wait", feed.server.slug, response.status_code, len(batch))
            return False
        if response.status_code != 200:
            log.error("%s: ingest refused %d samples: %s", feed.server.slug, len(batch), response.text[:300])
        else:
            refused = response.json().get("refused") or []
            for item in refused[:3]:
                log.error("%s: ingest refused a sample: %s", feed.server.slug, item.get("error"))
        del feed.waiting[: len(batch)]
    return True


def run(
    feeds: Sequence[Feed],
    poster: Poster,
    stop: threading.Event,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Post every feed's samples as they fall due, until `stop` is set."""
    while not stop.is_set():
        behind = False
        for feed in feeds:
            feed.collect(clock())
            # Posted, and more are due (a catch-up longer than MAX_WAITING): on at once.
            behind |= flush(feed, poster) and feed.next_at <= clock()
        if behind:
            continue
        # Until the next sample is due; a retry at least every 5 s while some wait.
        wait = (min(feed.next_at for feed in feeds) - clock()).total_seconds()
        if any(feed.waiting for feed in feeds):
            wait = min(wait, 5.0)
        stop.wait(max(0.05, wait))
