"""`make run`: the whole system in one command, watching this machine; Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime

import pytest
import requests

from tests.conftest import ROOT, eventually, free_port, process_env, wait_for_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def sign_in(base: str, email: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=10)
    response = session.post(
        f"{base}/accounts/login/",
        data={"login": email, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=10,
    )
    assert response.ok and session.get(f"{base}/api/servers/", timeout=10).status_code == 200
    return session


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def make_run(run_dir, port: int, *args: str) -> subprocess.Popen:
    env = process_env(PORT=str(port), TRAINWATCH_RUN_DIR=str(run_dir))
    env.pop("DJANGO_SETTINGS_MODULE")
    return subprocess.Popen(
        ["make", "run", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stopped_cleanly(make: subprocess.Popen, run_dir, port: int, processes: int) -> None:
    """Ctrl-C: every process make run started is gone."""
    os.killpg(make.pid, signal.SIGINT)
    output, _ = make.communicate(timeout=60)
    assert "TrainWatch is running" in output and "Stopped." in output
    pids = [int(p) for p in (run_dir / "pids").read_text().split()]
    assert len(pids) == processes
    time.sleep(0.5)
    assert not [pid for pid in pids if alive(pid)]
    leftover = subprocess.run(["pgrep", "-f", f"127.0.0.1:{port}"], capture_output=True, text=True).stdout.split()
    assert not leftover


def test_make_run_shows_this_machine_live_and_stops_cleanly(tmp_path):
    port, run_dir = free_port(), tmp_path / "run"
    make = make_run(run_dir, port)
    try:
        wait_for_port(port, timeout=120, proc=make)
        email, password = eventually(
            lambda: (run_dir / "login.txt").read_text().split(), timeout=10, message="the local login file"
        )
        base = f"http://127.0.0.1:{port}"
        session = sign_in(base, email, password)
        slug = next(
            s["slug"]
            for s in session.get(f"{base}/api/servers/", timeout=10).json()["servers"]
            if s["labels"].get("source") == "make-run" or s["hostname"] == os.uname().nodename
        )

        def latest():
            response = session.get(f"{base}/api/metrics/latest/", params={"server": slug}, timeout=10)
            return response.json()["snapshot"] if response.status_code == 200 else None

        snapshot = eventually(latest, timeout=60, message="this machine's samples in /api/metrics/latest/")
        assert snapshot["cpu"]["usage_percent"] is not None
        assert 0 < snapshot["memory"]["percent"] <= 100
        assert snapshot["age_seconds"] < 30
        assert session.get(f"{base}/", timeout=10).status_code == 200

        # The example rules were imported; one of them fires on any machine within half a minute.
        def firing():
            alerts = session.get(f"{base}/api/alerts/", params={"server": slug}, timeout=10).json()
            return [a for a in alerts["firing"] if a["rule"] == "memory in use (example)"]

        episode = eventually(firing, timeout=90, message="the example rule firing in /api/alerts/")[0]
        assert episode["server"] == slug and episode["value"] > 1
    finally:
        stopped_cleanly(make, run_dir, port, processes=4)


def test_make_run_demo_keeps_the_demo_fleet_live_and_stops_its_feeder(tmp_path):
    port, run_dir = free_port(), tmp_path / "run"
    started = time.time()
    make = make_run(run_dir, port, "DEMO=1", "DEMO_DAYS=0.01")
    try:
        wait_for_port(port, timeout=180, proc=make)
        email, password = eventually(
            lambda: (run_dir / "login.txt").read_text().split(), timeout=10, message="the local login file"
        )
        base = f"http://127.0.0.1:{port}"
        session = sign_in(base, email, password)

        def demo_servers_live():
            servers = session.get(f"{base}/api/servers/", timeout=10).json()["servers"]
            demo = {s["slug"]: s for s in servers if s["slug"].startswith("demo-")}
            newest = [s["latest_snapshot_at"] for s in servers]
            # Samples made after make run started: the feeder's (not the seeded history), and this
            # machine's agent's: four live servers.
            return (
                len(demo) == 3
                and len(servers) == 4
                and all(t and datetime.fromisoformat(t).timestamp() > started for t in newest)
            )

        eventually(demo_servers_live, timeout=60, message="four servers with samples made after the start")
        firing = session.get(f"{base}/api/alerts/", timeout=10).json()["firing"]
        assert not [a for a in firing if a["rule"] == "node offline"], firing
        latest = session.get(f"{base}/api/metrics/latest/", params={"server": "demo-h100-01"}, timeout=10).json()
        assert {g["name"] for g in latest["snapshot"]["gpu"]["devices"]} == {"NVIDIA H100 80GB HBM3"}
    finally:
        stopped_cleanly(make, run_dir, port, processes=5)
