"""The GPU collector against a fake NVML: every field, unsupported fields, XID events, no NVML at all."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tests.agent import fake_nvml
from tests.agent.fake_nvml import FakeNVML, a100, consumer_card
from trainwatch_agent.collectors import xid as xid_module
from trainwatch_agent.collectors.gpus import GpuCollector, throttle_reason_names
from trainwatch_agent.collectors.xid import XidWatcher

A100_0 = {
    "gpu_index": 0,
    "name": "NVIDIA A100-SXM4-80GB",
    "uuid": "GPU-0a1b2c3d-0000-1111-2222-333344445555",
    "utilization_gpu_percent": 98.0,
    "utilization_memory_percent": 71.0,
    "memory_total_bytes": 85899345920,
    "memory_used_bytes": 68719476736,
    "memory_percent": 80.0,
    "temperature_c": 64.0,
    "power_w": 311.25,
    "power_limit_w": 400.0,
    "fan_percent": None,
    "sm_clock_mhz": 1410.0,
    "sm_clock_max_mhz": 1410.0,
    "memory_clock_mhz": 1593.0,
    "memory_clock_max_mhz": 1593.0,
    "throttle_reasons": ["gpu_idle", "sw_power_cap"],
    "ecc_errors_corrected": 3,
    "ecc_errors_uncorrected": 0,
    "processes": [
        {
            "pid": 4242,
            "name": "python3",
            "user": "alice",
            "used_memory_bytes": 60129542144,
            "type": "compute",
            # Nothing of it under the tests' empty /proc but its name: the process is its own workload.
            "workload": {"kind": "process", "id": "4242", "name": "python3", "user": "alice", "labels": {}},
        },
        {
            "pid": 4343,
            "name": "torchrun",
            "user": None,
            "used_memory_bytes": 8589934592,
            "type": "compute",
            "workload": {"kind": "process", "id": "4343", "name": "torchrun", "user": None, "labels": {}},
        },
        {"pid": 999999, "name": None, "user": None, "used_memory_bytes": None, "type": "compute", "workload": None},
    ],
    "pcie_rx_bytes_per_s": 6_400_000_000.0,
    "pcie_tx_bytes_per_s": 256_000_000.0,
    "encoder_util_percent": 0.0,
    "decoder_util_percent": 4.0,
    "mig_mode": False,
    "mig_instances": 0,
    "energy_joules_total": 123456.789,
    "xid_errors": [],
}

RTX_1 = {
    "gpu_index": 1,
    "name": "NVIDIA GeForce RTX 3090",
    "uuid": "GPU-ffffffff-0000-1111-2222-333344445555",
    "utilization_gpu_percent": 12.0,
    "utilization_memory_percent": 3.0,
    "memory_total_bytes": 25769803776,
    "memory_used_bytes": 1073741824,
    "memory_percent": 4.17,
    "temperature_c": 45.0,
    "power_w": 35.0,
    "power_limit_w": 350.0,
    "fan_percent": 30.0,
    "sm_clock_mhz": 210.0,
    "sm_clock_max_mhz": 2100.0,
    "memory_clock_mhz": 405.0,
    "memory_clock_max_mhz": 9751.0,
    "throttle_reasons": ["gpu_idle", "sw_thermal_slowdown", "hw_thermal_slowdown"],
    "ecc_errors_corrected": None,
    "ecc_errors_uncorrected": None,
    "processes": [],
    "pcie_rx_bytes_per_s": None,
    "pcie_tx_bytes_per_s": None,
    "encoder_util_percent": 12.0,
    "decoder_util_percent": 0.0,
    "mig_mode": None,
    "mig_instances": None,
    "energy_joules_total": None,
    "xid_errors": None,
}

_collectors: list[GpuCollector] = []


@pytest.fixture(autouse=True)
def _close_collectors():
    """Every collector a test starts is closed after it, so that no event thread outlives its test."""
    yield
    while _collectors:
        _collectors.pop().close()


def started(nvml) -> GpuCollector:
    collector = GpuCollector(nvml, xid_wait_ms=20)  # a short wait keeps close() quick
    _collectors.append(collector)
    collector.start()
    return collector


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Polls `condition` until it holds; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the XID event thread"
        time.sleep(0.005)


def test_it_reads_every_field_of_every_gpu(recorded_psutil):
    collector = started(FakeNVML([a100(), consumer_card()]))
    assert collector.collect() == {"gpus": [A100_0, RTX_1]}
    assert collector.status == "2 GPU(s) via NVML, driver 550.54.15"


def test_an_unsupported_field_is_null_and_not_asked_for_again(recorded_psutil):
    nvml = FakeNVML([a100(), consumer_card()])
    collector = started(nvml)
    collector.collect()
    collector.collect()
    # Only the A100 is asked twice for its fan: once, it said NotSupported, and the RTX has one.
    assert nvml.calls["fan"] == 3
    # The RTX lacks ECC: asked once for the corrected count, never again for either kind.
    assert nvml.calls["ecc"] == 4 + 1


def test_a_transient_nvml_error_costs_one_reading_only(recorded_psutil):
    nvml = FakeNVML([a100(temperature=fake_nvml.NVMLError_Unknown())])
    collector = started(nvml)
    assert collector.collect()["gpus"][0]["temperature_c"] is None
    nvml.gpus[0]["temperature"] = 66
    assert collector.collect()["gpus"][0]["temperature_c"] == 66.0


def test_a_name_that_is_not_utf8_costs_the_name_only(recorded_psutil):
    # nvidia-ml-py decodes the driver's bytes strictly.
    undecodable = UnicodeDecodeError("utf-8", b"A100 \xff", 5, 6, "invalid start byte")
    gpu = started(FakeNVML([a100(name=undecodable)])).collect()["gpus"][0]
    assert gpu == {**A100_0, "name": None}


@pytest.mark.parametrize("instances", [0, 3, 7])
def test_a_gpu_in_mig_mode_counts_its_instances(recorded_psutil, instances):
    gpu = started(FakeNVML([fake_nvml.h100_mig(instances)])).collect()["gpus"][0]
    assert (gpu["mig_mode"], gpu["mig_instances"]) == (True, instances)


def test_the_pcie_counters_are_asked_for_each_way_and_not_again_where_unsupported(recorded_psutil):
    nvml = FakeNVML([a100(), consumer_card()])
    collector = started(nvml)
    collector.collect()
    collector.collect()
    # The A100 twice per sample (rx, tx) over two samples; the RTX once, then never again.
    assert nvml.calls["pcie_kbps"] == 4 + 1


def test_a_gpu_that_answers_nothing_still_appears_with_null_fields(recorded_psutil):
    lost = {name: fake_nvml.NVMLError_GpuIsLost() for name in a100()}
    gpus = started(FakeNVML([a100(), lost])).collect()["gpus"]
    assert gpus[1] == {"gpu_index": 1, **{k: None for k in A100_0 if k != "gpu_index"}}
    assert gpus[0] == A100_0


def test_it_clamps_or_nulls_values_the_server_would_refuse(recorded_psutil):
    odd = a100(
        utilization=fake_nvml.utilization(100.4, 250),  # rounding noise, and nonsense
        memory=fake_nvml.memory(0, 5),  # no total: no percent
        temperature=511,  # a sensor fault
        fan=120,
        power_mw=-5,
        name="x" * 300,
        event_reasons=0x800 | 0x008,  # an unknown bit and hw_slowdown
    )
    gpu = started(FakeNVML([odd])).collect()["gpus"][0]
    assert gpu["utilization_gpu_percent"] == 100.0
    assert gpu["utilization_memory_percent"] is None
    assert gpu["memory_percent"] is None
    assert gpu["temperature_c"] is None
    assert gpu["fan_percent"] is None
    assert gpu["power_w"] is None
    assert gpu["name"] == "x" * 200
    assert gpu["throttle_reasons"] == ["hw_slowdown"]


@pytest.mark.parametrize(
    "error", [fake_nvml.NVMLError_LibraryNotFound(), fake_nvml.NVMLError_DriverNotLoaded(), OSError("bad .so")]
)
def test_it_reports_no_gpus_when_nvml_cannot_start(error):
    nvml = FakeNVML([a100()], init_error=error)
    collector = started(nvml)
    assert collector.collect() == {"gpus": []}
    assert collector.status.startswith("no GPUs: NVML is not available")
    assert nvml.calls["name"] == 0
    collector.close()
    assert not nvml.shut_down


def test_it_reports_no_gpus_when_the_nvml_package_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    collector = GpuCollector()
    collector.start()
    assert collector.collect() == {"gpus": []}
    assert "cannot be imported" in collector.status


def test_it_reports_no_gpus_on_a_machine_without_any():
    collector = started(FakeNVML([]))
    assert collector.collect() == {"gpus": []}
    assert collector.status.startswith("0 GPU(s)")


def test_it_shuts_nvml_down_on_close(recorded_psutil):
    nvml = FakeNVML([a100()])
    collector = started(nvml)
    collector.close()
    assert nvml.shut_down


def test_it_names_throttle_reasons_from_the_bit_mask():
    assert throttle_reason_names(0) == []
    assert throttle_reason_names(None) is None
    assert throttle_reason_names(0x1FF) == [
        "gpu_idle",
        "applications_clocks_setting",
        "sw_power_cap",
        "hw_slowdown",
        "sync_boost",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
        "display_clock_setting",
    ]


# --- energy ---


@pytest.mark.parametrize(
    ("millijoules", "joules"),
    [(5_000_123, 5000.123), (0, 0.0), (2**63 - 1, None), (2**64 - 1, None), (-1, None)],
)
def test_the_energy_counter_is_sent_in_joules(recorded_psutil, millijoules, joules):
    gpu = started(FakeNVML([a100(energy_mj=millijoules)])).collect()["gpus"][0]
    assert gpu["energy_joules_total"] == joules


def test_an_energy_counter_the_gpu_lacks_is_null_and_not_asked_for_again(recorded_psutil):
    nvml = FakeNVML([consumer_card()])
    collector = started(nvml)
    for _ in range(3):
        assert collector.collect()["gpus"][0]["energy_joules_total"] is None
    assert nvml.calls["energy_mj"] == 1


# --- XID errors ---


def test_an_xid_error_appears_once_in_the_next_sample_of_its_gpu(recorded_psutil):
    nvml = FakeNVML([a100(), a100(uuid="GPU-2")])
    collector = started(nvml)
    assert [g["xid_errors"] for g in collector.collect()["gpus"]] == [[], []]
    before = datetime.now(UTC)
    nvml.raise_xid(1, 79)
    wait_until(lambda: collector.xid.pending(1) == 1)
    after = datetime.now(UTC)
    gpus = collector.collect()["gpus"]
    assert gpus[0]["xid_errors"] == []
    [event] = gpus[1]["xid_errors"]
    assert event["xid"] == 79
    assert event["at"].endswith("+00:00")
    assert before <= datetime.fromisoformat(event["at"]) <= after
    # Taken by that sample: the next one has nothing.
    assert [g["xid_errors"] for g in collector.collect()["gpus"]] == [[], []]


def test_at_most_64_xid_errors_per_gpu_go_in_one_sample(recorded_psutil, caplog):
    nvml = FakeNVML([a100()])
    collector = started(nvml)
    for number in range(1, 71):
        nvml.raise_xid(0, number)
    wait_until(lambda: collector.xid.pending(0) == 70)
    with caplog.at_level(logging.WARNING, logger=xid_module.__name__):
        events = collector.collect()["gpus"][0]["xid_errors"]
    assert [e["xid"] for e in events] == list(range(1, 65))  # the first 64
    assert "6 are dropped" in caplog.text
    assert collector.collect()["gpus"][0]["xid_errors"] == []


@pytest.mark.parametrize("events", ["unsupported", "missing"])
def test_without_xid_events_the_field_is_null_and_the_rest_still_read(recorded_psutil, events):
    nvml = FakeNVML([a100(), consumer_card()], events=events)
    collector = started(nvml)
    assert collector.collect() == {"gpus": [{**A100_0, "xid_errors": None}, RTX_1]}
    assert collector.xid.thread is None
    assert collector.xid.status.startswith("no XID events")
    collector.close()
    assert all(s.freed for s in nvml.event_sets)  # a set no GPU registered on is freed at once
    assert nvml.shut_down


def test_close_stops_the_event_thread_before_nvml_shuts_down(recorded_psutil):
    nvml = FakeNVML([a100(), consumer_card()])
    collector = started(nvml)
    thread = collector.xid.thread
    assert thread.is_alive()
    collector.close()
    assert not thread.is_alive()
    [event_set] = nvml.event_sets
    assert event_set.freed and not event_set.freed_while_waiting
    assert nvml.sets_in_use_at_shutdown == 0
    assert nvml.shut_down


def test_the_event_thread_survives_nvml_errors_and_logs_them_once(caplog):
    nvml = FakeNVML([a100()])
    for _ in range(3):
        nvml.wait_errors.put(fake_nvml.NVMLError_Unknown())
    watcher = XidWatcher(nvml, [(0, 0)], fake_nvml.nvmlEventTypeXidCriticalError, wait_ms=20, backoff_s=0.01)
    with caplog.at_level(logging.DEBUG, logger=xid_module.__name__):
        watcher.start()
        try:
            nvml.raise_xid(0, 48)
            wait_until(lambda: watcher.pending(0) == 1)
            assert [e["xid"] for e in watcher.drain(0)] == [48]
            assert watcher.thread.is_alive()
        finally:
            watcher.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "waiting for XID events failed" in warnings[0].getMessage()


def test_a_sample_with_energy_and_xid_errors_passes_the_servers_validation(recorded_psutil, sys_block):
    from monitoring.ingest.body import parse_body
    from trainwatch_agent.collectors import Sampler
    from trainwatch_agent.transport import agent_info, encode

    nvml = FakeNVML([a100(), consumer_card()])
    sampler = Sampler(nvml=nvml, sys_block=sys_block)
    sampler.start()
    try:
        nvml.raise_xid(0, 79)
        wait_until(lambda: sampler.gpus.xid.pending(0) == 1)
        sample = sampler.sample()
    finally:
        sampler.close()
    parsed = parse_body(encode(sample, agent_info({})))
    kept, sent = parsed.gpus[0], sample["gpus"][0]
    assert kept["energy_joules_total"] == sent["energy_joules_total"] == 123456.789
    assert [e["xid"] for e in kept["xid_errors"]] == [79]
    assert kept["xid_errors"][0]["at"] == datetime.fromisoformat(sent["xid_errors"][0]["at"])
    assert parsed.gpus[1]["xid_errors"] is None
