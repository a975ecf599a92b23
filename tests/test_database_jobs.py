"""Beat keeps the tiers and compression going itself, on either edition, and says when it
last managed to; the database's own jobs that fail show in `manage.py tiers status` and
/healthz (still 200: a failing job is no reason to drop a web node)."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.test import Client
from django.utils import timezone

from monitoring import maintenance
from monitoring.models import MaintenanceRun, MonitoredServer
from monitoring.tasks import classify_server, compress_chunks, refresh_tiers
from monitoring.tiers import compression, dbjobs
from monitoring.tiers import definitions as tiers
from monitoring.tiers import refresher as tier_refresh
from tests import samples
from tests.conftest import IngestClient, client_for, eventually, make_user, process_env, register

pytestmark = pytest.mark.usefixtures("tier_db")


def fetch(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def full_edition() -> bool:
    with connection.cursor() as cursor:
        return tiers.edition(cursor) == "timescale"


def require_full_edition() -> None:
    if not full_edition():
        pytest.skip("needs TimescaleDB's Timescale-licensed edition (SHOW timescaledb.license says 'apache')")


def feed(node, count, start, **fields):
    client = IngestClient()
    for i in range(count):
        assert client.send(node, samples.body(start + timedelta(seconds=2 * i), step=i, **fields)).status_code == 200
    classify_server(node.server.id)


def tier_samples(tier: str, server_id: int) -> int:
    return fetch(
        f"SELECT coalesce(sum(sample_count), 0) FROM monitoring_snapshot_{tier} WHERE server_id = %s", [server_id]
    )[0][0]


def status() -> str:
    out = StringIO()
    call_command("tiers", "status", stdout=out)
    return out.getvalue()


def healthz() -> dict:
    response = Client().get("/healthz")
    assert response.status_code == 200
    return response.json()


# --- beat's refresh ----------------------------------------------------------------------------


def test_beat_refresh_brings_new_and_late_samples_into_the_tiers_and_the_history(settings):
    node = register("beat-box", "Beat Box")
    start = (timezone.now() - timedelta(minutes=10)).replace(second=0, microsecond=0)
    feed(node, 30, start, cpu_usage_percent=20.0)  # one full minute
    refresh_tiers()
    assert tier_samples("1m", node.server.id) == 30
    # Hours later a spool replay brings a sample of a minute long materialized.
    late = (timezone.now() - timedelta(hours=5)).replace(second=0, microsecond=0)
    feed(node, 1, late, cpu_usage_percent=77.0)
    refresh_tiers()
    assert fetch(
        "SELECT sample_count, cpu_usage_percent_avg FROM monitoring_snapshot_1m WHERE server_id = %s AND bucket = %s",
        [node.server.id, late],
    ) == [(1, pytest.approx(77.0))]
    if tiers.installed_backend() == "continuous":
        # The 1h aggregate is built on the 1m one; it ends at the last complete hour.
        assert fetch(
            "SELECT sample_count FROM monitoring_snapshot_1h WHERE server_id = %s AND bucket = %s",
            [node.server.id, late.replace(minute=0)],
        ) == [(1,)]
    # The history reads the late sample from the tier (it is before the tiers' horizon).
    settings.MONITORING_HISTORY_MAX_POINTS = 400  # 6 hours in minutes: the 1m tier
    client = client_for(make_user("alice@example.com"))
    data = client.get("/api/metrics/history/", {"server": node.slug, "minutes": 360}).json()
    assert data["source"] == "1m"
    assert 77.0 in [point["cpu_usage_percent"] for point in data["points"]]
    # A second run changes nothing.
    before = fetch("SELECT * FROM monitoring_snapshot_1m WHERE server_id = %s ORDER BY bucket", [node.server.id])
    refresh_tiers()
    assert (
        fetch("SELECT * FROM monitoring_snapshot_1m WHERE server_id = %s ORDER BY bucket", [node.server.id]) == before
    )


def test_beat_refresh_catches_up_after_beat_was_stopped_longer_than_the_late_window(settings):
    settings.MONITORING_TIER_LATE_DAYS = 2
    node = register("gap-box", "Gap Box")
    before = (timezone.now() - timedelta(days=4)).replace(second=0, microsecond=0)
    feed(node, 5, before)
    tier_refresh.refresh(before - timedelta(hours=1), before + timedelta(minutes=1))  # beat's last run
    # Stored while beat was stopped, three days ago: outside the window of a normal run.
    gap = (timezone.now() - timedelta(days=3)).replace(second=0, microsecond=0)
    feed(node, 5, gap, cpu_usage_percent=55.0)
    refresh_tiers()
    assert fetch(
        "SELECT sample_count, cpu_usage_percent_avg FROM monitoring_snapshot_1m WHERE server_id = %s AND bucket = %s",
        [node.server.id, gap],
    ) == [(5, pytest.approx(55.0))]


def test_beat_refresh_records_when_it_last_succeeded():
    assert maintenance.refresh_state().behind  # never refreshed yet
    assert "BEHIND" in status()
    refresh_tiers()
    state = maintenance.refresh_state()
    assert not state.behind and timezone.now() - state.succeeded_at < timedelta(minutes=1)
    body = healthz()
    assert body["ok"] is True
    assert body["tier_refresh"] == {"succeeded_at": state.succeeded_at.isoformat(), "behind": False}
    assert "BEHIND" not in status()
    # An hour without a refresh (beat stopped) shows.
    MaintenanceRun.objects.filter(task=maintenance.REFRESH).update(succeeded_at=timezone.now() - timedelta(hours=1))
    assert healthz()["tier_refresh"]["behind"] is True
    assert "BEHIND" in status()


def test_a_refresh_that_fails_shows_with_its_error(monkeypatch):
    refresh_tiers()

    def broken(*args, **kwargs):
        raise DatabaseError("could not extend file: No space left on device")

    monkeypatch.setattr(tier_refresh, "refresh_rollups", broken)
    monkeypatch.setattr(tier_refresh, "refresh_continuous", broken)
    with pytest.raises(DatabaseError):
        refresh_tiers()
    report = healthz()["tier_refresh"]
    assert report["behind"] is True and report["error"] == "could not extend file: No space left on device"
    assert "refresh_tiers: last succeeded" in status() and "FAILED" in status()


def test_one_refresher_at_a_time():
    node = register("locked-box", "Locked Box")
    feed(node, 30, (timezone.now() - timedelta(minutes=10)).replace(second=0, microsecond=0))
    held, release = threading.Event(), threading.Event()

    def other_refresher():
        from django.db import connection as own

        with own.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [tier_refresh.REFRESH_LOCK])
            held.set()
            release.wait(30)
            cursor.execute("SELECT pg_advisory_unlock(%s)", [tier_refresh.REFRESH_LOCK])
        own.close()

    thread = threading.Thread(target=other_refresher)
    thread.start()
    try:
        assert held.wait(10)
        refresh_tiers()
        assert tier_samples("1m", node.server.id) == 0
        assert not MaintenanceRun.objects.filter(task=maintenance.REFRESH).exists()  # the other one records
    finally:
        release.set()
        thread.join(10)
    refresh_tiers()
    assert tier_samples("1m", node.server.id) == 30


def test_beat_itself_keeps_the_tiers_refreshed(processes):
    node = register("beat-e2e", "Beat E2E")
    feed(node, 30, (timezone.now() - timedelta(minutes=10)).replace(second=0, microsecond=0))
    env = process_env(MONITORING_TIER_REFRESH_SECONDS="1")
    processes.worker(env)
    processes.beat(env)
    eventually(lambda: tier_samples("1m", node.server.id) == 30, timeout=60, message="beat's refresh")
    eventually(lambda: not maintenance.refresh_state().behind, timeout=10, message="the refresh recorded")


# --- compression -------------------------------------------------------------------------------


def chunk_states(table: str) -> list[tuple]:
    return fetch(
        "SELECT range_end, is_compressed FROM timescaledb_information.chunks WHERE hypertable_name = %s "
        "ORDER BY range_start",
        [table],
    )


def test_beat_compresses_exactly_the_raw_chunks_past_the_age(settings):
    settings.MONITORING_COMPRESS_AFTER_DAYS = 7
    call_command(
        "seed_history",
        "old-box",
        "--days",
        "10",
        "--interval",
        "300",
        "--gpus",
        "1",
        "--disks",
        "1",
        "--no-progress",
        stdout=StringIO(),
    )
    server = MonitoredServer.objects.get(slug="old-box")
    rows = {table: fetch(f"SELECT count(*) FROM {table}")[0][0] for table in compression.LAYOUT}
    compressed = compress_chunks()
    cutoff = timezone.now() - timedelta(days=7)
    if not full_edition():
        assert compressed == 0  # the Apache edition cannot compress; the task does nothing
        assert all(not done for table in compression.LAYOUT for _, done in chunk_states(table))
        return
    assert compressed > 0
    for table in compression.LAYOUT:
        states = chunk_states(table)
        assert [done for _, done in states] == [end <= cutoff for end, _ in states], table
        assert fetch(f"SELECT count(*) FROM {table}")[0][0] == rows[table]  # still all readable
    assert compress_chunks() == 0  # nothing left to do
    assert MaintenanceRun.objects.get(task=maintenance.COMPRESS).succeeded_at is not None
    # Compressed chunks still serve the history.
    response = client_for(make_user("alice@example.com")).get(
        "/api/metrics/history/", {"server": server.slug, "minutes": 10 * 1440}
    )
    assert response.status_code == 200 and response.json()["points"]


# --- the database's own jobs -----------------------------------------------------------------


def test_trainwatch_leaves_no_policy_jobs_to_the_database():
    require_full_edition()
    assert (
        fetch(
            "SELECT job_id, proc_name FROM timescaledb_information.jobs "
            "WHERE proc_name IN ('policy_refresh_continuous_aggregate', 'policy_compression', 'policy_retention')"
        )
        == []
    )


@pytest.fixture
def failing_job():
    """A job of the database's that fails every run, as TimescaleDB's own do on some minors."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE OR REPLACE PROCEDURE tw_test_failing_job(job_id int, config jsonb) LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'the disk is on fire'; END $$"
        )
        cursor.execute("SELECT add_job('tw_test_failing_job', INTERVAL '1 hour', initial_start => now())")
        job_id = cursor.fetchone()[0]
    yield job_id
    with connection.cursor() as cursor:
        cursor.execute("SELECT delete_job(%s)", [job_id])
        cursor.execute("DROP PROCEDURE tw_test_failing_job")


def test_a_failing_database_job_shows_in_tiers_status_and_healthz(request):
    require_full_edition()
    job_id = request.getfixturevalue("failing_job")
    # TimescaleDB's scheduler runs it in the background within seconds.
    job = eventually(
        lambda: next((job for job in dbjobs.failing() if job.job_id == job_id), None),
        timeout=60,
        message="the job's failed run",
    )
    assert job.proc == "tw_test_failing_job" and job.failures >= 1 and job.last_error
    out = status()
    assert f"FAILING job {job_id}: " in out and "tw_test_failing_job" in out and job.last_error in out
    body = healthz()  # 200: the web node itself is fine
    assert body["ok"] is True
    reported = next(entry for entry in body["database_jobs"]["failing"] if entry["job_id"] == job_id)
    assert reported["proc"] == "tw_test_failing_job" and reported["last_error"] == job.last_error


def test_the_apache_edition_reports_no_database_jobs():
    if full_edition():
        pytest.skip("the Timescale-licensed edition reports its jobs (see the test above)")
    assert dbjobs.failing() == []
    assert healthz()["database_jobs"] == {"failing": []}
    assert "database jobs: not checked (Apache edition" in status()
