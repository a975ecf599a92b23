"""Realistic synthetic history for demos and benchmarks (used by `manage.py seed_history` and the
demo feeder): rows of one node every few seconds along timeline.py's schedule. Each sample carries
the label of the phase it was generated for, with numbers that the classifier reads the same way.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .. import catalogue
from ..classify import RULES_VERSION
from .timeline import PHASES, PROCESS, Phase, schedule, workload

DISK_COUNTERS = catalogue.counters("disk")
DISK_NAMES = ("nvme0n1", "nvme1n1", "sda", "sdb", "sdc", "sdd", "sde", "sdf")


@dataclass(frozen=True)
class GpuModel:
    """A GPU as NVML describes it: its name, memory, power limit and top clocks."""

    name: str
    memory_bytes: int
    power_limit_w: float
    sm_clock_max_mhz: float
    memory_clock_max_mhz: float
    sm_clock_idle_mhz: float = 210.0


# SXM modules at their default power limits; memory as NVML reports it (MiB).
GPU_MODELS = {
    "a100": GpuModel("NVIDIA A100-SXM4-80GB", 81920 * 2**20, 400.0, 1410.0, 1593.0),
    "h100": GpuModel("NVIDIA H100 80GB HBM3", 81559 * 2**20, 700.0, 1980.0, 2619.0),
}


@dataclass
class Row:
    at: datetime
    phase: Phase
    snapshot: dict
    label: dict  # the snapshot's label row, as the classifier would write it
    gpus: list[dict] = field(default_factory=list)
    disks: list[dict] = field(default_factory=list)


class Generator:
    """Samples of one node every `interval` seconds, with counters that only grow."""

    def __init__(self, server_id: int, gpus: int, disks: int, interval: float, seed: int = 0, gpu_model: str = "a100"):
        self.server_id, self.gpu_count, self.interval = server_id, gpus, interval
        self.rng = random.Random(seed)
        self.model = GPU_MODELS[gpu_model]
        self.devices = list(DISK_NAMES[:disks])
        self.disk_totals = {d: [10**11, 10**10, 10**6, 10**5, 10**6] for d in self.devices}
        self.net = [10**11, 10**10]
        self.memory_total = 256 * 2**30
        self.energy = [5e8] * gpus  # joules since the driver loaded
        # Whose run it is: a workload from each run's start (its own random stream, so that the
        # samples' numbers are those of a seed whatever the workloads).
        self.workload_rng = random.Random(seed + 1)
        self.runs = 0
        self.workload: dict | None = None

    def resume(self, net: Iterable[int | None], disks: dict[str, Iterable[int]], energy: dict[int, float]) -> None:
        """Go on from counters stored earlier (a node's newest sample), so that they only grow:
        `net` received and sent, `disks` each device's totals in DISK_COUNTERS order, `energy`
        each GPU's joules. A counter not given (or None) keeps its start."""
        self.net = [max(a, b or 0) for a, b in zip(self.net, net)]
        for device, totals in disks.items():
            if device in self.disk_totals:
                self.disk_totals[device] = [max(a, b or 0) for a, b in zip(self.disk_totals[device], totals)]
        for index, joules in energy.items():
            if 0 <= index < self.gpu_count:
                self.energy[index] = max(self.energy[index], joules)

    def _uniform(self, bounds: tuple[float, float]) -> float:
        return self.rng.uniform(*bounds)

    def rows(self, start: datetime, end: datetime) -> Iterator[Row]:
        yield from self.along(schedule(start, end, self.rng), start, end)

    def along(
        self, phases: Iterable[tuple[datetime, datetime, str]], start: datetime, end: datetime | None = None
    ) -> Iterator[Row]:
        """Rows every interval from `start` along (from, to, phase name) pieces, up to `end` (None:
        for as long as the pieces go on)."""
        step, at = timedelta(seconds=self.interval), start
        for _, hi, name in phases:
            phase = PHASES[name]
            while at < hi and (end is None or at < end):
                yield self.row(at, phase)
                at += step

    def row(self, at: datetime, phase: Phase) -> Row:
        u, rng, dt = self._uniform, self.rng, self.interval
        cpu, iowait = u(phase.cpu), u(phase.iowait)
        memory, swap = u(phase.memory), u(phase.swap)
        disks, reads, writes, utils = [], 0.0, 0.0, []
        share = 1.0 / max(1, len(self.devices))
        for index, device in enumerate(self.devices):
            busy = u(phase.disk_util) if index == 0 else u(phase.disk_util) * 0.3
            read = u(phase.read_mbps) * 1e6 * (1.0 if index == 0 else share)
            write = u(phase.write_mbps) * 1e6 * (1.0 if index == 0 else share)
            totals = self.disk_totals[device]
            totals[0] += int(read * dt)
            totals[1] += int(write * dt)
            totals[2] += int(read / 131072 * dt)
            totals[3] += int(write / 131072 * dt)
            totals[4] += int(busy * 10 * dt)
            disks.append(
                {
                    "server_id": self.server_id,
                    "collected_at": at,
                    "device": device,
                    **dict(zip(DISK_COUNTERS, totals)),
                    "read_bps": read,
                    "write_bps": write,
                    "util_percent": busy,
                }
            )
            reads, writes = reads + read, writes + write
            utils.append(busy)
        rx, tx = u((1, 400)) * 1e6, u((1, 50)) * 1e6
        self.net[0] += int(rx * dt)
        self.net[1] += int(tx * dt)
        gpus, top, util_total, joules_total = [], 0.0, 0.0, 0.0
        model = self.model
        if not phase.process:
            self.workload = None  # the run is over
        elif self.workload is None:
            self.workload, self.runs = workload(self.runs, self.workload_rng), self.runs + 1
        for index in range(self.gpu_count):
            util = min(100.0, u(phase.gpu_util))
            mem = u(phase.gpu_memory)
            limit = model.power_limit_w
            power = limit * min(1.0, u(phase.power_share))
            # Boost clocks while busy, a step down when capped, the idle clock when nothing runs.
            boost = model.sm_clock_max_mhz * (u((0.78, 0.9)) if phase.throttle else 1.0)
            sm_clock = model.sm_clock_idle_mhz if util < 1 else max(model.sm_clock_idle_mhz, boost)
            # Steady within a sample: the average over the interval is the reading.
            energy_w = power
            self.energy[index] += energy_w * dt
            top = max(top, util)
            util_total += util
            joules_total += energy_w * dt
            throttle = list(phase.throttle) if phase.throttle else (["gpu_idle"] if util < 1 else [])
            gpus.append(
                {
                    "server_id": self.server_id,
                    "collected_at": at,
                    "gpu_index": index,
                    "name": model.name,
                    "uuid": f"GPU-{self.server_id:08x}-{index:04x}",
                    "utilization_gpu_percent": util,
                    "utilization_memory_percent": util * 0.7,
                    "memory_total_bytes": model.memory_bytes,
                    "memory_used_bytes": int(model.memory_bytes * mem / 100),
                    "memory_percent": mem,
                    "temperature_c": u((35, 45)) + util * 0.35,
                    "power_w": power,
                    "power_limit_w": limit,
                    "sm_clock_mhz": sm_clock,
                    "sm_clock_max_mhz": model.sm_clock_max_mhz,
                    "memory_clock_mhz": model.memory_clock_max_mhz,
                    "memory_clock_max_mhz": model.memory_clock_max_mhz,
                    "throttle_reasons": throttle,
                    "processes": [self._process(index)] if phase.process and mem > 5 else [],
                    # Batches go to the GPU at about the rate they are read; results come back small.
                    "pcie_rx_bytes_per_s": reads / max(1, self.gpu_count) * u((1.5, 3.0)),
                    "pcie_tx_bytes_per_s": u((5, 50)) * 1e6,
                    "encoder_util_percent": 0.0,
                    "decoder_util_percent": 0.0,
                    "mig_mode": False,
                    "mig_instances": 0,
                    "energy_joules_total": self.energy[index],
                    "energy_w": energy_w,
                    "energy_joules": energy_w * dt,
                }
            )
        confidence = round(0.7 + rng.random() * 0.28, 2)
        snapshot = {
            "server_id": self.server_id,
            "collected_at": at,
            "received_at": at,
            "cpu_usage_percent": cpu,
            "cpu_user_percent": cpu * 0.7,
            "cpu_system_percent": cpu * 0.2,
            "cpu_iowait_percent": iowait,
            "cpu_load_1": cpu / 100 * 64,
            "cpu_load_5": cpu / 100 * 60,
            "cpu_load_15": cpu / 100 * 58,
            "cpu_frequency_mhz": 2800.0,
            "cpu_count_logical": 64,
            "cpu_count_physical": 32,
            "memory_total_bytes": self.memory_total,
            "memory_used_bytes": int(self.memory_total * memory / 100),
            "memory_available_bytes": int(self.memory_total * (100 - memory) / 100),
            "memory_percent": memory,
            "swap_total_bytes": 64 * 2**30,
            "swap_used_bytes": int(64 * 2**30 * swap / 100),
            "swap_percent": swap,
            "network_rx_bytes_total": self.net[0],
            "network_tx_bytes_total": self.net[1],
            "network_rx_bps": rx,
            "network_tx_bps": tx,
            "process_count": rng.randint(380, 460),
            "disk_read_bps": reads,
            "disk_write_bps": writes,
            "disk_util_percent": max(utils) if utils else None,
            "gpu_count": self.gpu_count,
            "gpu_top_util_percent": top if self.gpu_count else None,
            "gpu_util_total_percent": util_total if self.gpu_count else None,
            "gpu_energy_joules": joules_total if self.gpu_count else None,
        }
        label = {
            "server_id": self.server_id,
            "collected_at": at,
            "label": phase.label,
            "confidence": confidence,
            "reason": phase.reason,
            "rules_version": RULES_VERSION,
            "classified_at": at,
            "gpu_count": self.gpu_count,
        }
        return Row(at, phase, snapshot, label, gpus, disks)

    def _process(self, index: int) -> dict:
        """The run's process on GPU `index`, with its workload."""
        run = self.workload or {}
        return {
            **PROCESS,
            "pid": PROCESS["pid"] + 8 * self.runs + index,
            "user": run.get("user") or PROCESS["user"],
            "workload": dict(run) if run else None,
        }


def columns(row: dict) -> str:
    """The COPY column list of a row built above (every row of a kind has the same keys)."""
    return ", ".join(row)
