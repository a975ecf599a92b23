"""classify_server, classify_waiting and the sweeper, called directly; the queueing of waiting
servers through real Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection

from monitoring import queue
from monitoring.classify.classifier import RULES_VERSION
from monitoring.classify.runner import classify_pending, classify_servers
from monitoring.models import MonitoredServer, SnapshotLabel
from monitoring.tasks import classify_server, classify_waiting, sweep_unclassified
from tests import samples
from tests.labelled import newest, unlabelled
from tests.samples import utc

pytestmark = pytest.mark.django_db

T0 = utc(2026, 2, 26, 2, 0, 0)


@pytest.fixture
def broker():
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def queued(broker) -> int:
    return broker.llen("celery")


def send_series(ingest, node, count, start=T0, **fields):
    for i in range(count):
        response = ingest.send(node, samples.body(start + timedelta(seconds=2 * i), step=i, **fields))
        assert response.status_code == 200


def test_it_classifies_every_pending_snapshot(ingest, box):
    send_series(ingest, box, 10)
    assert classify_server(box.server.id) == 10
    rows = list(SnapshotLabel.objects.values_list("label", "confidence", "rules_version", "reason"))
    assert len(rows) == 10 and {r[0] for r in rows} == {"gpu-bound"}
    assert all(0 < r[1] <= 1 and r[2] == RULES_VERSION and "GPU 98%" in r[3] for r in rows)


def test_it_only_touches_its_own_server(ingest, box, other_box):
    send_series(ingest, box, 3)
    send_series(ingest, other_box, 3)
    classify_server(box.server.id)
    assert unlabelled(other_box.server) == 3 and unlabelled(box.server) == 0


def test_running_it_twice_changes_nothing(ingest, box):
    send_series(ingest, box, 5)
    classify_server(box.server.id)
    before = list(SnapshotLabel.objects.order_by("collected_at").values_list("label", "reason", "classified_at"))
    assert classify_server(box.server.id) == 0
    after = list(SnapshotLabel.objects.order_by("collected_at").values_list("label", "reason", "classified_at"))
    assert len(before) == 5 and before == after


def test_a_vanished_server_is_not_an_error(db):
    assert classify_server(987654) == 0


def test_it_works_through_a_backlog_in_batches(ingest, box):
    send_series(ingest, box, 7)
    assert classify_pending(box.server.id, batch_size=3) == (3, True)
    assert classify_server(box.server.id) == 4
    assert unlabelled() == 0


def test_the_window_smooths_a_one_sample_dip(ingest, box):
    send_series(ingest, box, 5)
    dip = samples.body(T0 + timedelta(seconds=10), step=5)
    for g in dip["sample"]["gpus"]:
        g["utilization_gpu_percent"] = 40.0
    ingest.send(box, dip)
    classify_server(box.server.id)
    assert SnapshotLabel.objects.get(collected_at=T0 + timedelta(seconds=10)).label == "gpu-bound"


def test_it_uses_gpu_processes_for_held_memory(ingest, box):
    for i in range(25):
        payload = samples.body(T0 + timedelta(seconds=2 * i), step=i, gpus=1, cpu_usage_percent=2.0)
        payload["sample"]["gpus"][0].update(
            utilization_gpu_percent=0.0,
            memory_percent=60.0,
            processes=[{"pid": 4242, "name": "python", "used_memory_bytes": 10}],
        )
        payload["sample"]["disks"] = []
        ingest.send(box, payload)
    classify_server(box.server.id)
    assert newest().label == "gpu-idle-held"
    assert "(python)" in newest().reason


def test_a_gpu_starved_by_a_busy_cpu_names_its_pcie_feed(ingest, box):
    for i in range(10):
        payload = samples.body(T0 + timedelta(seconds=2 * i), step=i, gpus=1, cpu_usage_percent=97.0)
        payload["sample"]["gpus"][0].update(utilization_gpu_percent=30.0, pcie_rx_bytes_per_s=40e6)
        ingest.send(box, payload)
    classify_server(box.server.id)
    assert newest().label == "cpu-bound"
    assert newest().reason == "GPU at 30%, fed 40 MB/s from the host, while CPU is 97% busy"


def waiting(broker) -> set[int]:
    return {int(m) for m in broker.smembers(queue.waiting_key())}


def test_ingest_queues_one_task_for_every_waiting_server(
    ingest, box, other_box, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        send_series(ingest, box, 3)
        send_series(ingest, other_box, 2)
    assert queued(broker) == 1
    assert waiting(broker) == {box.server.id, other_box.server.id}
    assert broker.exists(queue.queued_key())


def test_the_task_classifies_every_waiting_server_and_clears_the_mark(
    ingest, box, other_box, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        send_series(ingest, box, 3)
        send_series(ingest, other_box, 2)
    assert classify_waiting() == 5
    assert unlabelled() == 0
    assert waiting(broker) == set() and not broker.exists(queue.queued_key())
    with django_capture_on_commit_callbacks(execute=True):
        send_series(ingest, box, 1, start=T0 + timedelta(minutes=1))
    assert queued(broker) == 2 and waiting(broker) == {box.server.id}


def test_servers_classified_together_get_what_each_would_alone(ingest, box, other_box):
    send_series(ingest, box, 12)
    send_series(ingest, other_box, 12, gpus=0, cpu_usage_percent=97.0)
    done = classify_servers([other_box.server.id, box.server.id, 999_999])
    assert done == {box.server.id: (12, False), other_box.server.id: (12, False)}
    together = {
        (s, at): label for s, at, label in SnapshotLabel.objects.values_list("server_id", "collected_at", "label")
    }
    labels = {(s, label) for (s, _), label in together.items()}
    assert labels == {(box.server.id, "gpu-bound"), (other_box.server.id, "cpu-bound")}
    SnapshotLabel.objects.all().delete()
    MonitoredServer.objects.update(unlabelled_from=T0)
    classify_server(box.server.id)
    classify_server(other_box.server.id)
    alone = {(s, at): label for s, at, label in SnapshotLabel.objects.values_list("server_id", "collected_at", "label")}
    assert alone == together


def test_a_backlog_longer_than_a_pass_goes_round_again(ingest, box, other_box, settings):
    send_series(ingest, box, 7)
    send_series(ingest, other_box, 2)
    assert classify_servers([box.server.id, other_box.server.id], batch_size=5) == {
        box.server.id: (5, True),
        other_box.server.id: (2, False),
    }
    assert unlabelled() == 2


def test_the_sweeper_requests_servers_with_stale_pending_snapshots(ingest, box, other_box, broker, settings):
    send_series(ingest, box, 2)
    send_series(ingest, other_box, 1)
    classify_server(other_box.server.id)
    settings.MONITORING_SWEEP_GRACE_SECONDS = 0
    assert sweep_unclassified() == 1
    assert queued(broker) == 1


def test_the_sweeper_leaves_fresh_snapshots_to_ingest(ingest, box, broker, settings):
    send_series(ingest, box, 2)
    settings.MONITORING_SWEEP_GRACE_SECONDS = 600
    assert sweep_unclassified() == 0
    assert queued(broker) == 0


def test_a_late_sample_before_what_is_labelled_gets_its_label(ingest, box):
    send_series(ingest, box, 6)
    assert classify_server(box.server.id) == 6
    assert MonitoredServer.objects.get(pk=box.server.pk).unlabelled_from is None
    # Replayed from a spool: older than every labelled snapshot.
    late = T0 - timedelta(minutes=5)
    assert ingest.send(box, samples.body(late)).status_code == 200
    assert MonitoredServer.objects.get(pk=box.server.pk).unlabelled_from == late
    assert classify_server(box.server.id) == 1
    assert unlabelled() == 0 and SnapshotLabel.objects.filter(collected_at=late).exists()
    assert MonitoredServer.objects.get(pk=box.server.pk).unlabelled_from is None


def test_a_sample_written_while_a_pass_runs_is_labelled_by_the_next(ingest, box, monkeypatch):
    from monitoring.classify import runner

    send_series(ingest, box, 6)
    real = runner._label

    def meanwhile(*args, **kwargs):
        # Another request stores a sample inside the range being labelled, after the pass read it.
        assert ingest.send(box, samples.body(T0 + timedelta(seconds=5))).status_code == 200
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "_label", meanwhile)
    classify_pending(box.server.id, batch_size=3)
    monkeypatch.setattr(runner, "_label", real)
    # The pass did not move past what it labelled: the sample written meanwhile is still ahead.
    assert MonitoredServer.objects.get(pk=box.server.pk).unlabelled_from == T0
    classify_server(box.server.id)
    assert unlabelled() == 0 and SnapshotLabel.objects.count() == 7


def snapshot_chunk_stats() -> tuple[int, int]:
    """Rows inserted into and updated in the snapshot hypertable's chunks, as PostgreSQL counts them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0) FROM pg_stat_user_tables "
            "WHERE relid IN (SELECT format('%I.%I', chunk_schema, chunk_name)::regclass "
            "FROM timescaledb_information.chunks WHERE hypertable_name = 'monitoring_snapshot')"
        )
        return cursor.fetchone()


@pytest.mark.django_db(transaction=True)
def test_a_snapshot_is_written_once_and_never_updated(ingest, box):
    inserted, updated = snapshot_chunk_stats()
    send_series(ingest, box, 8)
    assert ingest.send(box, {"samples": [samples.sample(T0 + timedelta(minutes=1, seconds=2 * i)) for i in range(5)]})
    assert classify_server(box.server.id) == 13
    now_inserted, now_updated = snapshot_chunk_stats()
    assert now_inserted - inserted == 13
    assert now_updated - updated == 0
