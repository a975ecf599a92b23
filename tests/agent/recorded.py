"""psutil readings recorded on a 64-thread training node with NVMe disks, in psutil's own types."""

from __future__ import annotations

import psutil

scputimes = type(psutil.cpu_times())
svmem = type(psutil.virtual_memory())
sswap = type(psutil.swap_memory())
snetio = type(psutil.net_io_counters())
scpufreq = type(psutil.cpu_freq())
sdiskio = type(psutil.disk_io_counters())


def _cpu(user, nice, system, idle, iowait, irq, softirq, steal, guest=0.0, guest_nice=0.0):
    return scputimes(user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice)


# 2 s apart on 64 threads = 128 CPU-seconds: user 24 + nice 2, system 9 + irq 1 + softirq 1,
# iowait 6, steal 0, idle 85 -> usage 37/128, user 26/128, system 11/128, iowait 6/128.
# Guest time (3 s) is already inside user and must not be counted twice.
CPU_TIMES_BEFORE = _cpu(100000.0, 500.0, 40000.0, 900000.0, 3000.0, 200.0, 800.0, 0.0, guest=50.0)
CPU_TIMES_AFTER = _cpu(100024.0, 502.0, 40009.0, 900085.0, 3006.0, 201.0, 801.0, 0.0, guest=53.0)
# The next 2 s: all 128 CPU-seconds idle.
CPU_TIMES_LATER = _cpu(100024.0, 502.0, 40009.0, 900213.0, 3006.0, 201.0, 801.0, 0.0, guest=53.0)

LOADAVG = (6.2, 5.8, 5.1)
CPU_FREQ = scpufreq(current=2880.04, min=800.0, max=3500.0)
VIRTUAL_MEMORY = svmem(
    total=274877906944,
    available=76235669504,
    percent=72.3,
    used=198642237440,
    free=1000000000,
    active=1,
    inactive=1,
    buffers=1,
    cached=1,
    shared=1,
    slab=1,
)
SWAP_MEMORY = sswap(total=8589934592, used=1073741824, free=7516192768, percent=12.5, sin=0, sout=0)
NET_IO = {
    "lo": snetio(99999999, 99999999, 1, 1, 0, 0, 0, 0),
    "eth0": snetio(
        bytes_sent=20000000000,
        bytes_recv=120000000000,
        packets_sent=1,
        packets_recv=1,
        errin=0,
        errout=0,
        dropin=0,
        dropout=0,
    ),
    "ib0": snetio(
        bytes_sent=3456789012,
        bytes_recv=3456789012,
        packets_sent=1,
        packets_recv=1,
        errin=0,
        errout=0,
        dropin=0,
        dropout=0,
    ),
}


def _disk(read_count, write_count, read_bytes, write_bytes, busy_time):
    return sdiskio(read_count, write_count, read_bytes, write_bytes, 0, 0, 0, 0, busy_time)


DISK_IO = {
    "nvme0n1": _disk(1234567, 456789, 111111111111, 22222222222, 9876543),
    "nvme0n1p1": _disk(1000, 10, 5000000, 50000, 300),
    "nvme0n1p2": _disk(1233567, 456779, 111106111111, 22222172222, 9876243),
    "sda": _disk(5000, 6000, 700000000, 800000000, 4321),
    "sda1": _disk(5000, 6000, 700000000, 800000000, 4321),
    "cciss/c0d0": _disk(10, 20, 4096, 8192, 7),
    "loop0": _disk(100, 0, 409600, 0, 12),
    "dm-0": _disk(1233567, 456779, 111106111111, 22222172222, 9876243),
    "md0": _disk(1, 1, 512, 512, 1),
    "zram0": _disk(2, 2, 8192, 8192, 0),
}

EXPECTED_HOST = {
    "cpu_usage_percent": round(100 * 37 / 128, 2),
    "cpu_user_percent": round(100 * 26 / 128, 2),
    "cpu_system_percent": round(100 * 11 / 128, 2),
    "cpu_iowait_percent": round(100 * 6 / 128, 2),
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
    "swap_total_bytes": 8589934592,
    "swap_used_bytes": 1073741824,
    "swap_percent": 12.5,
    "network_rx_bytes_total": 120000000000 + 3456789012,
    "network_tx_bytes_total": 20000000000 + 3456789012,
    "process_count": 412,
}

EXPECTED_DISKS = [
    {
        "device": "cciss/c0d0",
        "read_bytes_total": 4096,
        "write_bytes_total": 8192,
        "read_count_total": 10,
        "write_count_total": 20,
        "busy_time_ms_total": 7,
    },
    {
        "device": "nvme0n1",
        "read_bytes_total": 111111111111,
        "write_bytes_total": 22222222222,
        "read_count_total": 1234567,
        "write_count_total": 456789,
        "busy_time_ms_total": 9876543,
    },
    {
        "device": "sda",
        "read_bytes_total": 700000000,
        "write_bytes_total": 800000000,
        "read_count_total": 5000,
        "write_count_total": 6000,
        "busy_time_ms_total": 4321,
    },
]

# Processes as psutil would describe them: 4242 is a training job, 4343 belongs to someone else
# (username refused), anything else has exited.
PROCESSES = {4242: ("python3", "alice"), 4343: ("torchrun", None)}


class FakeProcess:
    def __init__(self, pid: int):
        if pid not in PROCESSES:
            raise psutil.NoSuchProcess(pid)
        self.pid = pid

    def name(self) -> str:
        return PROCESSES[self.pid][0]

    def username(self) -> str:
        user = PROCESSES[self.pid][1]
        if user is None:
            raise psutil.AccessDenied(self.pid)
        return user
