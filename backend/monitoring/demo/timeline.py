"""What a synthetic node does, and when: the phases of a training run and their numbers.

A node's days follow a working pattern: training runs start mostly in working hours;
each run loads data (CPU-bound), trains (GPU-bound, with checkpoint writes that make it
IO-bound, power-capped stretches, evaluation), and sometimes ends with its process still
holding GPU memory; nights and weekends are mostly idle. Every bottleneck label occurs.
generator.py turns the phases into samples; `live_schedule` plays a run in minutes, for the demo
feeder.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

PROCESS = {"pid": 4242, "name": "python", "user": "ml", "type": "compute"}

# Whose runs they are: each training run is one workload, in turn a Slurm job, a pod, a bare
# process, another user's Slurm job and a container, of a few users (as the agent reads them).
WORKLOADS = (
    {"kind": "slurm", "name": "llama-70b-pretrain", "user": "alice", "labels": {"partition": "gpu", "account": "nlp"}},
    {
        "kind": "kubernetes",
        "name": "ml/resnet-sweep-0",
        "user": "root",
        "labels": {"namespace": "ml", "pod": "resnet-sweep-0"},
    },
    {"kind": "process", "name": "python train.py --config vit-l.yaml", "user": "bob", "labels": {}},
    {"kind": "slurm", "name": "whisper-finetune", "user": "carol", "labels": {"partition": "gpu"}},
    {"kind": "container", "name": None, "user": "dave", "labels": {"runtime": "docker"}},
)


def workload(run: int, rng: random.Random) -> dict:
    """The workload of a node's `run`-th training run, with an id of its kind."""
    template = WORKLOADS[run % len(WORKLOADS)]
    kind = template["kind"]
    if kind == "slurm":
        ident = str(rng.randint(100_000, 999_999))
    elif kind == "kubernetes":
        h = f"{rng.getrandbits(128):032x}"
        ident = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    elif kind == "container":
        ident = f"{rng.getrandbits(256):064x}"
    else:
        ident = str(rng.randint(2_000, 60_000))
    return {**template, "id": ident, "labels": dict(template["labels"])}


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


# A training run squeezed into minutes, for a demo fleet that goes on live: every phase, and so
# every label, in each round.
LIVE_ROUND = (
    "loading",
    "training",
    "checkpoint",
    "throttled",
    "training",
    "evaluation",
    "swapping",
    "training",
    "held",
    "idle",
)


def live_schedule(
    start: datetime, rng: random.Random, seconds: tuple[float, float] = (120.0, 300.0)
) -> Iterator[tuple[datetime, datetime, str]]:
    """(from, to, phase name) from `start` on, without end: LIVE_ROUND over and over, each phase
    lasting between `seconds[0]` and `seconds[1]`, so that the bottleneck changes every few minutes."""
    t = start
    while True:
        for name in LIVE_ROUND:
            end = t + timedelta(seconds=rng.uniform(*seconds))
            yield t, end, name
            t = end
