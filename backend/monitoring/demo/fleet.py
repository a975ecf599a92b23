"""The demo fleet of `make run DEMO=1`: which servers, with which GPUs, and how their history is
made. `manage.py demo seed` loads their past, `manage.py demo feed` keeps it going."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoServer:
    slug: str
    name: str
    gpu_model: str  # a key of generator.GPU_MODELS
    seed: int  # a history of its own for each
    gpus: int = 4
    disks: int = 2
    interval: float = 10.0  # seconds between samples
    days: float = 30.0  # of history seeded


FLEET = (
    DemoServer("demo-a100-01", "Demo A100 01", "a100", seed=1),
    DemoServer("demo-a100-02", "Demo A100 02", "a100", seed=2),
    DemoServer("demo-h100-01", "Demo H100 01", "h100", seed=3),
)
