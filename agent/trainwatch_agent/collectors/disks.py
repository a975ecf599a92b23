"""Disks: I/O counters per whole physical disk, from psutil.disk_io_counters(perdisk=True).

Which devices count:

- whole disks only: a name listed in /sys/block (sda, nvme0n1, vda). Partitions
  (sda1, nvme0n1p2) are not there; their I/O is already part of their disk's.
- no virtual block devices: an entry of /sys/block that links under
  /sys/devices/virtual/ (loop*, ram*, zram*, device-mapper dm-*, md RAID, nbd*) is
  skipped. They are memory-backed or stacked on physical disks that are already
  counted, and the server adds the disks' throughput up, so they would count the
  same bytes twice.

The set of disks is re-read from /sys/block once a minute, so a hot-plugged disk shows
up without a restart.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import psutil

from trainwatch_agent import values

log = logging.getLogger(__name__)

SYS_BLOCK = "/sys/block"
REFRESH_SECONDS = 60.0


def physical_disks(sys_block: str = SYS_BLOCK) -> frozenset[str] | None:
    """Names of the whole, non-virtual disks; None when /sys/block cannot be read."""
    try:
        entries = os.listdir(sys_block)
    except OSError:
        return None
    disks = set()
    for entry in entries:
        try:
            target = os.readlink(os.path.join(sys_block, entry))
        except OSError:
            target = ""  # very old kernels: a directory, not a link; a real disk
        if "devices/virtual/" in target:
            continue
        # /sys/block spells a '/' in a device name as '!' (cciss!c0d0 is cciss/c0d0).
        disks.add(entry.replace("!", "/"))
    return frozenset(disks)


class DiskCollector:
    def __init__(self, sys_block: str = SYS_BLOCK, clock: Callable[[], float] = time.monotonic) -> None:
        self._sys_block = sys_block
        self._clock = clock
        self._disks: frozenset[str] | None = None
        self._listed_at: float | None = None
        self._warned = False

    def _whole_disks(self) -> frozenset[str]:
        now = self._clock()
        if self._listed_at is None or now - self._listed_at >= REFRESH_SECONDS:
            self._disks = physical_disks(self._sys_block)
            self._listed_at = now
            if self._disks is None and not self._warned:
                self._warned = True
                log.warning("cannot read %s: no per-disk counters will be sent", self._sys_block)
        return self._disks or frozenset()

    def collect(self) -> dict[str, Any]:
        whole = self._whole_disks()
        try:
            counters = psutil.disk_io_counters(perdisk=True) or {}
        except (OSError, ValueError, NotImplementedError):
            counters = {}
        disks = []
        for device in sorted(counters):
            if device not in whole:
                continue
            c = counters[device]
            disks.append(
                {
                    "device": values.text(device, 64),
                    "read_bytes_total": values.counter(c.read_bytes),
                    "write_bytes_total": values.counter(c.write_bytes),
                    "read_count_total": values.counter(c.read_count),
                    "write_count_total": values.counter(c.write_count),
                    "busy_time_ms_total": values.counter(getattr(c, "busy_time", None)),
                }
            )
        return {"disks": disks}
