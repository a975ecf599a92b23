"""What naming the GPU processes' workloads costs the agent, per sample, side by side.

The agent benchmark (bench/agent.py) runs on a machine without GPUs, where no process is on a
GPU and the workload code never runs. This one measures it where it runs: the GPU collector
against a fake NVML of --gpus GPUs, each with one compute process that is a real process started
here (with a Slurm job's environment, so that each is read as a node's jobs are: its cgroup, then
its environment), CPU time per sample over --samples samples, in three ways:

- without workloads (the collector as it was before: the resolver answers nothing);
- with workloads, steady state: each process was read once and is remembered (every sample but
  the first of a job);
- with workloads, every process new in every sample (the worst case, never met in practice: a
  pid is read once while it stays on a GPU).

    .venv/bin/python bench/workloads.py
    .venv/bin/python bench/workloads.py --gpus 8 --samples 2000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent"))

from bench.common import machine, table  # noqa: E402
from tests.agent.fake_nvml import FakeNVML, a100, process  # noqa: E402
from trainwatch_agent.collectors.gpus import GpuCollector  # noqa: E402


def start_jobs(count: int) -> list[subprocess.Popen]:
    env = {**os.environ, "SLURM_JOB_ID": "4321", "SLURM_JOB_NAME": "bench-job", "SLURM_JOB_USER": "bench"}
    return [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"], env=env, start_new_session=True)
        for _ in range(count)
    ]


def cpu_per_sample(collector: GpuCollector, samples: int, forget: bool) -> float:
    """CPU seconds per collect(); `forget`: every process is new in every sample."""
    collector.collect()  # the first sample reads every process once
    start = time.process_time()
    for _ in range(samples):
        if forget:
            collector.workloads.keep_only(set())
        collector.collect()
    return (time.process_time() - start) / samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=8, help="GPUs, one job process each (default 8)")
    parser.add_argument("--samples", type=int, default=2000, help="samples measured per way (default 2000)")
    args = parser.parse_args()
    jobs = start_jobs(args.gpus)
    try:
        nvml = FakeNVML([a100(processes=[process(job.pid, 2**30)]) for job in jobs], events="missing")
        collector = GpuCollector(nvml, proc_root="/proc")
        collector.start()
        check = collector.collect()["gpus"][0]["processes"][0]["workload"]
        assert check and check["kind"] == "slurm", check
        resolve = collector.workloads.workload
        collector.workloads.workload = lambda pid, user, name: None
        without = cpu_per_sample(collector, args.samples, forget=False)
        collector.workloads.workload = resolve
        steady = cpu_per_sample(collector, args.samples, forget=False)
        worst = cpu_per_sample(collector, args.samples, forget=True)
        collector.close()
    finally:
        for job in jobs:
            job.kill()
            job.wait()
    rows = [
        ["without workloads", f"{without * 1e6:.0f} µs", "", ""],
        [
            "with workloads, each process remembered",
            f"{steady * 1e6:.0f} µs",
            f"{(steady - without) * 1e6:+.0f} µs",
            f"{(steady - without) / args.gpus * 1e6:+.1f} µs",
        ],
        [
            "with workloads, every process new",
            f"{worst * 1e6:.0f} µs",
            f"{(worst - without) * 1e6:+.0f} µs",
            f"{(worst - without) / args.gpus * 1e6:+.1f} µs",
        ],
    ]
    print(f"GPU collector, fake NVML with {args.gpus} GPUs and a job process on each; {machine()}")
    print(table(["", "CPU per sample", "added", "added per process"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
