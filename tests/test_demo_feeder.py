"""The demo fleet (`make run DEMO=1`): its history seeded once with the right GPUs, then kept going
live by the feeder through the real ingest API, with counters that carry on and bottlenecks that
change."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from monitoring.demo import FLEET, Feed, resume_point
from monitoring.models import GpuSample, MonitoredServer, Snapshot, SnapshotLabel
from tests.conftest import ROOT, eventually, process_env
from tests.test_openapi import SPEC, validator_for

pytestmark = pytest.mark.usefixtures("tier_db")

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def seed_fleet(token_dir, days: float = 0.002, interval: float = 10.0) -> None:
    call_command(
        "demo",
        "seed",
        "--token-dir",
        str(token_dir),
        "--days",
        str(days),
        "--interval",
        str(interval),
        "--no-progress",
        stdout=StringIO(),
    )


def test_the_demo_fleet_is_seeded_once_with_its_own_gpus_and_tokens(tmp_path):
    seed_fleet(tmp_path / "demo")
    gpus = {g.server_id: g for g in GpuSample.objects.filter(gpu_index=0).order_by("collected_at")}
    by_slug = {s.slug: s for s in MonitoredServer.objects.all()}
    assert set(by_slug) == {d.slug for d in FLEET}
    h100 = gpus[by_slug["demo-h100-01"].id]
    assert h100.name == "NVIDIA H100 80GB HBM3"
    assert h100.power_limit_w == 700.0 and h100.memory_total_bytes == 81559 * 2**20
    assert h100.sm_clock_max_mhz == 1980.0 and h100.memory_clock_max_mhz == 2619.0
    assert 0 < h100.power_w <= 700.0
    for slug in ("demo-a100-01", "demo-a100-02"):
        a100 = gpus[by_slug[slug].id]
        assert a100.name == "NVIDIA A100-SXM4-80GB" and a100.power_limit_w == 400.0
        assert a100.sm_clock_max_mhz == 1410.0

    # Each server's own token, readable by its owner only, and it opens that server's ingest only.
    tokens = {}
    for demo in FLEET:
        path = tmp_path / "demo" / demo.slug
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        tokens[demo.slug] = path.read_text().strip()
        assert by_slug[demo.slug].check_token(tokens[demo.slug])
    assert len(set(tokens.values())) == len(FLEET)

    # A second run seeds nothing and keeps the tokens.
    counts = {s.slug: s.snapshot_count for s in MonitoredServer.objects.all()}
    seed_fleet(tmp_path / "demo")
    assert {s.slug: s.snapshot_count for s in MonitoredServer.objects.all()} == counts
    assert all(MonitoredServer.objects.get(slug=s).check_token(t) for s, t in tokens.items())


def test_a_feed_goes_on_from_the_stored_history_in_valid_ingest_bodies(tmp_path):
    seed_fleet(tmp_path / "demo")
    demo = FLEET[2]
    server = MonitoredServer.objects.get(slug=demo.slug)
    last = Snapshot.objects.get(server_id=server.id, collected_at=server.latest_snapshot_at)
    token = (tmp_path / "demo" / demo.slug).read_text().strip()
    start = datetime.now(UTC)
    feed = Feed(demo, token, resume_point(server, demo.interval), start)
    assert feed.next_at == server.latest_snapshot_at + timedelta(seconds=10)
    feed.collect(start + timedelta(minutes=40))
    samples = feed.waiting
    assert len(samples) >= 40 * 6

    # What an agent sends: the request schema of docs/openapi.yaml, nothing ingest derives.
    validator = validator_for(SPEC["components"]["schemas"]["IngestBatch"])
    validator.validate({"samples": samples})
    assert "network_rx_bps" not in samples[0] and "energy_w" not in samples[0]["gpus"][0]
    assert samples[0]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"

    # Counters go on from the stored ones and only grow.
    rx = [s["network_rx_bytes_total"] for s in samples]
    assert rx[0] > last.network_rx_bytes_total and rx == sorted(rx)
    for key in ("read_bytes_total", "busy_time_ms_total"):
        series = [s["disks"][0][key] for s in samples]
        assert series == sorted(series)
    energy = [s["gpus"][3]["energy_joules_total"] for s in samples]
    assert energy == sorted(energy)

    # The phases change every few minutes: 40 minutes hold several bottlenecks.
    runs = [label for i, label in enumerate(feed.labels) if i == 0 or feed.labels[i - 1] != label]
    assert len(set(feed.labels)) >= 5 and len(runs) >= 8

    # Ingest takes every one of them, with rates derived from the seeded sample before.
    response = Client().post(
        f"/api/ingest/servers/{demo.slug}/metrics/",
        data=json.dumps({"samples": samples[:50]}),
        content_type="application/json",
        HTTP_X_MONITORING_TOKEN=token,
    )
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 50 and response.json()["refused"] == []
    first = Snapshot.objects.get(server_id=server.id, collected_at=feed_time(samples[0]))
    assert first.network_rx_bps is not None and first.disk_util_percent is not None


def feed_time(sample: dict) -> datetime:
    return datetime.fromisoformat(sample["collected_at"])


def test_a_feed_fills_a_gap_up_to_its_catch_up_and_no_further(tmp_path):
    seed_fleet(tmp_path / "demo")
    demo = FLEET[0]
    server = MonitoredServer.objects.get(slug=demo.slug)
    resume = resume_point(server, demo.interval)
    later = server.latest_snapshot_at + timedelta(hours=3)
    feed = Feed(demo, "token", resume, later, catch_up=timedelta(hours=1))
    assert feed.next_at == later - timedelta(hours=1)
    # A server without history starts now.
    fresh = Feed(demo, "token", resume_point(MonitoredServer(slug="new"), demo.interval), NOW)
    assert fresh.next_at == NOW


@pytest.mark.e2e
def test_the_feeder_keeps_the_demo_fleet_live_through_the_pipeline(tmp_path, processes):
    # A short history of a sample a second, then the feeder with phases of ~10 s.
    seed_fleet(tmp_path / "demo", days=0.002, interval=1)
    seeded_until = {s.slug: s.latest_snapshot_at for s in MonitoredServer.objects.all()}
    env = process_env()
    base = processes.web(env)
    processes.worker(env)
    feeder = processes.start(
        "feeder",
        [sys.executable, str(ROOT / "backend" / "manage.py"), "demo", "feed", "--url", base]
        + ["--token-dir", str(tmp_path / "demo"), "--phase-seconds", "9", "11"],
        env,
    )

    def fed_labels(slug: str) -> list[str]:
        return list(
            SnapshotLabel.objects.filter(server__slug=slug, collected_at__gt=seeded_until[slug])
            .order_by("collected_at")
            .values_list("label", flat=True)
        )

    def all_changing() -> bool:
        return all(len(set(fed_labels(d.slug))) >= 2 for d in FLEET)

    eventually(all_changing, timeout=90, interval=1, message="every demo server's fed samples in two labels")
    for demo in FLEET:
        server = MonitoredServer.objects.get(slug=demo.slug)
        assert server.last_agent_version == "demo-feeder" and server.agent_labels == {"source": "demo"}
        # Live: the newest sample is seconds old, and fed samples continue the seeded ones' counters.
        assert (datetime.now(UTC) - server.latest_snapshot_at).total_seconds() < 10
        fed = Snapshot.objects.filter(server=server, collected_at__gt=seeded_until[demo.slug]).order_by("collected_at")
        assert fed[0].network_rx_bps is not None
    h100 = MonitoredServer.objects.get(slug="demo-h100-01")
    newest = GpuSample.objects.filter(server_id=h100.id, collected_at=h100.latest_snapshot_at).first()
    assert newest.name == "NVIDIA H100 80GB HBM3"

    # SIGTERM stops it at once, cleanly.
    os.killpg(feeder.pid, signal.SIGTERM)
    assert feeder.wait(10) == 0
    assert "Stopped." in feeder.log_path.read_text()
