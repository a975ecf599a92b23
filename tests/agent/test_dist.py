"""The agent for nodes without a checkout (`make agent-dist`): the zipapp on the oldest Python here,
with the bundled psutil or the node's own; the .deb unpacked into a scratch root, its unit and its
maintainer scripts, lintian; the container image's build stage and its compose file.

Both artefacts run against a real web app. Nothing is installed on this machine: the .deb is only
unpacked, and the image is not built (no Docker engine here), only its build stage's command run."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from monitoring.models import MonitoredServer, Snapshot
from tests.conftest import ROOT, VENV_BIN, eventually, process_env, register
from tests.test_deploy import compose_command

BUILD = ROOT / "agent" / "packaging" / "build.py"
WHEEL_CACHE = ROOT / "build" / "agent-wheels"
UNIT = ROOT / "deploy" / "agent" / "trainwatch-agent.service"
STOPPED = re.compile(r"stopped: took (\d+) samples; sent (\d+) .*; (\d+) samples wait")

pytestmark = pytest.mark.slow


def python_version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True, timeout=20
        )
    except OSError:
        return None
    return tuple(int(p) for p in out.stdout.split()) if out.returncode == 0 and out.stdout.strip() else None


def pythons() -> dict[tuple[int, int], str]:
    """The Pythons on this machine, by version: on PATH, pyenv's, and those uv manages."""
    candidates = [shutil.which(f"python3.{minor}") for minor in range(8, 15)] + ["/usr/bin/python3"]
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{pyenv}/versions/3.*/bin/python3"))
    if (VENV_BIN / "uv").exists():
        for minor in (8, 9):
            found = subprocess.run(
                [str(VENV_BIN / "uv"), "python", "find", f"3.{minor}"], capture_output=True, text=True
            )
            candidates.append(found.stdout.strip() if found.returncode == 0 else None)
    found: dict[tuple[int, int], str] = {}
    for python in filter(None, candidates):
        version = python_version(python)
        if version and version not in found:
            found[version] = python
    return found


@pytest.fixture(scope="module")
def oldest_python() -> tuple[str, tuple[int, int]]:
    """The oldest Python the agent supports (3.9) if this machine has it, else the oldest newer one."""
    supported = {v: p for v, p in pythons().items() if v >= (3, 9)}
    version = min(supported)
    return supported[version], version


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """What `make agent-dist` builds, built once for this module (wheels from build/agent-wheels)."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, str(BUILD), "--dist", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def deb(dist) -> Path:
    (found,) = dist.glob("trainwatch-agent_*_all.deb")
    return found


@pytest.fixture(scope="module")
def deb_root(deb, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def node_env(tmp_path: Path) -> dict[str, str]:
    """A node's environment: nothing of this venv or the suite; psutil unpacked under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "TRAINWATCH_", "PIP_"))}
    return {**env, "HOME": str(tmp_path), "CACHE_DIRECTORY": str(tmp_path / "cache")}


def run_once(command: list[str], env: dict, cwd: Path) -> dict:
    result = subprocess.run(
        [*command, "--once", "--interval", "0.2", "--label", "rack=r1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- the zipapp ---------------------------------------------------------------------------------


def test_the_zipapp_is_one_file_with_the_agent_and_its_pure_python_dependencies(dist):
    pyz = dist / "trainwatch-agent.pyz"
    assert pyz.stat().st_mode & stat.S_IXUSR
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert pyz.stat().st_size < 2 * 1024 * 1024
    with zipfile.ZipFile(pyz) as archive:
        names = set(archive.namelist())
        assert archive.read("trainwatch_agent/_packaging.py") == b'PACKAGING = "zipapp"\n'
    assert {
        "__main__.py",
        "trainwatch_agent/cli.py",
        "requests/__init__.py",
        "urllib3/__init__.py",
        "pynvml.py",
    } <= names
    assert "certifi/cacert.pem" in names
    wheels = sorted(n for n in names if n.startswith("_psutil/"))
    assert len(wheels) == 2
    assert {w.endswith("_x86_64.whl") for w in wheels} == {True, False}
    assert {w.endswith("_aarch64.whl") for w in wheels} == {True, False}
    assert not any(n.endswith((".so", ".pyc")) for n in names)  # compiled code only inside the wheels
    assert not any(n.startswith(("django", "psutil/", "monitoring")) for n in names)
    assert any("requests" in n and "LICENSE" in n for n in names)


def test_two_builds_of_one_tree_are_the_same_bytes(dist, tmp_path):
    # A fleet can check what it runs against one checksum.
    again = tmp_path / "again.pyz"
    subprocess.run([sys.executable, str(BUILD), "zipapp", "--out", str(again)], check=True, capture_output=True)
    assert again.read_bytes() == (dist / "trainwatch-agent.pyz").read_bytes()


def test_the_zipapp_runs_on_the_oldest_python_with_the_psutil_it_bundles(dist, oldest_python, tmp_path):
    python, version = oldest_python
    assert python_version(python) == version
    has_psutil = subprocess.run([python, "-c", "import psutil"], capture_output=True).returncode == 0
    env = node_env(tmp_path)
    body = run_once([python, str(dist / "trainwatch-agent.pyz")], env, tmp_path)
    assert body["agent"]["packaging"] == "zipapp"
    assert body["agent"]["python"].startswith("{}.{}.".format(*version))
    assert body["agent"]["labels"] == {"rack": "r1"}
    assert body["sample"]["memory_total_bytes"] > 0 and body["sample"]["gpus"] == []
    unpacked = list((tmp_path / "cache").glob("psutil-*"))
    if not has_psutil:
        # Unpacked once, private to this user, and used as it is by the next run.
        (folder,) = unpacked
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert list(folder.glob("psutil/_psutil_linux*.so"))
        before = folder.stat().st_mtime_ns
        run_once([python, str(dist / "trainwatch-agent.pyz")], env, tmp_path)
        assert folder.stat().st_mtime_ns == before and len(list((tmp_path / "cache").iterdir())) == 1


def test_the_zipapp_does_not_import_from_a_cache_others_can_write_to(dist, oldest_python, tmp_path):
    python, _ = oldest_python
    if subprocess.run([python, "-c", "import psutil"], capture_output=True).returncode == 0:
        pytest.skip(f"{python} has a psutil of its own: the zipapp unpacks none")
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    result = subprocess.run(
        [python, str(dist / "trainwatch-agent.pyz"), "--version"],
        env=node_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout.strip() == "trainwatch-agent 0.1.0"
    assert f"{cache} is writable by others" in result.stderr and "psutil for this run only" in result.stderr
    assert list(cache.iterdir()) == []


def test_the_zipapp_takes_the_nodes_own_psutil_when_it_has_one(dist, tmp_path):
    # This venv's Python has psutil (as a node with python3-psutil would): nothing is unpacked.
    body = run_once([sys.executable, str(dist / "trainwatch-agent.pyz")], node_env(tmp_path), tmp_path)
    assert body["agent"]["packaging"] == "zipapp"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_the_zipapp_says_which_python_it_needs_on_an_older_one(dist, tmp_path):
    older = {v: p for v, p in pythons().items() if v < (3, 9) and v >= (3, 7)}
    if not older:
        pytest.skip("no Python older than 3.9 (and 3.7 or newer) on this machine to try")
    result = subprocess.run(
        [older[max(older)], str(dist / "trainwatch-agent.pyz"), "--once"],
        env=node_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "needs Python 3.9 or newer" in result.stderr


# --- against a live server ------------------------------------------------------------------------


def sample_for_a_few_seconds(processes, command: list[str], env: dict, tmp_path: Path, slug: str) -> MonitoredServer:
    """The agent against gunicorn for ~3 s at 0.5 s, then SIGTERM: every sample stored, none waiting."""
    node = register(slug, slug)
    token = tmp_path / "token"
    token.write_text(node.token + "\n")
    base = processes.web(process_env())
    args = [*command, "--url", base, "--server", slug, "--token-file", str(token), "--interval", "0.5"]
    agent = processes.start(f"agent-{slug}", [*args, "--spool-dir", str(tmp_path / "spool")], env)
    eventually(lambda: Snapshot.objects.filter(server=node.server).count() >= 6, timeout=30, message="6 samples")
    os.killpg(agent.pid, signal.SIGTERM)
    assert agent.wait(15) == 0, agent.log_path.read_text()
    taken, sent, waiting = map(int, STOPPED.search(agent.log_path.read_text()).groups())
    assert taken == sent == Snapshot.objects.filter(server=node.server).count() and waiting == 0
    return node.refresh()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_zipapp_on_the_oldest_python_delivers_to_a_live_server(processes, dist, oldest_python, tmp_path):
    python, version = oldest_python
    command = [python, str(dist / "trainwatch-agent.pyz")]
    server = sample_for_a_few_seconds(processes, command, node_env(tmp_path), tmp_path, "zipapp-node")
    assert server.agent_packaging == "zipapp"
    assert server.agent_python.startswith("{}.{}.".format(*version))
    assert server.last_agent_version == "0.1.0"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_debs_agent_unpacked_into_a_scratch_root_delivers_to_a_live_server(processes, deb_root, tmp_path):
    command = [str(deb_root / "usr" / "bin" / "trainwatch-agent")]  # the symlink, run by its #!/usr/bin/python3
    server = sample_for_a_few_seconds(processes, command, node_env(tmp_path), tmp_path, "deb-node")
    assert server.agent_packaging == "deb"


# --- the .deb ------------------------------------------------------------------------------------------


def control_field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True).stdout.strip()


def test_the_deb_installs_the_agent_its_unit_and_a_conffile(deb, deb_root):
    field = lambda name: control_field(deb, name)  # noqa: E731
    assert field("Package") == "trainwatch-agent" and field("Version") == "0.1.0" and field("Architecture") == "all"
    assert "python3 (>= 3.9)" in field("Depends") and "adduser" in field("Depends")
    listed = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "./usr/bin/trainwatch-agent -> ../lib/trainwatch-agent/trainwatch-agent.pyz" in listed
    with zipfile.ZipFile(deb_root / "usr/lib/trainwatch-agent/trainwatch-agent.pyz") as archive:
        assert archive.read("trainwatch_agent/_packaging.py") == b'PACKAGING = "deb"\n'
    # deploy/'s unit, but for the command's path.
    shipped = (deb_root / "lib/systemd/system/trainwatch-agent.service").read_text()
    assert shipped == UNIT.read_text().replace(
        "ExecStart=/opt/trainwatch-agent/bin/trainwatch-agent", "ExecStart=/usr/bin/trainwatch-agent"
    )
    assert "ConditionPathExists=/etc/trainwatch-agent/token" in shipped
    env_file = (deb_root / "etc/trainwatch-agent/agent.env").read_text()
    assert "TRAINWATCH_URL=" in env_file and "TRAINWATCH_SERVER=" in env_file
    assert not (deb_root / "etc/trainwatch-agent/token").exists()


def test_the_debs_maintainer_scripts_add_the_user_enable_the_unit_and_start_nothing(deb, tmp_path):
    control = tmp_path / "DEBIAN"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    assert (control / "conffiles").read_text() == "/etc/trainwatch-agent/agent.env\n"
    for script in ("postinst", "prerm", "postrm"):
        assert subprocess.run(["sh", "-n", str(control / script)]).returncode == 0, script
        assert (control / script).stat().st_mode & stat.S_IXUSR
    # Only a running agent is restarted on upgrade; nothing else starts it but the admin.
    assert re.findall(r"deb-systemd-invoke (\S+)", (control / "postinst").read_text()) == ["try-restart"]
    assert "rm -rf /var/lib/trainwatch-agent" in (control / "postrm").read_text()


def run_postinst(deb: Path, tmp_path: Path, *args: str, user_exists: bool) -> list[str]:
    """postinst with the system's tools replaced by stubs that log their arguments: what it would do."""
    control, stubs, log = tmp_path / "DEBIAN", tmp_path / "bin", tmp_path / "calls.log"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    stubs.mkdir()
    for tool in ("adduser", "getent", "deb-systemd-helper", "deb-systemd-invoke", "systemctl"):
        code = 0 if tool != "getent" or user_exists else 2
        (stubs / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\nexit {code}\n')
        (stubs / tool).chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin"}
    subprocess.run(["sh", str(control / "postinst"), *args], check=True, env=env)
    return log.read_text().splitlines()


def test_a_first_install_adds_the_user_and_enables_the_unit_but_starts_nothing(deb, tmp_path):
    calls = run_postinst(deb, tmp_path, "configure", "", user_exists=False)
    assert "adduser --system --group --quiet --no-create-home --home /nonexistent trainwatch" in calls
    assert "deb-systemd-helper enable trainwatch-agent.service" in calls
    assert not [c for c in calls if c.startswith("deb-systemd-invoke") or " start " in f" {c} "]


def test_a_trainwatch_user_made_by_hand_is_kept(deb, tmp_path):
    calls = run_postinst(deb, tmp_path, "configure", "", user_exists=True)
    assert not [c for c in calls if c.startswith("adduser")]


def test_the_debs_unit_passes_systemd_analyze_verify(deb_root, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (this machine has no systemd)")
    # verify checks that ExecStart's command exists: point it at the unpacked one.
    unit = tmp_path / "trainwatch-agent.service"
    text = (deb_root / "lib/systemd/system/trainwatch-agent.service").read_text()
    unit.write_text(text.replace("ExecStart=/usr/bin/", f"ExecStart={deb_root}/usr/bin/"))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_lintian_finds_no_error_and_no_warning_in_the_deb(deb):
    if not shutil.which("lintian"):
        pytest.fail("lintian is not installed; `make test-tools` installs it")
    result = subprocess.run(["lintian", "--no-tag-display-limit", str(deb)], capture_output=True, text=True)
    tags = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert tags == [] and result.returncode == 0, result.stdout + result.stderr


# --- the container ---------------------------------------------------------------------------------


def test_the_images_build_stage_builds_the_container_zipapp_from_agent_alone(tmp_path):
    """The Dockerfile's build context is agent/: its build command, run in a copy of agent/ alone."""
    dockerfile = (ROOT / "agent" / "Dockerfile").read_text()
    (command,) = re.findall(r"^RUN (python packaging/build\.py .*)$", dockerfile, flags=re.M)
    source = tmp_path / "src" / "agent"
    shutil.copytree(ROOT / "agent", source, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    if WHEEL_CACHE.exists():  # the wheels the image would download, from this checkout's cache
        shutil.copytree(WHEEL_CACHE, tmp_path / "src" / "build" / "agent-wheels")
    args = command.split()[1:]
    args = [str(tmp_path / "out.pyz") if a == "/out/trainwatch-agent.pyz" else a for a in args]
    subprocess.run([sys.executable, *args], cwd=source, check=True, capture_output=True)
    with zipfile.ZipFile(tmp_path / "out.pyz") as archive:
        assert archive.read("trainwatch_agent/_packaging.py") == b'PACKAGING = "container"\n'
    assert "COPY --from=build /out/trainwatch-agent.pyz /usr/lib/trainwatch-agent/trainwatch-agent.pyz" in dockerfile
    assert 'ENTRYPOINT ["python", "/usr/lib/trainwatch-agent/trainwatch-agent.pyz"]' in dockerfile
    assert "NVIDIA_DRIVER_CAPABILITIES=utility" in dockerfile and re.search(r"^USER 10001", dockerfile, flags=re.M)


def test_the_agent_compose_file_validates_and_gives_the_agent_the_hosts_view(tmp_path):
    import yaml

    env = {**os.environ, "TRAINWATCH_URL": "http://trainwatch.example:8000", "TRAINWATCH_SERVER": "gpu-box-01"}
    compose = ROOT / "deploy" / "agent-compose.yml"
    result = subprocess.run([*compose_command(), "-f", str(compose), "config"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    agent = yaml.safe_load(result.stdout)["services"]["agent"]
    assert agent["pid"] == "host" and agent["network_mode"] == "host" and agent["runtime"] == "nvidia"
    assert agent["environment"]["TRAINWATCH_TOKEN_FILE"] == "/run/secrets/trainwatch_token"
    assert agent["environment"]["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    assert any(str(v).startswith("spool:/var/lib/trainwatch-agent") for v in agent["volumes"])
    assert Path(agent["build"]["context"]).resolve() == ROOT / "agent"
    # Without the node's slug it refuses to start, rather than sampling for nobody.
    missing = {k: v for k, v in env.items() if k != "TRAINWATCH_SERVER"}
    result = subprocess.run([*compose_command(), "-f", str(compose), "config", "-q"], capture_output=True, env=missing)
    assert result.returncode != 0
