"""Realistic synthetic history for demos and benchmarks (used by `manage.py seed_history`).

A node's days follow a working pattern: training runs start mostly in working hours;
each run loads data (CPU-bound), trains (GPU-bound, with checkpoint writes that make it
IO-bound, power-capped stretches, evaluation), and sometimes ends with its process still
holding GPU memory; nights and weekends are mostly idle. Every bottleneck label occurs.
Each sample carries the label of the phase it was generated for, with numbers that the
classifier reads the same way.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import catalogue
from .classify import RULES_VERSION

DISK_COUNTERS = catalogue.counters("disk")
PROCESS = {"pid": 4242, "name": "python", "user": "ml", "type": "compute"}


@dataclass(frozen=True)
class Phase:
    label: str
    gpu_util: tuple[float, float]
    gpu_memory: tuple[float, float]
    cpu: tuple[float, float]
    iowait: tuple[float, float]
    disk_util: tuple[float, float]
    memory: tuple[float, float]
    swap: tuple[float, float] = (0.0, 0.0)
    power_share: tuple[float, float] = (0.3, 0.6)  # of the power limit
    read_mbps: tuple[float, float] = (5.0, 50.0)
    write_mbps: tuple[float, float] = (1.0, 10.0)
    throttle: tuple[str, ...] = ()
    process: bool = True
    reason: str = ""


PHASES = {
    "loading": Phase(
        "cpu-bound",
        (15, 40),
        (30, 60),
        (88, 99),
        (1, 5),
        (30, 60),
        (55, 70),
        read_mbps=(200, 600),
        reason="GPU waits on data loading: CPU saturated",
    ),
    "training": Phase(
        "gpu-bound",
        (92, 100),
        (75, 92),
        (35, 60),
        (1, 4),
        (15, 40),
        (60, 75),
        power_share=(0.7, 0.93),
        read_mbps=(100, 400),
        reason="GPU saturated while CPU and disk are lower",
    ),
    "throttled": Phase(
        "gpu-throttled",
        (93, 100),
        (75, 92),
        (35, 55),
        (1, 4),
        (15, 35),
        (60, 75),
        power_share=(0.985, 1.0),
        throttle=("sw_power_cap",),
        read_mbps=(100, 300),
        reason="GPU held at its power limit",
    ),
    "checkpoint": Phase(
        "io-bound",
        (10, 45),
        (75, 92),
        (20, 40),
        (25, 45),
        (88, 100),
        (60, 75),
        write_mbps=(800, 1800),
        reason="checkpoint writes saturate the disk",
    ),
    "evaluation": Phase(
        "balanced",
        (72, 86),
        (60, 80),
        (40, 65),
        (2, 6),
        (30, 60),
        (60, 72),
        power_share=(0.5, 0.8),
        reason="no resource saturated",
    ),
    "swapping": Phase(
        "memory-bound",
        (10, 40),
        (60, 80),
        (50, 80),
        (5, 15),
        (40, 70),
        (96, 99.5),
        swap=(25, 60),
        reason="host memory full, swapping",
    ),
    "held": Phase(
        "gpu-idle-held",
        (0, 1),
        (60, 85),
        (1, 5),
        (0, 1),
        (0, 3),
        (40, 55),
        power_share=(0.15, 0.2),
        reason="GPU memory held at 0% utilization",
    ),
    "idle": Phase(
        "idle",
        (0, 1),
        (0, 1),
        (1, 6),
        (0, 1),
        (0, 4),
        (15, 30),
        power_share=(0.12, 0.16),
        process=False,
        read_mbps=(0, 1),
        write_mbps=(0, 1),
        reason="nothing is busy",
    ),
}


@dataclass
class Row:
    at: datetime
    phase: Phase
    snapshot: dict
    gpus: list[dict] = field(default_factory=list)
    disks: list[dict] = field(default_factory=list)


def schedule(start: datetime, end: datetime, rng: random.Random) -> Iterator[tuple[datetime, datetime, str]]:
    """(from, to, phase name) covering [start, end) without gaps. It opens with a run that goes
    through every phase and a rest, so that a history of a few hours has every label, whatever
    the time of day it starts at."""
    first = _run(start, rng, every_phase=True)
    rest = first[-1][1]
    first.append((rest, rest + timedelta(minutes=rng.uniform(20, 60)), "idle"))
    yield from first
    t = first[-1][1]
    while t < end:
        working = t.weekday() < 5 and 8 <= t.hour < 20
        if rng.random() < (0.8 if working else 0.25):
            run = _run(t, rng)
            yield from run
            t = run[-1][1]
        else:
            idle = timedelta(minutes=rng.uniform(20, 120 if working else 300))
            yield t, t + idle, "idle"
            t += idle


def _run(t: datetime, rng: random.Random, every_phase: bool = False) -> list[tuple[datetime, datetime, str]]:
    """One training run: loading, training with checkpoints and evaluations, perhaps a held GPU;
    every_phase: a short one (under two and a half hours) that goes through every phase once."""
    pieces = [("loading", rng.uniform(3, 10))]
    if every_phase:
        pieces += [
            ("training", rng.uniform(20, 40)),
            ("checkpoint", rng.uniform(1, 3)),
            ("throttled", rng.uniform(10, 20)),
            ("evaluation", rng.uniform(3, 8)),
            ("swapping", rng.uniform(2, 6)),
            ("held", rng.uniform(10, 45)),
        ]
    else:
        for _ in range(rng.randint(2, 10)):
            pieces.append(("throttled" if rng.random() < 0.2 else "training", rng.uniform(20, 40)))
            pieces.append(("checkpoint", rng.uniform(1, 3)))
            if rng.random() < 0.4:
                pieces.append(("evaluation", rng.uniform(3, 8)))
            if rng.random() < 0.05:
                pieces.append(("swapping", rng.uniform(2, 6)))
        if rng.random() < 0.35:
            pieces.append(("held", rng.uniform(10, 45)))
    run = []
    for name, minutes in pieces:
        run.append((t, t + timedelta(minutes=minutes), name))
        t += timedelta(minutes=minutes)
    return run


class Generator:
    """Samples of one node every `interval` seconds, with counters that only grow."""

    def __init__(self, server_id: int, gpus: int, disks: int, interval: float, seed: int = 0):
        self.server_id, self.gpu_count, self.interval = server_id, gpus, interval
        self.rng = random.Random(seed)
        self.devices = ["nvme0n1", "nvme1n1", "sda", "sdb", "sdc", "sdd", "sde", "sdf"][:disks]
        self.disk_totals = {d: [10**11, 10**10, 10**6, 10**5, 10**6] for d in self.devices}
        self.net = [10**11, 10**10]
        self.memory_total = 256 * 2**30
        self.gpu_memory_total = 80 * 2**30
        self.energy = [5e8] * gpus  # joules since the driver loaded

    def _uniform(self, bounds: tuple[float, float]) -> float:
        return self.rng.uniform(*bounds)

    def rows(self, start: datetime, end: datetime) -> Iterator[Row]:
        step, at = timedelta(seconds=self.interval), start
        for _, hi, name in schedule(start, end, self.rng):
            phase = PHASES[name]
            while at < hi and at < end:
                yield self._row(at, phase)
                at += step

    def _row(self, at: datetime, phase: Phase) -> Row:
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
        for index in range(self.gpu_count):
            util = min(100.0, u(phase.gpu_util))
            mem = u(phase.gpu_memory)
            limit = 400.0
            power = limit * min(1.0, u(phase.power_share))
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
                    "name": "NVIDIA A100-SXM4-80GB",
                    "uuid": f"GPU-{self.server_id:08x}-{index:04x}",
                    "utilization_gpu_percent": util,
                    "utilization_memory_percent": util * 0.7,
                    "memory_total_bytes": self.gpu_memory_total,
                    "memory_used_bytes": int(self.gpu_memory_total * mem / 100),
                    "memory_percent": mem,
                    "temperature_c": u((35, 45)) + util * 0.35,
                    "power_w": power,
                    "power_limit_w": limit,
                    "throttle_reasons": json.dumps(throttle),
                    "processes": json.dumps([PROCESS] if phase.process and mem > 5 else []),
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
            "bottleneck_label": phase.label,
            "bottleneck_confidence": confidence,
            "bottleneck_reason": phase.reason,
            "bottleneck_rules_version": RULES_VERSION,
            "classified_at": at,
        }
        return Row(at, phase, snapshot, gpus, disks)


def columns(row: dict) -> str:
    """The COPY column list of a row built above (every row of a kind has the same keys)."""
    return ", ".join(row)
