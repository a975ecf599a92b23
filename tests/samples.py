"""Realistic agent samples for tests and benchmarks (the contract's recommended form)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

BASE_SAMPLE = {
    "cpu_usage_percent": 32.1,
    "cpu_user_percent": 21.0,
    "cpu_system_percent": 8.4,
    "cpu_iowait_percent": 2.7,
    "cpu_load_1": 6.2,
    "cpu_load_5": 5.8,
    "cpu_load_15": 5.1,
    "cpu_frequency_mhz": 2880.0,
    "cpu_count_logical": 64,
    "cpu_count_physical": 32,
    "memory_total_bytes": 274877906944,
    "memory_used_bytes": 198642237440,
    "memory_available_bytes": 76235669504,
    "memory_percent": 72.3,
    "swap_total_bytes": 0,
    "swap_used_bytes": 0,
    "swap_percent": 0.0,
    "network_rx_bytes_total": 123456789012,
    "network_tx_bytes_total": 23456789012,
    "process_count": 412,
}


def gpu(index: int, util: float = 98.0, memory_percent: float = 80.0, step: int = 0, **extra) -> dict:
    """One GPU as `step` samples of 2 s after a base point: it draws 300 W on average."""
    total = 85899345920
    return {
        "gpu_index": index,
        "name": "NVIDIA A100-SXM4-80GB",
        "uuid": f"GPU-0000000{index}-aaaa-bbbb-cccc-dddddddddddd",
        "utilization_gpu_percent": util,
        "utilization_memory_percent": 71.0,
        "memory_total_bytes": total,
        "memory_used_bytes": int(total * memory_percent / 100),
        "memory_percent": memory_percent,
        "temperature_c": 64.0,
        "power_w": 311.0,
        "power_limit_w": 400.0,
        "pcie_rx_bytes_per_s": 6.5e9,
        "pcie_tx_bytes_per_s": 1.2e9,
        "encoder_util_percent": 0.0,
        "decoder_util_percent": 3.0,
        "mig_mode": False,
        "mig_instances": 0,
        "energy_joules_total": 4.2e8 + step * 2 * 300.0,
        "xid_errors": [],
        **extra,
    }


def disk(
    device: str,
    step: int = 0,
    *,
    read_bps: int = 100_000_000,
    write_bps: int = 5_000_000,
    busy_permille: int = 600,
    seconds: float = 2.0,
) -> dict:
    """Counters as they would be `step` samples of `seconds` after a base point."""
    elapsed = step * seconds
    return {
        "device": device,
        "read_bytes_total": 111111111111 + int(read_bps * elapsed),
        "write_bytes_total": 22222222222 + int(write_bps * elapsed),
        "read_count_total": 1234567 + int(800 * elapsed),
        "write_count_total": 456789 + int(100 * elapsed),
        "busy_time_ms_total": 9876543 + int(busy_permille * elapsed),
    }


def sample(at: datetime | None = None, *, gpus: int = 4, disks: int = 2, step: int = 0, **fields) -> dict:
    """The sample part of a body; `step` advances the counters as if 2 s had passed per step."""
    body = copy.deepcopy(BASE_SAMPLE)
    if at is not None:
        body["collected_at"] = at.isoformat()
    body["network_rx_bytes_total"] += step * 2 * 50_000_000
    body["network_tx_bytes_total"] += step * 2 * 1_000_000
    body["gpus"] = [gpu(i, step=step) for i in range(gpus)]
    body["disks"] = [disk(name, step) for name in ("nvme0n1", "nvme1n1", "sda", "sdb")[:disks]]
    body.update(fields)
    return body


def body(at: datetime | None = None, **kwargs) -> dict:
    return {
        "sample": sample(at, **kwargs),
        "agent": {
            "version": "0.1.0",
            "hostname": "train01",
            "platform": "Linux-6.8.0-x86_64-with-glibc2.39",
            "python": "3.12.3",
            "labels": {"rack": "r1", "role": "trainer"},
        },
    }


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def now_minus(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def seed_history(slug: str, days: float, *, gpus: int, seed: int = 0, interval: int = 10) -> None:
    """Synthetic history straight into the hypertables and the tiers (manage.py seed_history)."""
    from io import StringIO

    from django.core.management import call_command

    call_command(
        "seed_history",
        slug,
        "--days",
        str(days),
        "--gpus",
        str(gpus),
        "--disks",
        "1",
        "--interval",
        str(interval),
        "--seed",
        str(seed),
        "--no-progress",
        stdout=StringIO(),
    )
