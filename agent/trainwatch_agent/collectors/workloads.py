"""Which workload a GPU process belongs to, read from the node itself (no scheduler API).

A workload is a Slurm job, a Kubernetes pod, a container, or, failing those, the process's own
process group (so a bare `python train.py`, and the workers a launcher starts, are one
workload). What decides it, in this order:

1. the process's cgroup path, `/proc/<pid>/cgroup` (world-readable, cgroup v1 and v2):
   `.../job_<id>/...` is a Slurm job; `kubepods.../pod<uid>/<container>` a Kubernetes pod
   (cgroupfs and systemd drivers); `/docker/<id>`, `docker-<id>.scope`, `libpod-<id>.scope`,
   `cri-containerd-<id>.scope`, `crio-<id>.scope` a container;
2. the process's environment, `/proc/<pid>/environ` (readable for the agent's own user's
   processes only, or with root / CAP_SYS_PTRACE): `SLURM_JOB_ID`, `SLURM_JOB_NAME`,
   `SLURM_JOB_USER`, and a pod's `POD_NAME`, `POD_NAMESPACE` or `HOSTNAME`;
3. else the process: its process group (`/proc/<pid>/stat`) and command line
   (`/proc/<pid>/cmdline`).

Whatever cannot be read is left out, never an error: another user's environment, a process that
just exited. A process's cgroup does not change once it runs, so each pid is read once and its
workload kept until the pid leaves the GPUs (the caller forgets it then).
"""

from __future__ import annotations

import os
import re
from typing import Any

from trainwatch_agent import values

# The server's limits (monitoring/ingest/schema.py WORKLOAD).
ID_LENGTH = 128
NAME_LENGTH = 256
USER_LENGTH = 128
LABEL_KEY_LENGTH = 64
LABEL_VALUE_LENGTH = 256
# What is read of a process's environment: enough for any sane one, never a runaway read.
ENVIRON_LIMIT = 256 * 1024

_SLURM_JOB = re.compile(r"/job_(\d+)(?:/|$)")
_SLURM_STEP = re.compile(r"/job_\d+/step_([A-Za-z0-9_]+)")
_UUID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_KUBE_POD = re.compile(r"kubepods.*?pod(" + _UUID + r")(?:\.slice)?(?:/(.*))?$")
_HEX_ID = r"([0-9a-f]{64})"
_CONTAINER = (
    (re.compile(r"/docker/" + _HEX_ID + r"(?:/|$)"), "docker"),
    (re.compile(r"docker-" + _HEX_ID + r"\.scope"), "docker"),
    (re.compile(r"libpod-(?:conmon-)?" + _HEX_ID + r"(?:\.scope)?"), "podman"),
    (re.compile(r"cri-containerd-" + _HEX_ID + r"\.scope"), "containerd"),
    (re.compile(r"crio-(?:conmon-)?" + _HEX_ID + r"(?:\.scope)?"), "cri-o"),
    (re.compile(r"/containerd/" + _HEX_ID + r"(?:/|$)"), "containerd"),
)
_BARE_HEX = re.compile(r"(?:^|[-/])" + _HEX_ID + r"(?:\.scope)?$")
_ENV_KEYS = (
    "SLURM_JOB_ID",
    "SLURM_JOBID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_USER",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_ACCOUNT",
    "POD_NAME",
    "POD_NAMESPACE",
    "HOSTNAME",
)


def default_proc_root() -> str:
    """`TRAINWATCH_PROC_ROOT`, for an agent that sees the host's /proc elsewhere (a container
    with it mounted at /host/proc), and for tests; else /proc."""
    return os.environ.get("TRAINWATCH_PROC_ROOT") or "/proc"


def parse_cgroup(text: str) -> dict[str, Any] | None:
    """What a /proc/<pid>/cgroup file says of the workload: {"kind", "id", "labels"} or None.

    Every line is `hierarchy:controllers:path`; v2 has one (`0::/path`), v1 one per hierarchy.
    The first line that names a workload decides."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1].strip()
        if path and path != "/":
            found = parse_cgroup_path(path)
            if found is not None:
                return found
    return None


def parse_cgroup_path(path: str) -> dict[str, Any] | None:
    job = _SLURM_JOB.search(path)
    if job:
        labels = {}
        step = _SLURM_STEP.search(path)
        if step:
            labels["step"] = step.group(1)
        return {"kind": "slurm", "id": job.group(1), "labels": labels}
    pod = _KUBE_POD.search(path)
    if pod:
        labels = {}
        container = _container_id(pod.group(2) or "", bare=True)
        if container:
            labels["container_id"] = container[0]
        return {"kind": "kubernetes", "id": pod.group(1).replace("_", "-"), "labels": labels}
    found = _container_id(path)
    if found:
        return {"kind": "container", "id": found[0], "labels": {"runtime": found[1]}}
    return None


def _container_id(path: str, bare: bool = False) -> tuple[str, str] | None:
    """(id, runtime) of a container named in a cgroup path; `bare`: a plain 64-hex component
    counts too (a pod's container under the cgroupfs driver)."""
    for pattern, runtime in _CONTAINER:
        match = pattern.search(path)
        if match:
            return match.group(1), runtime
    match = _BARE_HEX.search(path) if bare else None
    return (match.group(1), "") if match else None


def parse_environ(data: bytes) -> dict[str, str]:
    """The few variables that name a workload, from /proc/<pid>/environ (NUL-separated)."""
    found = {}
    for entry in data.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key.decode("ascii", "replace") in _ENV_KEYS:
            found[key.decode("ascii")] = value.decode("utf-8", "replace")
    return found


class WorkloadResolver:
    """The workload of each GPU process, from the files under `proc_root`, one read per pid."""

    def __init__(self, proc_root: str | None = None) -> None:
        self.proc_root = proc_root or default_proc_root()
        self._known: dict[int, dict[str, Any] | None] = {}

    def workload(self, pid: int, user: str | None, name: str | None) -> dict[str, Any] | None:
        if pid not in self._known:
            self._known[pid] = self._resolve(pid, user, name)
        return self._known[pid]

    def keep_only(self, pids: set[int]) -> None:
        """Forget the pids no longer on a GPU (a pid that comes back may be another process)."""
        if len(self._known) > len(pids):
            self._known = {pid: w for pid, w in self._known.items() if pid in pids}

    def _resolve(self, pid: int, user: str | None, name: str | None) -> dict[str, Any] | None:
        cgroup = self._read(pid, "cgroup", 64 * 1024)
        found = parse_cgroup(cgroup.decode("utf-8", "replace")) if cgroup is not None else None
        kind = found["kind"] if found else None
        env: dict[str, str] = {}
        if kind in (None, "slurm", "kubernetes"):
            data = self._read(pid, "environ", ENVIRON_LIMIT)
            env = parse_environ(data) if data else {}
        if found is None:
            job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
            if job and job.isdigit():
                found = {"kind": "slurm", "id": job, "labels": {}}
        if found is None:
            return self._process(pid, user, name, readable=cgroup is not None)
        labels = found["labels"]
        workload_user, workload_name = user, None
        if found["kind"] == "slurm":
            workload_name = env.get("SLURM_JOB_NAME")
            workload_user = env.get("SLURM_JOB_USER") or user
            for key, variable in (("partition", "SLURM_JOB_PARTITION"), ("account", "SLURM_JOB_ACCOUNT")):
                if env.get(variable):
                    labels[key] = env[variable]
        elif found["kind"] == "kubernetes":
            pod = env.get("POD_NAME") or env.get("HOSTNAME")
            namespace = env.get("POD_NAMESPACE")
            if namespace:
                labels["namespace"] = namespace
            if pod:
                labels["pod"] = pod
                workload_name = f"{namespace}/{pod}" if namespace else pod
        return _workload(found["kind"], found["id"], workload_name, workload_user, labels)

    def _process(self, pid: int, user: str | None, name: str | None, readable: bool) -> dict[str, Any] | None:
        """A process outside any scheduler: its process group (a launcher and the workers it
        started), named by its command line."""
        stat = self._read(pid, "stat", 4096)
        group = None
        if stat:
            fields = stat.rsplit(b")", 1)[-1].split()
            group = fields[2].decode("ascii", "replace") if len(fields) > 2 else None
        if group is None and not readable and name is None:
            return None  # gone, or nothing of it can be read: no workload to speak of
        cmdline = self._read(pid, "cmdline", 4096)
        command = b" ".join(part for part in (cmdline or b"").split(b"\0") if part).decode("utf-8", "replace")
        return _workload("process", group if group and group.isdigit() else str(pid), command or name, user, {})

    def _read(self, pid: int, name: str, limit: int) -> bytes | None:
        try:
            with open(f"{self.proc_root}/{pid}/{name}", "rb") as handle:
                return handle.read(limit)
        except OSError:  # gone, no access (another user's environ), no such file
            return None


def _workload(kind: str, ident: str, name: str | None, user: str | None, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": values.text(ident, ID_LENGTH),
        "name": values.text(name, NAME_LENGTH) or None,
        "user": values.text(user, USER_LENGTH) or None,
        "labels": {
            values.text(k, LABEL_KEY_LENGTH): values.text(v, LABEL_VALUE_LENGTH) for k, v in list(labels.items())[:16]
        },
    }
