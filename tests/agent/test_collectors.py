"""The host collectors against recorded psutil readings: the exact fields a sample gets."""

from __future__ import annotations

from datetime import UTC, datetime

import psutil

from tests.agent import recorded
from tests.agent.fake_nvml import FakeNVML
from trainwatch_agent.collectors import Sampler, cpu, disks, memory, network, processes

T0 = datetime(2026, 2, 26, 2, 37, 49, 120000, tzinfo=UTC)


def test_it_builds_the_exact_host_sample_from_recorded_readings(recorded_psutil, sys_block):
    sampler = Sampler(nvml=FakeNVML([]), sys_block=sys_block, clock=lambda: T0)
    sampler.start()
    sample = sampler.sample()
    assert sample == {
        "collected_at": "2026-02-26T02:37:49.120000+00:00",
        **recorded.EXPECTED_HOST,
        "disks": recorded.EXPECTED_DISKS,
        "gpus": [],
    }


def test_it_measures_cpu_shares_over_the_interval_not_since_boot(recorded_psutil):
    collector = cpu.CpuCollector()
    collector.prime()
    first = collector.collect()
    assert first["cpu_usage_percent"] == 28.91  # 37 of 128 CPU-seconds
    second = collector.collect()  # the next 2 s were idle
    assert second["cpu_usage_percent"] == 0.0
    assert second["cpu_user_percent"] == 0.0
    assert second["cpu_iowait_percent"] == 0.0


def test_it_leaves_cpu_shares_null_until_primed(recorded_psutil):
    sample = cpu.CpuCollector().collect()
    assert sample["cpu_usage_percent"] is None
    assert sample["cpu_user_percent"] is None
    assert sample["cpu_load_1"] == 6.2


def test_it_never_reports_a_negative_share_when_counters_go_backwards(monkeypatch):
    before = recorded.CPU_TIMES_AFTER
    after = before._replace(idle=before.idle - 50, user=before.user + 10)  # a CPU went offline
    readings = iter([before, after])
    monkeypatch.setattr(psutil, "cpu_times", lambda percpu=False: next(readings))
    collector = cpu.CpuCollector()
    collector.prime()
    sample = collector.collect()
    assert sample["cpu_usage_percent"] == 100.0
    assert sample["cpu_iowait_percent"] == 0.0


def test_it_reports_no_frequency_where_the_kernel_has_none(monkeypatch, recorded_psutil):
    monkeypatch.setattr(psutil, "cpu_freq", lambda percpu=False: None)
    assert cpu.CpuCollector().collect()["cpu_frequency_mhz"] is None

    def broken(percpu=False):
        raise FileNotFoundError("/sys/devices/system/cpu/cpufreq")

    monkeypatch.setattr(psutil, "cpu_freq", broken)
    assert cpu.CpuCollector().collect()["cpu_frequency_mhz"] is None


def test_it_counts_whole_physical_disks_only(recorded_psutil, sys_block):
    sample = disks.DiskCollector(sys_block).collect()
    names = [d["device"] for d in sample["disks"]]
    # Partitions (nvme0n1p1, sda1) and virtual devices (loop0, dm-0, md0, zram0) are left out.
    assert names == ["cciss/c0d0", "nvme0n1", "sda"]


def test_it_sees_a_hot_plugged_disk_within_a_minute(recorded_psutil, sys_block, monkeypatch):
    import os

    now = [1000.0]
    collector = disks.DiskCollector(sys_block, clock=lambda: now[0])
    assert "nvme1n1" not in [d["device"] for d in collector.collect()["disks"]]
    os.symlink("../devices/pci0000:00/0000:00:1e.0/nvme/nvme1/nvme1n1", os.path.join(sys_block, "nvme1n1"))
    monkeypatch.setitem(recorded.DISK_IO, "nvme1n1", recorded._disk(1, 2, 3, 4, 5))
    now[0] += 59
    assert "nvme1n1" not in [d["device"] for d in collector.collect()["disks"]]
    now[0] += 2
    assert "nvme1n1" in [d["device"] for d in collector.collect()["disks"]]


def test_it_sends_no_disks_when_sys_block_is_unreadable(recorded_psutil, tmp_path):
    assert disks.DiskCollector(str(tmp_path / "missing")).collect() == {"disks": []}


def test_it_sums_network_traffic_over_every_interface_but_loopback(recorded_psutil):
    assert network.collect() == {
        "network_rx_bytes_total": 123456789012,
        "network_tx_bytes_total": 23456789012,
    }


def test_it_reports_memory_and_swap(recorded_psutil):
    assert memory.collect() == {k: v for k, v in recorded.EXPECTED_HOST.items() if k.startswith(("memory", "swap"))}


def test_it_counts_processes(recorded_psutil):
    assert processes.collect() == {"process_count": 412}


def test_a_failing_collector_costs_only_its_own_fields(recorded_psutil, sys_block, monkeypatch, caplog):
    def broken():
        raise RuntimeError("psutil bug")

    monkeypatch.setattr(psutil, "virtual_memory", broken)
    monkeypatch.setattr(memory, "collect", broken)
    sampler = Sampler(nvml=FakeNVML([]), sys_block=sys_block, clock=lambda: T0)
    sampler.start()
    sample = sampler.sample()
    assert "memory_percent" not in sample
    assert sample["cpu_usage_percent"] == recorded.EXPECTED_HOST["cpu_usage_percent"]
    assert sample["disks"] == recorded.EXPECTED_DISKS
    assert "the memory collector failed" in caplog.text
