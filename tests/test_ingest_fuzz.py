"""Thousands of malformed bodies at ingest: never a 5xx, never a row stored for a rejected body.

Under CI the examples are the same on every run (the "ci" profile, tests/hypothesis_profiles.py);
elsewhere each run explores new ones. Every failure these properties ever find becomes a plain
regression test in this file, with the body that failed written out, so that it is checked on
every run whatever the examples.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.models import DiskSample, GpuSample, MonitoredServer, Snapshot
from tests import samples
from tests.samples import utc

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def paths(value, prefix=()):
    """Every path to a value inside a JSON document."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


VALID = samples.body(utc(2026, 2, 26, 2, 0, 0), gpus=2, disks=2)
VALID["sample"]["gpus"][0]["processes"] = [{"pid": 1, "name": "python", "user": "ml", "used_memory_bytes": 5}]
VALID["sample"]["gpus"][0]["throttle_reasons"] = ["sw_power_cap"]
VALID_PATHS = [p for p in paths(VALID) if p]


def replaced(path, value):
    doc = json.loads(json.dumps(VALID))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(doc, allow_nan=True).encode()


def state():
    return (
        Snapshot.objects.count(),
        GpuSample.objects.count(),
        DiskSample.objects.count(),
        list(MonitoredServer.objects.values_list("snapshot_count", "last_seen_at")),
    )


def check(ingest, box, raw: bytes):
    before = state()
    response = ingest.send(box, None, raw=raw)
    assert response.status_code in (200, 400), (response.status_code, raw[:200])
    if response.status_code == 400:
        data = response.json()
        assert data["ok"] is False and isinstance(data["error"], str)
        assert data["error"] and "\n" not in data["error"]
        assert state() == before, raw[:200]


@FUZZ
@given(doc=json_values)
def test_arbitrary_json_documents(ingest, box, doc):
    check(ingest, box, json.dumps(doc, allow_nan=True).encode())


@FUZZ
@given(path=st.sampled_from(VALID_PATHS), value=json_values)
def test_a_valid_sample_with_one_value_replaced(ingest, box, path, value):
    check(ingest, box, replaced(path, value))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes(ingest, box, raw):
    check(ingest, box, raw)
