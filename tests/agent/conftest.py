"""Fixtures of the agent's tests: recorded psutil readings, a fake NVML, a fake /sys/block."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from tests.agent import recorded


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: installs the agent into a fresh virtualenv (tens of seconds)")


@pytest.fixture(autouse=True)
def empty_proc_root(monkeypatch, tmp_path_factory):
    """GPU processes' workloads are read from an empty /proc unless a test lays one out: the fake
    NVML's pids may be real processes on the machine that runs the tests."""
    monkeypatch.setenv("TRAINWATCH_PROC_ROOT", str(tmp_path_factory.mktemp("proc")))


@pytest.fixture
def sys_block(tmp_path: Path) -> str:
    """A /sys/block as a kernel lays it out: real disks link to their bus, virtual ones under devices/virtual."""
    root = tmp_path / "sys" / "block"
    root.mkdir(parents=True)
    links = {
        "nvme0n1": "../devices/pci0000:00/0000:00:1d.0/nvme/nvme0/nvme0n1",
        "sda": "../devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda",
        "cciss!c0d0": "../devices/pci0000:00/0000:00:03.0/cciss0/cciss!c0d0",
        "loop0": "../devices/virtual/block/loop0",
        "dm-0": "../devices/virtual/block/dm-0",
        "md0": "../devices/virtual/block/md0",
        "zram0": "../devices/virtual/block/zram0",
        "ram0": "../devices/virtual/block/ram0",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    return str(root)


@pytest.fixture
def recorded_psutil(monkeypatch):
    """psutil answering with values recorded on a training node (two consecutive readings of the CPU)."""
    cpu_times = iter([recorded.CPU_TIMES_BEFORE, recorded.CPU_TIMES_AFTER, recorded.CPU_TIMES_LATER])
    monkeypatch.setattr(psutil, "cpu_times", lambda percpu=False: next(cpu_times))
    monkeypatch.setattr(psutil, "getloadavg", lambda: recorded.LOADAVG)
    monkeypatch.setattr(psutil, "cpu_freq", lambda percpu=False: recorded.CPU_FREQ)
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 64 if logical else 32)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: recorded.VIRTUAL_MEMORY)
    monkeypatch.setattr(psutil, "swap_memory", lambda: recorded.SWAP_MEMORY)
    monkeypatch.setattr(psutil, "net_io_counters", lambda pernic=False, nowrap=True: dict(recorded.NET_IO))
    monkeypatch.setattr(psutil, "disk_io_counters", lambda perdisk=False, nowrap=True: dict(recorded.DISK_IO))
    monkeypatch.setattr(psutil, "pids", lambda: list(range(1, 413)))
    monkeypatch.setattr(psutil, "Process", recorded.FakeProcess)
