"""manage.py seed_history and manage.py tiers: synthetic history a classifier agrees with, tiers up to date."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from monitoring.catalogue import LABELS
from monitoring.classify.classifier import GpuReading, Reading, classify
from monitoring.demo import Generator
from monitoring.models import MonitoredServer, Workload

pytestmark = pytest.mark.usefixtures("tier_db")


def scalar(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def test_it_seeds_every_label_and_leaves_the_tiers_up_to_date():
    out = StringIO()
    call_command(
        "seed_history",
        "demo-01",
        "--days",
        "2",
        "--interval",
        "10",
        "--gpus",
        "4",
        "--disks",
        "2",
        "--no-progress",
        stdout=out,
    )
    server = MonitoredServer.objects.get(slug="demo-01")
    assert server.snapshot_count == scalar("SELECT count(*) FROM monitoring_snapshot WHERE server_id = %s", [server.id])
    assert 2 * 8640 - 2 <= server.snapshot_count <= 2 * 8640 + 2
    assert scalar("SELECT count(*) FROM monitoring_gpusample") == 4 * server.snapshot_count
    assert scalar("SELECT count(*) FROM monitoring_disksample") == 2 * server.snapshot_count
    labels = {row for row in scalar("SELECT array_agg(DISTINCT label) FROM monitoring_snapshotlabel")}
    assert scalar("SELECT count(*) FROM monitoring_snapshotlabel") == server.snapshot_count
    assert server.unlabelled_from is None
    assert labels == set(LABELS)
    assert scalar("SELECT sum(sample_count) FROM monitoring_snapshot_1m") == server.snapshot_count
    assert scalar("SELECT sum(sample_count) FROM monitoring_snapshot_1h") == server.snapshot_count
    assert server.latest_snapshot_at is not None and server.bottleneck_label in LABELS
    assert "8 bottleneck labels" in out.getvalue()
    # Its runs are workloads of a few users: ranges that never overlap (one run at a time), each
    # GPU process holding only the reference to its run's.
    runs = list(Workload.objects.filter(server=server).order_by("first_seen"))
    assert {w.kind for w in runs} == {"slurm", "kubernetes", "process", "container"}
    assert {w.username for w in runs} >= {"alice", "bob", "carol"}
    assert all(w.gpus == [0, 1, 2, 3] for w in runs)
    assert all(a.last_seen < b.first_seen for a, b in zip(runs, runs[1:]))
    assert (
        scalar(
            "SELECT count(*) FROM monitoring_gpusample, jsonb_array_elements(processes) p "
            "WHERE p->'workload' <> jsonb_build_object('kind', p->'workload'->'kind', 'id', p->'workload'->'id')"
        )
        == 0
    )
    first = runs[0]
    in_run = scalar(
        "SELECT count(*) FROM monitoring_gpusample WHERE collected_at BETWEEN %s AND %s AND processes @> %s::jsonb",
        [first.first_seen, first.last_seen, f'[{{"workload": {{"id": "{first.workload_id}"}}}}]'],
    )
    assert in_run > 0


@pytest.mark.parametrize("hour", range(0, 24, 5))
@pytest.mark.parametrize("day", range(7))
def test_four_hours_of_history_have_every_label_whatever_the_start(day, hour):
    start = datetime(2026, 11, 2, tzinfo=UTC) + timedelta(days=day, hours=hour, minutes=17)  # a Monday on
    rows = Generator(1, 1, 1, 10.0, seed=day + hour).rows(start, start + timedelta(hours=4))
    assert {row.phase.label for row in rows} == set(LABELS)


def test_it_refuses_to_seed_over_existing_samples():
    call_command("seed_history", "demo-02", "--days", "0.1", "--no-progress", stdout=StringIO())
    with pytest.raises(CommandError, match="already has samples"):
        call_command("seed_history", "demo-02", "--days", "0.1", "--no-progress", stdout=StringIO())


def test_the_classifier_agrees_with_the_generated_labels():
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday morning: training runs
    generator = Generator(1, 4, 2, 2.0, seed=random.Random(7).randint(0, 1000))
    rows = list(generator.rows(start, start + timedelta(days=1)))
    agree, seen = Counter(), Counter()
    window: list[Reading] = []
    for row in rows:
        snap = row.snapshot
        gpus = tuple(
            GpuReading(
                g["gpu_index"],
                util=g["utilization_gpu_percent"],
                memory_percent=g["memory_percent"],
                power_w=g["power_w"],
                power_limit_w=g["power_limit_w"],
                throttle_reasons=tuple(g["throttle_reasons"]),
            )
            for g in row.gpus
        )
        reading = Reading(
            at=row.at.timestamp(),
            cpu_usage=snap["cpu_usage_percent"],
            cpu_iowait=snap["cpu_iowait_percent"],
            memory_percent=snap["memory_percent"],
            swap_percent=snap["swap_percent"],
            disk_util=snap["disk_util_percent"],
            gpus=gpus,
        )
        window = [r for r in window if reading.at - r.at <= 40] + [reading]
        seen[row.phase.label] += 1
        agree[row.phase.label] += classify(window).label == row.phase.label
    for label, count in seen.items():
        assert agree[label] / count >= 0.8, (label, agree[label], count)


def test_tiers_status_and_refresh():
    call_command("seed_history", "demo-03", "--days", "0.05", "--no-progress", stdout=StringIO())
    out = StringIO()
    call_command("tiers", "status", stdout=out)
    assert "TimescaleDB edition:" in out.getvalue() and "1m: newest bucket" in out.getvalue()
    out = StringIO()
    call_command("tiers", "refresh", stdout=out)
    assert out.getvalue().strip() == "Tiers refreshed."


def test_it_seeds_the_gpu_model_asked_for():
    call_command("seed_history", "demo-04", "--days", "0.01", "--gpu-model", "h100", "--no-progress", stdout=StringIO())
    server = MonitoredServer.objects.get(slug="demo-04")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT name, memory_total_bytes, power_limit_w, sm_clock_max_mhz, memory_clock_max_mhz "
            "FROM monitoring_gpusample WHERE server_id = %s",
            [server.id],
        )
        assert cursor.fetchall() == [("NVIDIA H100 80GB HBM3", 81559 * 2**20, 700.0, 1980.0, 2619.0)]
        cursor.execute(
            "SELECT max(power_w), min(sm_clock_mhz), max(sm_clock_mhz), max(jsonb_array_length(processes)) "
            "FROM monitoring_gpusample WHERE server_id = %s",
            [server.id],
        )
        power, lowest, highest, processes = cursor.fetchone()
    assert 400 < power <= 700 and 0 < lowest <= highest <= 1980 and processes == 1
