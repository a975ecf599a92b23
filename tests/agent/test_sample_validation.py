"""What the agent posts passes the server's own validation (monitoring.ingest.body.parse_body)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from monitoring.ingest.body import parse_body
from tests.agent.fake_nvml import FakeNVML, a100, consumer_card
from trainwatch_agent.collectors import Sampler
from trainwatch_agent.transport import agent_info, encode

LABELS = {"rack": "r1", "role": "trainer"}


def body_of(sample: dict) -> bytes:
    return encode(sample, agent_info(LABELS))


def test_a_sample_with_gpus_passes_the_servers_validation(recorded_psutil, sys_block):
    sampler = Sampler(nvml=FakeNVML([a100(), consumer_card(), a100()]), sys_block=sys_block)
    sampler.start()
    sample = sampler.sample()
    parsed = parse_body(body_of(sample))
    assert parsed.collected_at == datetime.fromisoformat(sample["collected_at"])
    assert [g["gpu_index"] for g in parsed.gpus] == [0, 1, 2]
    # Everything the agent sent is what the server keeps (no field silently dropped or renamed).
    for sent, kept in zip(sample["gpus"], parsed.gpus):
        assert kept == sent
    assert parsed.disks == sample["disks"]
    assert parsed.host == {k: sample[k] for k in parsed.host}
    assert all(v is not None for v in parsed.host.values())
    assert parsed.agent["labels"] == LABELS
    assert parsed.agent["version"] == "0.1.0"


def test_a_sample_of_odd_gpu_readings_still_passes(recorded_psutil, sys_block):
    odd = a100(
        temperature=-273,
        fan=100.6,  # rounding noise: clamped
        power_mw=10**22,
        memory=type("M", (), {"total": 2**70, "used": 2**69})(),
        uuid="GPU-\x00" + "u" * 200,
        processes=[type("P", (), {"pid": 2**40, "usedGpuMemory": 2**64 - 1})()],
    )
    sampler = Sampler(nvml=FakeNVML([odd]), sys_block=sys_block)
    sampler.start()
    parsed = parse_body(body_of(sampler.sample()))
    gpu = parsed.gpus[0]
    assert gpu["temperature_c"] is None
    assert gpu["fan_percent"] == 100.0
    assert gpu["memory_total_bytes"] is None
    assert len(gpu["uuid"]) == 100 and "\x00" not in gpu["uuid"]
    assert gpu["processes"][0]["used_memory_bytes"] is None  # NVML's "not available" marker


@pytest.mark.parametrize("first_sample", [True, False])
def test_this_machines_own_sample_passes_the_servers_validation(first_sample):
    """The real collectors (this machine has no GPU: the real pynvml finds no NVML library)."""
    sampler = Sampler()
    if first_sample:
        sampler.cpu.prime()
        sampler.gpus.start()
    else:
        sampler.start()
        time.sleep(0.2)
        sampler.sample()
    time.sleep(0.2)
    sample = sampler.sample()
    parsed = parse_body(body_of(sample))
    assert sample["gpus"] == [] and parsed.gpus == []
    assert abs((datetime.now(UTC) - parsed.collected_at).total_seconds()) < 5
    assert parsed.host["memory_total_bytes"] > 0
    assert parsed.host["cpu_count_logical"] >= 1
    assert parsed.host["cpu_usage_percent"] is not None
    devices = [d["device"] for d in parsed.disks]
    assert devices, "this machine has at least one disk"
    assert not [d for d in devices if d.startswith(("loop", "zram", "ram", "dm-"))]
    json.loads(body_of(sample))  # plain JSON: no NaN or Infinity
