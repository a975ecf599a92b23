"""`pip install ./agent` into a clean virtualenv is the whole install, and the command works from there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

AGENT_SOURCE = Path(__file__).resolve().parents[2] / "agent"

pytestmark = pytest.mark.slow


def test_it_installs_into_a_clean_virtualenv_and_prints_one_sample(tmp_path):
    # Build from a copy, so that the build leaves nothing behind in the repository.
    source = tmp_path / "agent"
    shutil.copytree(AGENT_SOURCE, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "TRAINWATCH_"))}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "-q", str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr

    result = subprocess.run(
        [str(venv / "bin" / "trainwatch-agent"), "--once", "--interval", "0.2", "--label", "rack=r1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["sample"]["gpus"] == []  # this machine has no GPU
    assert body["sample"]["memory_total_bytes"] > 0
    assert body["agent"]["version"] == "0.1.0"
    assert body["agent"]["labels"] == {"rack": "r1"}

    # Only its three dependencies came along: no Django, nothing of the backend.
    listed = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format", "json"], env=env, capture_output=True, text=True, timeout=60
    )
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"trainwatch-agent", "psutil", "nvidia-ml-py", "requests"} <= names
    assert "django" not in names
