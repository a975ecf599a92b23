"""Workloads: what agents send of GPU processes' jobs, kept as time ranges; GET /api/workloads/; the
latest API's processes with their workloads; retention."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client

from monitoring.models import GpuSample, Workload
from monitoring.tiers import apply_retention
from monitoring.workloads import ranges as remembered
from tests import samples
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def exact_ranges(settings):
    """Every sample writes its workloads' ranges, and this process remembers nothing from another
    test; the tests of the memory set a resolution of their own."""
    settings.MONITORING_WORKLOAD_RESOLUTION_SECONDS = 0
    remembered._written.clear()
    yield
    remembered._written.clear()


SLURM = {
    "kind": "slurm",
    "id": "1234",
    "name": "llama-70b",
    "user": "alice",
    "labels": {"partition": "gpu", "step": "0"},
}
POD = {"kind": "kubernetes", "id": "0f9e8d7c-6b5a-4321-8fed-cba987654321", "name": "ml/trainer-0", "user": "root"}


def process(pid: int, workload: dict | None, **extra) -> dict:
    entry = {"pid": pid, "name": "python", "user": "alice", "used_memory_bytes": 1024, "type": "compute", **extra}
    if workload is not None:
        entry["workload"] = workload
    return entry


def body_with(at, per_gpu: dict[int, list[dict]], gpus: int = 4) -> dict:
    body = samples.body(at, gpus=gpus, disks=1)
    for gpu in body["sample"]["gpus"]:
        gpu["processes"] = per_gpu.get(gpu["gpu_index"], [])
    return body


def send_every(ingest, node, start, count: int, per_gpu, step: float = 2.0):
    for i in range(count):
        response = ingest.send(node, body_with(start + timedelta(seconds=step * i), per_gpu))
        assert response.status_code == 200, response.content
    return start + timedelta(seconds=step * (count - 1))


def ranges(**filters) -> list[tuple]:
    return list(
        Workload.objects.filter(**filters)
        .order_by("first_seen")
        .values_list("kind", "workload_id", "name", "username", "gpus", "first_seen", "last_seen")
    )


# --- ingest: ranges, not labels ---------------------------------------------------------------


def test_a_job_on_two_gpus_is_one_range_from_its_first_sample_to_its_last(ingest, box):
    start = samples.now_minus(60)
    last = send_every(ingest, box, start, 5, {0: [process(10, SLURM)], 1: [process(11, SLURM)]})
    assert ranges() == [("slurm", "1234", "llama-70b", "alice", [0, 1], start, last)]
    assert Workload.objects.get().labels == {"partition": "gpu", "step": "0"}


def test_each_gpu_row_keeps_only_its_processes_reference_to_the_workload(ingest, box):
    at = samples.now_minus(10)
    send_every(ingest, box, at, 1, {0: [process(10, SLURM), process(12, None)]})
    stored = GpuSample.objects.get(server_id=box.server.id, gpu_index=0).processes
    assert stored == [
        {**process(10, None), "workload": {"kind": "slurm", "id": "1234"}},
        # A process without a workload (an older agent's) is stored as it always was.
        process(12, None),
    ]


def test_a_workload_seen_again_after_a_long_gap_starts_a_new_range(ingest, box, settings):
    settings.MONITORING_RATE_MAX_GAP_SECONDS = 60
    start = samples.now_minus(600)
    first_end = send_every(ingest, box, start, 3, {0: [process(10, SLURM)]})
    # 30 s later: the same range; 5 minutes later: a new one.
    near = send_every(ingest, box, first_end + timedelta(seconds=30), 1, {2: [process(10, SLURM)]})
    later = near + timedelta(minutes=5)
    send_every(ingest, box, later, 2, {0: [process(10, SLURM)]})
    assert [(r[4], r[5], r[6]) for r in ranges()] == [
        ([0, 2], start, near),
        ([0], later, later + timedelta(seconds=2)),
    ]


def test_a_batch_extends_and_splits_ranges_like_single_samples(ingest, box, settings):
    settings.MONITORING_RATE_MAX_GAP_SECONDS = 60
    start = samples.now_minus(900)
    times = [start + timedelta(seconds=s) for s in (0, 2, 4, 400, 402)]
    batch = {"samples": [body_with(at, {1: [process(10, POD)]})["sample"] for at in times]}
    assert ingest.send(box, batch).json()["accepted"] == 5
    assert [(r[0], r[5], r[6]) for r in ranges()] == [
        ("kubernetes", times[0], times[2]),
        ("kubernetes", times[3], times[4]),
    ]
    # Resent: nothing changes.
    assert ingest.send(box, batch).json()["duplicates"] == 5
    assert len(ranges()) == 2


def test_a_late_sample_moves_the_start_back(ingest, box):
    start = samples.now_minus(100)
    send_every(ingest, box, start, 3, {0: [process(10, SLURM)]})
    send_every(ingest, box, start - timedelta(seconds=10), 1, {3: [process(10, SLURM)]})
    assert [(r[4], r[5]) for r in ranges()] == [([0, 3], start - timedelta(seconds=10))]


def test_workloads_of_two_servers_and_kinds_are_kept_apart(ingest, box, other_box):
    at = samples.now_minus(20)
    send_every(ingest, box, at, 1, {0: [process(10, SLURM)], 1: [process(11, POD)]})
    send_every(ingest, other_box, at, 1, {0: [process(10, SLURM)]})
    assert Workload.objects.filter(server_id=box.server.id).count() == 2
    assert Workload.objects.filter(server_id=other_box.server.id).count() == 1


def test_an_unchanged_workload_is_not_written_again(ingest, box):
    """Resending what is stored leaves the row alone (no new row version)."""
    at = samples.now_minus(20)
    send_every(ingest, box, at, 2, {0: [process(10, SLURM)]})
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text FROM monitoring_workload")
        before = cursor.fetchone()
        # A sample the range already covers, with nothing new about the workload: a late one.
        response = ingest.send(box, body_with(at + timedelta(seconds=1), {0: [process(10, SLURM)]}))
        assert response.status_code == 200
        cursor.execute("SELECT xmin::text FROM monitoring_workload")
        assert cursor.fetchone() == before


@pytest.mark.parametrize(
    ("workload", "message"),
    [
        ({"kind": "lsf", "id": "1"}, "workload.kind: must be one of slurm, kubernetes, container, process"),
        ({"id": "1"}, "workload.kind: is required"),
        ({"kind": "slurm"}, "workload.id: is required"),
        ({"kind": "slurm", "id": "   "}, "workload.id: must not be empty"),
        ({"kind": "slurm", "id": "1" * 129}, "workload.id: must be at most 128 characters"),
        ({"kind": "slurm", "id": "1", "name": "n" * 257}, "workload.name: must be at most 256 characters"),
        ({"kind": "slurm", "id": "1", "user": 7}, "workload.user: must be a string"),
        ({"kind": "slurm", "id": "1", "labels": {"a": 1}}, "workload.labels.a: must be a string"),
        ({"kind": "slurm", "id": "1", "labels": ["a"]}, "workload.labels: must be an object of string values"),
        (
            {"kind": "slurm", "id": "1", "labels": {str(i): "v" for i in range(17)}},
            "workload.labels: must have at most 16 entries",
        ),
        ("slurm:1", "workload: must be an object"),
    ],
)
def test_a_bad_workload_is_a_400_naming_the_field(ingest, box, workload, message):
    response = ingest.send(box, body_with(samples.now_minus(5), {0: [process(10, workload)]}))
    assert response.status_code == 400
    assert response.json()["error"] == f"sample.gpus[0].processes[0].{message}"
    assert not Workload.objects.exists()


def test_odd_text_in_a_workload_is_stored_as_valid_unicode(ingest, box):
    raw = (
        b'{"sample": {"collected_at": "%s", "gpus": [{"gpu_index": 0, "processes": [{"pid": 1, "workload": '
        b'{"kind": "slurm", "id": "9", "name": "<script>x\\u0000\\udcff</script>", "user": "\\ud800"}}]}]}}'
    ) % samples.now_minus(5).isoformat().encode()
    assert ingest.send(box, None, raw=raw).status_code == 200
    workload = Workload.objects.get()
    assert (workload.name, workload.username) == ("<script>x\ufffd\ufffd</script>", "\ufffd")


def test_the_contracts_sample_without_workloads_writes_none(ingest, box):
    assert ingest.send(box, samples.body(samples.now_minus(5))).status_code == 200
    assert not Workload.objects.exists()


# --- what each web process remembers: unchanged running workloads cost nothing -----------------


def row_version() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text FROM monitoring_workload ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def test_a_running_workload_is_written_again_only_every_resolution_and_its_end_exactly(ingest, box, settings):
    settings.MONITORING_WORKLOAD_RESOLUTION_SECONDS = 30
    start = samples.now_minus(200)
    send_every(ingest, box, start, 1, {0: [process(10, SLURM)]})
    first = row_version()
    send_every(ingest, box, start + timedelta(seconds=2), 10, {0: [process(10, SLURM)]})  # up to 20 s
    assert row_version() == first  # nothing written for ten samples
    assert ranges()[0][6] == start
    send_every(ingest, box, start + timedelta(seconds=30), 1, {0: [process(10, SLURM)]})
    assert ranges()[0][6] == start + timedelta(seconds=30)
    last = send_every(ingest, box, start + timedelta(seconds=32), 5, {0: [process(10, SLURM)]})
    assert ranges()[0][6] == start + timedelta(seconds=30)  # behind, by less than the resolution
    # It leaves the GPUs: the next sample writes its true end.
    send_every(ingest, box, last + timedelta(seconds=2), 1, {})
    assert ranges()[0][5:] == (start, last)


def test_a_change_is_written_at_once(ingest, box, settings):
    settings.MONITORING_WORKLOAD_RESOLUTION_SECONDS = 30
    start = samples.now_minus(100)
    send_every(ingest, box, start, 2, {0: [process(10, SLURM)]})
    send_every(ingest, box, start + timedelta(seconds=4), 1, {0: [process(10, SLURM)], 3: [process(11, SLURM)]})
    assert ranges()[0][4] == [0, 3]
    renamed = {**SLURM, "name": "llama-70b-resumed"}
    send_every(ingest, box, start + timedelta(seconds=6), 1, {0: [process(10, renamed)]})
    assert ranges()[0][2:] == ("llama-70b-resumed", "alice", [0, 3], start, start + timedelta(seconds=6))


def test_a_process_that_remembers_nothing_writes_what_it_sees(ingest, box, settings):
    settings.MONITORING_WORKLOAD_RESOLUTION_SECONDS = 30
    start = samples.now_minus(100)
    send_every(ingest, box, start, 3, {0: [process(10, SLURM)]})
    remembered._written.clear()  # a restart, or another web process
    send_every(ingest, box, start + timedelta(seconds=6), 1, {0: [process(10, SLURM)]})
    assert ranges()[0][5:] == (start, start + timedelta(seconds=6))


def test_a_running_workload_behind_by_less_than_the_resolution_still_runs(alice, box, ingest, settings):
    settings.MONITORING_WORKLOAD_RESOLUTION_SECONDS = 30
    start = samples.now_minus(100)
    newest = send_every(ingest, box, start, 8, {0: [process(10, SLURM)]})
    assert ranges()[0][6] < newest
    listed = get(alice).json()["workloads"]
    assert [(w["id"], w["running"]) for w in listed] == [("1234", True)]
    process_workload = client_for(alice).get("/api/metrics/latest/").json()["snapshot"]["gpu"]["devices"][0]
    assert process_workload["processes"][0]["workload"]["name"] == "llama-70b"


# --- GET /api/workloads/ ----------------------------------------------------------------------


def get(person, **params):
    return client_for(person).get("/api/workloads/", params)


def test_it_lists_running_workloads_first_then_recent_ones(alice, box, other_box, ingest):
    start = samples.now_minus(120)
    send_every(ingest, box, start, 3, {0: [process(10, SLURM)]})
    newest = send_every(ingest, box, start + timedelta(seconds=30), 2, {1: [process(11, POD)]})
    send_every(ingest, other_box, start, 1, {0: [process(10, {"kind": "process", "id": "77", "user": "bob"})]})
    data = get(alice).json()
    assert data["ok"] is True
    listed = [(w["server"], w["kind"], w["id"], w["running"]) for w in data["workloads"]]
    assert listed == [
        ("gpu-box-01", "kubernetes", POD["id"], True),
        ("gpu-box-02", "process", "77", True),
        ("gpu-box-01", "slurm", "1234", False),
    ]
    pod = data["workloads"][0]
    assert pod == {
        "server": "gpu-box-01",
        "kind": "kubernetes",
        "id": POD["id"],
        "name": "ml/trainer-0",
        "user": "root",
        "labels": {},
        "gpus": [1],
        "first_seen": (start + timedelta(seconds=30)).isoformat(),
        "last_seen": newest.isoformat(),
        "duration_seconds": 2.0,
        "running": True,
    }


def test_it_filters_by_server_user_and_a_part_of_the_id_or_name(alice, box, other_box, ingest):
    at = samples.now_minus(30)
    send_every(ingest, box, at, 1, {0: [process(10, SLURM)], 1: [process(11, POD)]})
    send_every(ingest, other_box, at, 1, {0: [process(10, {**SLURM, "id": "99", "user": "bob", "name": "Eval"})]})

    def ids(**params):
        response = get(alice, **params)
        assert response.status_code == 200, response.content
        return sorted(w["id"] for w in response.json()["workloads"])

    assert ids(server="gpu-box-02") == ["99"]
    assert ids(server=str(box.server.id)) == ["0f9e8d7c-6b5a-4321-8fed-cba987654321", "1234"]
    assert ids(user="bob") == ["99"]
    assert ids(user="ALICE") == []  # a user is exact
    assert ids(q="LLAMA") == ["1234"]
    assert ids(q="eval") == ["99"]
    assert ids(q="4321-8fed") == ["0f9e8d7c-6b5a-4321-8fed-cba987654321"]
    assert ids(q="%") == [] and ids(q="_") == []  # no wildcards


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"server": "nope"}, 404, "no active server 'nope'"),
        ({"q": "x" * 201}, 400, "q: must be at most 200 characters"),
        ({"user": "u" * 201}, 400, "user: must be at most 200 characters"),
        ({"q": "a\x00b"}, 400, "q: must not contain NUL"),
        ({"user": "\x00"}, 400, "user: must not contain NUL"),
    ],
)
def test_bad_filters_are_refused_in_one_line(alice, box, params, status, message):
    response = get(alice, **params)
    assert response.status_code == status
    assert response.json() == {"ok": False, "error": message}


@pytest.mark.parametrize(
    "hostile", ["<script>alert(1)</script>", "' OR 1=1 --", "💥" * 50, "\n<x>\t", "\\", "../../etc", "%00"]
)
def test_hostile_filters_find_nothing_and_break_nothing(alice, box, ingest, hostile):
    send_every(ingest, box, samples.now_minus(10), 1, {0: [process(10, SLURM)]})
    for name in ("q", "user", "server"):
        response = get(alice, **{name: hostile})
        assert response.status_code in (200, 404), response.content
        assert response.json().get("workloads", []) == []


def test_a_filter_that_is_not_utf8_finds_nothing(alice, box, ingest):
    send_every(ingest, box, samples.now_minus(10), 1, {0: [process(10, SLURM)]})
    for name in ("q", "user"):
        response = client_for(alice).get(f"/api/workloads/?{name}=%ff%fe")
        assert response.status_code == 200 and response.json()["workloads"] == []


def test_hostile_text_comes_back_as_json_text(alice, box, ingest):
    hostile = {"kind": "container", "id": "c1", "name": "<img src=x onerror=alert(1)>", "user": '"><b>'}
    send_every(ingest, box, samples.now_minus(10), 1, {0: [process(10, hostile)]})
    response = get(alice)
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["workloads"][0]["name"] == "<img src=x onerror=alert(1)>"


def test_it_is_for_signed_in_allowlisted_users_only(bob, box):
    assert Client().get("/api/workloads/").status_code == 401
    assert get(bob).status_code == 403


def test_a_disabled_servers_workloads_are_not_listed(alice, box, ingest):
    send_every(ingest, box, samples.now_minus(10), 1, {0: [process(10, SLURM)]})
    box.server.is_active = False
    box.server.save()
    assert get(alice).json()["workloads"] == []


# --- the latest API's processes -----------------------------------------------------------------


def test_the_latest_snapshot_shows_each_processs_workload(alice, box, ingest):
    at = samples.now_minus(10)
    send_every(ingest, box, at, 2, {0: [process(10, SLURM), process(12, None)], 1: [process(11, POD)]})
    devices = client_for(alice).get("/api/metrics/latest/").json()["snapshot"]["gpu"]["devices"]
    assert devices[0]["processes"][0]["workload"] == {
        "kind": "slurm",
        "id": "1234",
        "name": "llama-70b",
        "user": "alice",
        "labels": {"partition": "gpu", "step": "0"},
    }
    assert "workload" not in devices[0]["processes"][1]
    assert devices[1]["processes"][0]["workload"]["name"] == "ml/trainer-0"


# --- retention ----------------------------------------------------------------------------------


def test_ranges_are_kept_as_long_as_the_longest_tier(box, ingest):
    send_every(ingest, box, samples.now_minus(10), 1, {0: [process(10, SLURM)]})
    old = Workload.objects.create(
        server=box.server,
        kind="process",
        workload_id="1",
        first_seen=samples.now_minus(800 * 86400),
        last_seen=samples.now_minus(731 * 86400),
    )
    kept = Workload.objects.create(
        server=box.server,
        kind="process",
        workload_id="2",
        first_seen=samples.now_minus(800 * 86400),
        last_seen=samples.now_minus(729 * 86400),
    )
    apply_retention()
    assert set(Workload.objects.values_list("workload_id", flat=True)) == {"1234", "2"}
    assert not Workload.objects.filter(pk=old.pk).exists() and Workload.objects.filter(pk=kept.pk).exists()


def test_deleting_a_server_deletes_its_workloads(box, ingest):
    send_every(ingest, box, samples.now_minus(10), 1, {0: [process(10, SLURM)]})
    box.server.delete()
    assert not Workload.objects.exists()


def test_the_admin_lists_workloads_to_look_at_not_to_edit(admin_client, box, ingest):
    hostile = {**SLURM, "name": "<script>alert(1)</script>"}
    send_every(ingest, box, samples.now_minus(10), 1, {0: [process(10, hostile)]})
    page = admin_client.get("/admin/monitoring/workload/")
    assert page.status_code == 200
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page.content and b"<script>alert(1)" not in page.content
    assert admin_client.get("/admin/monitoring/workload/add/").status_code == 403
