"""Which workload a GPU process belongs to: cgroup paths of every scheduler and runtime, a fake /proc
tree, and real processes this test starts (their own /proc entries, a fake cgroup file laid over)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.fake_nvml import FakeNVML, a100
from trainwatch_agent.collectors.gpus import GpuCollector
from trainwatch_agent.collectors.workloads import WorkloadResolver, parse_cgroup, parse_environ

CONTAINER = "4f1a7c0e9d2b3a6c5e8f7d1b0a9c8e7f6d5c4b3a2e1f0d9c8b7a6e5f4d3c2b1a"
POD_UID = "0f9e8d7c-6b5a-4321-8fed-cba987654321"


@pytest.mark.parametrize(
    ("cgroup", "expected"),
    [
        # Slurm, cgroup v2 and v1
        (
            "0::/system.slice/slurmstepd.scope/job_1234/step_0/user/task_0\n",
            {"kind": "slurm", "id": "1234", "labels": {"step": "0"}},
        ),
        (
            "12:memory:/slurm/uid_1000/job_1234/step_0\n11:cpuset:/slurm/uid_1000/job_1234/step_0\n",
            {"kind": "slurm", "id": "1234", "labels": {"step": "0"}},
        ),
        (
            "0::/system.slice/slurmstepd.scope/job_98765/step_batch/user/task_0\n",
            {"kind": "slurm", "id": "98765", "labels": {"step": "batch"}},
        ),
        ("4:memory:/slurm/uid_1000/job_77\n", {"kind": "slurm", "id": "77", "labels": {}}),
        # Kubernetes: cgroupfs and systemd drivers
        (
            f"0::/kubepods/burstable/pod{POD_UID}/{CONTAINER}\n",
            {"kind": "kubernetes", "id": POD_UID, "labels": {"container_id": CONTAINER}},
        ),
        (
            "0::/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{POD_UID.replace('-', '_')}.slice/cri-containerd-{CONTAINER}.scope\n",
            {"kind": "kubernetes", "id": POD_UID, "labels": {"container_id": CONTAINER}},
        ),
        (
            f"0::/kubepods.slice/kubepods-pod{POD_UID.replace('-', '_')}.slice/crio-{CONTAINER}.scope\n",
            {"kind": "kubernetes", "id": POD_UID, "labels": {"container_id": CONTAINER}},
        ),
        (f"0::/kubepods/besteffort/pod{POD_UID}\n", {"kind": "kubernetes", "id": POD_UID, "labels": {}}),
        # Docker, containerd, podman
        (f"0::/docker/{CONTAINER}\n", {"kind": "container", "id": CONTAINER, "labels": {"runtime": "docker"}}),
        (
            f"0::/system.slice/docker-{CONTAINER}.scope\n",
            {"kind": "container", "id": CONTAINER, "labels": {"runtime": "docker"}},
        ),
        (
            f"0::/machine.slice/libpod-{CONTAINER}.scope/container\n",
            {"kind": "container", "id": CONTAINER, "labels": {"runtime": "podman"}},
        ),
        (
            f"0::/system.slice/cri-containerd-{CONTAINER}.scope\n",
            {"kind": "container", "id": CONTAINER, "labels": {"runtime": "containerd"}},
        ),
        (
            f"9:name=systemd:/\n4:memory:/docker/{CONTAINER}\n0::/\n",
            {"kind": "container", "id": CONTAINER, "labels": {"runtime": "docker"}},
        ),
        # Nothing a scheduler or runtime made
        ("0::/user.slice/user-1000.slice/session-3.scope\n", None),
        ("0::/\n", None),
        ("4:memory:/process_api/92f0759007d8e7841fb94b82fede28e7\n", None),
        (f"0::/system.slice/{CONTAINER}.scope\n", None),
        ("", None),
        ("garbage without colons\n", None),
    ],
)
def test_it_reads_the_workload_from_the_cgroup_path(cgroup, expected):
    assert parse_cgroup(cgroup) == expected


def test_it_reads_only_the_variables_that_name_a_workload():
    data = b"PATH=/usr/bin\0SLURM_JOB_ID=42\0SLURM_JOB_NAME=llm \xff\0SECRET=hunter2\0NOEQUALS\0POD_NAME=web-0"
    assert parse_environ(data) == {"SLURM_JOB_ID": "42", "SLURM_JOB_NAME": "llm \ufffd", "POD_NAME": "web-0"}


def _proc(root: Path, pid: int, *, cgroup: str | None = None, environ: dict | None = None, stat=None, cmdline=None):
    entry = root / str(pid)
    entry.mkdir(parents=True)
    if cgroup is not None:
        (entry / "cgroup").write_text(cgroup)
    if environ is not None:
        (entry / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in environ.items()))
    if stat is not None:
        (entry / "stat").write_text(stat)
    if cmdline is not None:
        (entry / "cmdline").write_bytes(b"\0".join(part.encode() for part in cmdline) + b"\0")


def test_a_slurm_job_takes_its_name_and_user_from_the_environment(tmp_path):
    _proc(
        tmp_path,
        10,
        cgroup="0::/system.slice/slurmstepd.scope/job_1234/step_0/user/task_0\n",
        environ={
            "SLURM_JOB_ID": "1234",
            "SLURM_JOB_NAME": "llama-70b",
            "SLURM_JOB_USER": "alice",
            "SLURM_JOB_PARTITION": "gpu",
            "HOME": "/home/alice",
        },
    )
    assert WorkloadResolver(str(tmp_path)).workload(10, "root", "python") == {
        "kind": "slurm",
        "id": "1234",
        "name": "llama-70b",
        "user": "alice",
        "labels": {"step": "0", "partition": "gpu"},
    }


def test_a_slurm_job_without_a_readable_environment_is_still_the_job(tmp_path):
    _proc(tmp_path, 10, cgroup="12:memory:/slurm/uid_1000/job_1234/step_0\n")  # environ: no access
    assert WorkloadResolver(str(tmp_path)).workload(10, "alice", "python") == {
        "kind": "slurm",
        "id": "1234",
        "name": None,
        "user": "alice",
        "labels": {"step": "0"},
    }


def test_a_slurm_job_outside_a_job_cgroup_is_found_from_its_environment(tmp_path):
    _proc(tmp_path, 10, cgroup="0::/user.slice\n", environ={"SLURM_JOB_ID": "55", "SLURM_JOB_NAME": "eval"})
    workload = WorkloadResolver(str(tmp_path)).workload(10, "bob", "python")
    assert (workload["kind"], workload["id"], workload["name"], workload["user"]) == ("slurm", "55", "eval", "bob")


def test_a_pod_is_named_by_its_namespace_and_name_where_the_environment_says(tmp_path):
    cgroup = f"0::/kubepods/burstable/pod{POD_UID}/{CONTAINER}\n"
    _proc(tmp_path, 10, cgroup=cgroup, environ={"POD_NAME": "trainer-0", "POD_NAMESPACE": "ml"})
    _proc(tmp_path, 11, cgroup=cgroup, environ={"HOSTNAME": "trainer-0"})
    _proc(tmp_path, 12, cgroup=cgroup)
    resolver = WorkloadResolver(str(tmp_path))
    assert resolver.workload(10, "root", "python") == {
        "kind": "kubernetes",
        "id": POD_UID,
        "name": "ml/trainer-0",
        "user": "root",
        "labels": {"container_id": CONTAINER, "namespace": "ml", "pod": "trainer-0"},
    }
    assert resolver.workload(11, "root", "python")["name"] == "trainer-0"
    assert resolver.workload(12, "root", "python") == {
        "kind": "kubernetes",
        "id": POD_UID,
        "name": None,
        "user": "root",
        "labels": {"container_id": CONTAINER},
    }


def test_a_container_is_its_id(tmp_path):
    _proc(tmp_path, 10, cgroup=f"0::/system.slice/docker-{CONTAINER}.scope\n", environ={"SLURM_JOB_ID": "9"})
    assert WorkloadResolver(str(tmp_path)).workload(10, "carol", "python") == {
        "kind": "container",
        "id": CONTAINER,
        "name": None,
        "user": "carol",
        "labels": {"runtime": "docker"},
    }


def test_a_bare_process_is_its_process_group_named_by_its_command_line(tmp_path):
    _proc(
        tmp_path,
        4242,
        cgroup="0::/user.slice/user-1000.slice/session-3.scope\n",
        stat="4242 (pt_main_thread) S 4200 4200 4100 34816 4200 4194304 1 2 3 4\n",
        cmdline=["python", "train.py", "--lr", "3e-4"],
    )
    assert WorkloadResolver(str(tmp_path)).workload(4242, "dave", "python") == {
        "kind": "process",
        "id": "4200",
        "name": "python train.py --lr 3e-4",
        "user": "dave",
        "labels": {},
    }


def test_a_command_with_a_parenthesis_in_its_name_still_gives_the_group(tmp_path):
    _proc(tmp_path, 7, stat="7 (a) b) S 1 321 321 0 -1 0\n")
    assert WorkloadResolver(str(tmp_path)).workload(7, None, "a) b")["id"] == "321"


def test_a_process_that_is_gone_has_no_workload_and_no_error(tmp_path):
    resolver = WorkloadResolver(str(tmp_path))
    assert resolver.workload(999999, None, None) is None


def test_a_process_with_nothing_readable_but_its_name_is_its_own_workload(tmp_path):
    assert WorkloadResolver(str(tmp_path)).workload(31, "erin", "python3") == {
        "kind": "process",
        "id": "31",
        "name": "python3",
        "user": "erin",
        "labels": {},
    }


def test_long_and_odd_values_are_cut_to_the_servers_limits(tmp_path):
    _proc(
        tmp_path,
        10,
        cgroup="0::/slurm/job_1/step_0\n",
        environ={"SLURM_JOB_NAME": "n" * 1000 + "\x00", "SLURM_JOB_USER": "u" * 500},
    )
    workload = WorkloadResolver(str(tmp_path)).workload(10, None, None)
    assert len(workload["name"]) == 256 and len(workload["user"]) == 128


def test_each_pid_is_read_once_and_forgotten_when_it_leaves_the_gpus(tmp_path):
    _proc(tmp_path, 10, cgroup="0::/slurm/job_1/step_0\n")
    resolver = WorkloadResolver(str(tmp_path))
    assert resolver.workload(10, None, None)["id"] == "1"
    (tmp_path / "10" / "cgroup").write_text("0::/slurm/job_2/step_0\n")
    assert resolver.workload(10, None, None)["id"] == "1"  # cached: a running process keeps its cgroup
    resolver.keep_only(set())
    assert resolver.workload(10, None, None)["id"] == "2"  # a new process under the old pid


def test_the_proc_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINWATCH_PROC_ROOT", str(tmp_path))
    assert WorkloadResolver().proc_root == str(tmp_path)
    monkeypatch.delenv("TRAINWATCH_PROC_ROOT")
    assert WorkloadResolver().proc_root == "/proc"


# --- real processes, started here ---------------------------------------------------------------


@pytest.fixture
def sleeper():
    """A real process of this test's user, with a Slurm job's environment."""
    env = {**os.environ, "SLURM_JOB_ID": "4321", "SLURM_JOB_NAME": "real-job", "SLURM_JOB_USER": "frank"}
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True)
    yield process
    process.kill()
    process.wait()


def _overlay(tmp_path: Path, pid: int, cgroup: str) -> str:
    """A /proc whose entry for pid is the real one, but for a cgroup file of our own."""
    entry = tmp_path / "proc" / str(pid)
    entry.mkdir(parents=True)
    for name in ("environ", "stat", "cmdline"):
        os.symlink(f"/proc/{pid}/{name}", entry / name)
    (entry / "cgroup").write_text(cgroup)
    return str(tmp_path / "proc")


def test_a_real_process_of_a_slurm_job_is_read_from_its_own_proc_entry(sleeper, tmp_path):
    root = _overlay(tmp_path, sleeper.pid, "0::/system.slice/slurmstepd.scope/job_4321/step_0/user/task_0\n")
    assert WorkloadResolver(root).workload(sleeper.pid, "root", "python3") == {
        "kind": "slurm",
        "id": "4321",
        "name": "real-job",
        "user": "frank",
        "labels": {"step": "0"},
    }


def test_a_real_process_in_a_pod_is_read_from_its_own_proc_entry(sleeper, tmp_path):
    root = _overlay(tmp_path, sleeper.pid, f"0::/kubepods/burstable/pod{POD_UID}/{CONTAINER}\n")
    workload = WorkloadResolver(root).workload(sleeper.pid, "root", "python3")
    assert (workload["kind"], workload["id"], workload["labels"]["container_id"]) == (
        "kubernetes",
        POD_UID,
        CONTAINER,
    )


def test_a_real_process_through_the_real_proc(sleeper):
    """This machine's own cgroups name no scheduler: the Slurm variables of its environment decide,
    or, inside a container this machine runs in, the container does."""
    workload = WorkloadResolver("/proc").workload(sleeper.pid, "root", "python3")
    assert workload is not None
    if workload["kind"] == "slurm":
        assert (workload["id"], workload["name"], workload["user"]) == ("4321", "real-job", "frank")
    else:
        assert workload["kind"] in ("container", "kubernetes")


def test_a_real_bare_process_is_its_process_group(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True)
    try:
        root = _overlay(tmp_path, process.pid, "0::/user.slice/user-0.slice/session-1.scope\n")
        workload = WorkloadResolver(root).workload(process.pid, "root", "python3")
        # A new session: the process leads its own group.
        assert workload["kind"] == "process" and workload["id"] == str(process.pid)
        assert workload["name"] == f"{sys.executable} -c import time; time.sleep(60)"
    finally:
        process.kill()
        process.wait()


def test_a_real_process_that_exited_gives_no_error(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert WorkloadResolver("/proc").workload(process.pid, None, None) is None


def test_another_users_process_gives_what_can_be_read():
    """pid 1's environment is closed to this test (no CAP_SYS_PTRACE here), its cgroup is not."""
    workload = WorkloadResolver("/proc").workload(1, "root", "init")
    assert workload is not None and workload["kind"] in ("process", "container", "kubernetes", "slurm")


# --- in the GPU collector ---------------------------------------------------------------------


def test_every_gpu_process_carries_its_workload(recorded_psutil, tmp_path):
    _proc(
        tmp_path,
        4242,
        cgroup="0::/system.slice/slurmstepd.scope/job_1234/step_0/user/task_0\n",
        environ={"SLURM_JOB_NAME": "llama", "SLURM_JOB_USER": "alice"},
    )
    _proc(tmp_path, 4343, cgroup=f"0::/system.slice/docker-{CONTAINER}.scope\n")
    collector = GpuCollector(FakeNVML([a100()]), proc_root=str(tmp_path))
    collector.start()
    try:
        processes = collector.collect()["gpus"][0]["processes"]
    finally:
        collector.close()
    assert [p["workload"] for p in processes] == [
        {"kind": "slurm", "id": "1234", "name": "llama", "user": "alice", "labels": {"step": "0"}},
        {"kind": "container", "id": CONTAINER, "name": None, "user": None, "labels": {"runtime": "docker"}},
        None,  # pid 999999: gone
    ]


def test_a_resolver_bug_costs_the_workload_only(recorded_psutil, tmp_path, monkeypatch):
    collector = GpuCollector(FakeNVML([a100()]), proc_root=str(tmp_path))
    monkeypatch.setattr(collector.workloads, "workload", lambda *a: 1 / 0)
    collector.start()
    try:
        processes = collector.collect()["gpus"][0]["processes"]
    finally:
        collector.close()
    assert [p["pid"] for p in processes] == [4242, 4343, 999999]
    assert all(p["workload"] is None for p in processes)
