"""One sample of the node: every collector's fields in the contract's recommended form.

Each source has a module of its own (cpu, memory, network, disks, processes, gpus); the
Sampler holds the little state they need between samples (the previous CPU times,
the NVML handles) and puts their fields together with `collected_at`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from trainwatch_agent.collectors import memory, network, processes
from trainwatch_agent.collectors.cpu import CpuCollector
from trainwatch_agent.collectors.disks import DiskCollector
from trainwatch_agent.collectors.gpus import GpuCollector
from trainwatch_agent.logs import Limiter

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Sampler:
    def __init__(
        self,
        *,
        nvml: Any = None,
        sys_block: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.cpu = CpuCollector()
        self.disks = DiskCollector(sys_block) if sys_block else DiskCollector()
        self.gpus = GpuCollector(nvml)
        self._clock = clock
        self._errors = Limiter(60.0)
        self._sources: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("cpu", self.cpu.collect),
            ("memory", memory.collect),
            ("network", network.collect),
            ("processes", processes.collect),
            ("disks", self.disks.collect),
            ("gpus", self.gpus.collect),
        ]

    def start(self) -> None:
        """Detect the GPUs and take the CPU reading the first sample's shares are measured from."""
        self.gpus.start()
        self.cpu.prime()

    def close(self) -> None:
        self.gpus.close()

    def sample(self) -> dict[str, Any]:
        sample: dict[str, Any] = {"collected_at": self._clock().isoformat()}
        for name, collect in self._sources:
            try:
                sample.update(collect())
            except Exception:
                # A collector bug must cost its own fields, not the sample (or the agent).
                if self._errors.ready(name):
                    log.exception("the %s collector failed; its fields are left out of samples", name)
        sample.setdefault("disks", [])
        sample.setdefault("gpus", [])
        return sample
