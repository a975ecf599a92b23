"""The ingest body's validation: one readable line naming the field, for every kind of mistake."""

from __future__ import annotations

import json

import pytest

from monitoring.ingest.body import parse_body
from monitoring.ingest.validation import SampleError
from tests import samples
from tests.samples import utc

T0 = utc(2026, 2, 26, 2, 37, 49)


def body_with(path: str, value) -> bytes:
    """The recommended body with one field (dotted path, [i] for list items) replaced."""
    payload = samples.body(T0)
    target = payload
    parts = path.replace("[", ".").replace("]", "").split(".")
    keys = [int(part) if part.isdigit() else part for part in parts]
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("sample.cpu_usage_percent", 100.5, "sample.cpu_usage_percent: must be between 0 and 100"),
        ("sample.cpu_usage_percent", -1, "sample.cpu_usage_percent: must be between 0 and 100"),
        ("sample.cpu_usage_percent", "42", "sample.cpu_usage_percent: must be a number"),
        ("sample.cpu_usage_percent", True, "sample.cpu_usage_percent: must be a number"),
        ("sample.cpu_load_1", -0.5, "sample.cpu_load_1: must be 0 or more"),
        ("sample.memory_total_bytes", -5, "sample.memory_total_bytes: must be 0 or more"),
        ("sample.memory_total_bytes", 1.5, "sample.memory_total_bytes: must be an integer"),
        ("sample.network_rx_bytes_total", 2**64, "sample.network_rx_bytes_total: is too large"),
        ("sample.process_count", [], "sample.process_count: must be an integer"),
        ("sample.collected_at", "yesterday", "sample.collected_at: is not an ISO 8601 timestamp: 'yesterday'"),
        (
            "sample.collected_at",
            "2026-02-26T02:37:49",
            "sample.collected_at: must include a timezone offset, e.g. 2026-02-26T02:37:49+00:00",
        ),
        ("sample.collected_at", 1772073469, "sample.collected_at: must be an ISO 8601 timestamp string"),
        ("sample.gpus", {}, "sample.gpus: must be a list"),
        ("sample.gpus[0]", 7, "sample.gpus[0]: must be an object"),
        ("sample.gpus[1].memory_percent", 180, "sample.gpus[1].memory_percent: must be between 0 and 100"),
        ("sample.gpus[2].gpu_index", None, "sample.gpus[2].gpu_index: is required"),
        ("sample.gpus[2].gpu_index", 0, "sample.gpus[2].gpu_index: duplicates GPU 0"),
        ("sample.gpus[0].temperature_c", 900, "sample.gpus[0].temperature_c: must be between -100 and 250"),
        ("sample.gpus[0].name", 12, "sample.gpus[0].name: must be a string"),
        ("sample.gpus[0].throttle_reasons", "sw_power_cap", "sample.gpus[0].throttle_reasons: must be a list"),
        ("sample.gpus[0].processes", [{"name": "python"}], "sample.gpus[0].processes[0].pid: is required"),
        ("sample.disks[1].device", "", "sample.disks[1].device: must not be empty"),
        ("sample.disks[1].device", "nvme0n1", "sample.disks[1].device: duplicates disk 'nvme0n1'"),
        ("sample.disks[0].busy_time_ms_total", -1, "sample.disks[0].busy_time_ms_total: must be 0 or more"),
        ("sample.disks[0].device", "x" * 65, "sample.disks[0].device: must be at most 64 characters"),
        ("agent", "0.1.0", "agent: must be an object"),
        ("agent.version", 1, "agent.version: must be a string"),
        ("agent.labels", ["rack"], "agent.labels: must be an object of string values"),
        ("agent.labels.rack", 3, "agent.labels.rack: must be a string"),
        ("sample", [], "sample: must be an object"),
    ],
)
def test_it_names_the_field_and_the_problem(path, value, message):
    with pytest.raises(SampleError) as caught:
        parse_body(body_with(path, value))
    assert str(caught.value) == message


@pytest.mark.parametrize("raw", [b"NaN", b'{"cpu_usage_percent": NaN}', b'{"cpu_usage_percent": Infinity}'])
def test_it_refuses_non_finite_numbers(raw):
    with pytest.raises(SampleError, match="not allowed"):
        parse_body(raw)


def test_it_refuses_a_sample_without_any_metric():
    with pytest.raises(SampleError, match="has none of the known metric fields"):
        parse_body(b'{"sample": {"collected_at": "2026-02-26T02:37:49Z"}}')


def test_null_means_could_not_be_read():
    parsed = parse_body(body_with("sample.gpus[0].power_w", None))
    assert parsed.gpus[0]["power_w"] is None


def test_it_reads_z_and_offsets_as_utc():
    parsed = parse_body(body_with("sample.collected_at", "2026-02-26T04:37:49.5+02:00"))
    assert parsed.collected_at == utc(2026, 2, 26, 2, 37, 49, 500000)
    assert parse_body(body_with("sample.collected_at", "2026-02-26T02:37:49Z")).collected_at == T0


def test_integers_written_as_floats_are_accepted():
    parsed = parse_body(body_with("sample.cpu_count_logical", 64.0))
    assert parsed.host["cpu_count_logical"] == 64


def test_the_raw_form_is_the_sample_itself():
    parsed = parse_body(json.dumps(samples.sample(T0, gpus=2, disks=1)).encode())
    assert parsed.collected_at == T0 and len(parsed.gpus) == 2 and len(parsed.disks) == 1
    assert parsed.agent == {}


def test_deeply_nested_json_is_a_clear_error():
    with pytest.raises(SampleError, match="invalid JSON"):
        parse_body(b"[" * 100000 + b"]" * 100000)
