"""The real agent command against a real web app (gunicorn + TimescaleDB): outages, restarts, a wrong token,
a large spool replayed in batches, and a server with batches turned off.

"Every sample" is counted by the agent itself: at shutdown it logs how many samples it
took and how many the server accepted. Across its runs, what it took must all be stored,
once each, with the spool empty at the end.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitoring.models import Snapshot
from tests.conftest import VENV_BIN, eventually, free_port, process_env, register, wait_for_port
from trainwatch_agent.spool import sample_key

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

AGENT = VENV_BIN / "trainwatch-agent"
INTERVAL = 0.5
STOPPED = re.compile(
    r"stopped: took (?P<taken>\d+) samples; sent (?P<sent>\d+) \((?P<replayed>\d+) from the spool\); "
    r"refused (?P<refused>\d+); spooled (?P<spooled>\d+); lost (?P<lost>\d+); .*; (?P<waiting>\d+) samples wait"
)


def start_web(processes, port: int, name: str, **settings: str) -> subprocess.Popen:
    """gunicorn on a port of our choosing, so that a restarted web app answers at the same URL."""
    args = [str(VENV_BIN / "gunicorn"), "trainwatch.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
    proc = processes.start(name, args, process_env(**settings))
    wait_for_port(port, proc=proc)
    return proc


def require_agent() -> None:
    if not AGENT.exists():
        pytest.fail(f"{AGENT} is missing: install the agent with `.venv/bin/pip install -e ./agent`")


def start_agent(
    processes, name: str, base: str, slug: str, token_file: Path, spool: Path, *extra: str
) -> subprocess.Popen:
    require_agent()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINWATCH_")}
    args = [str(AGENT), "--url", base, "--server", slug, "--token-file", str(token_file)]
    args += ["--interval", str(INTERVAL), "--spool-dir", str(spool), "--max-backoff", "2", "--label", "suite=e2e"]
    return processes.start(name, args + list(extra), env)


def stop_agent(processes, proc: subprocess.Popen) -> dict[str, int]:
    """SIGTERM, as systemd would; the agent's own count of what it did, from its last log line."""
    processes.stop(proc)
    assert proc.returncode == 0, proc.log_path.read_text()
    log = proc.log_path.read_text()
    match = STOPPED.search(log)
    assert match, log
    return {k: int(v) for k, v in match.groupdict().items()}


def spooled(spool: Path) -> int:
    return len(list(spool.glob("*.json")))


def stored_times(node) -> list:
    return list(
        Snapshot.objects.filter(server=node.server).order_by("collected_at").values_list("collected_at", flat=True)
    )


def test_it_loses_no_sample_through_an_outage_and_a_restart_of_the_agent(processes, tmp_path):
    node = register("agent-node", "Agent Node")
    token_file = tmp_path / "token"
    token_file.write_text(node.token + "\n")
    spool = tmp_path / "spool"
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    web = start_web(processes, port, "web-1")
    agent = start_agent(processes, "agent-1", base, node.slug, token_file, spool)
    eventually(lambda: len(stored_times(node)) >= 6, timeout=20, message="samples stored before the outage")

    processes.stop(web)  # the outage: ~30 s, with the agent restarted in the middle of it
    time.sleep(15)
    assert spooled(spool) >= 20
    first = stop_agent(processes, agent)
    assert first["waiting"] == spooled(spool) >= 20
    agent = start_agent(processes, "agent-2", base, node.slug, token_file, spool)
    time.sleep(15)
    assert spooled(spool) >= 45

    start_web(processes, port, "web-2")
    eventually(lambda: spooled(spool) == 0, timeout=30, message="the spool replayed")
    time.sleep(4 * INTERVAL)
    second = stop_agent(processes, agent)

    taken = first["taken"] + second["taken"]
    times = stored_times(node)
    assert second["waiting"] == 0 and spooled(spool) == 0
    assert len(times) == taken  # every sample the agent took is stored ...
    assert len(set(times)) == len(times)  # ... once each (the database keeps one per collected_at) ...
    assert first["sent"] + second["sent"] == taken  # ... and none was posted twice
    assert second["replayed"] >= 45
    assert first["refused"] == second["refused"] == 0
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    # One sample per interval throughout: the only longer gap is the agent's own restart.
    assert len([g for g in gaps if g > 2.5 * INTERVAL]) <= 1
    assert max(gaps) < 5
    log = agent.log_path.read_text()
    assert "cannot deliver to the server" in log
    assert "the server answers again" in log
    assert "spool drained" in log
    assert node.refresh().agent_labels == {"suite": "e2e"}


def test_samples_sent_with_a_wrong_token_are_kept_until_the_token_is_fixed(processes, tmp_path):
    node = register("agent-node", "Agent Node")
    wrong, right = tmp_path / "wrong-token", tmp_path / "token"
    wrong.write_text("not-the-token\n")
    right.write_text(node.token + "\n")
    spool = tmp_path / "spool"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    start_web(processes, port, "web")

    agent = start_agent(processes, "agent-wrong", base, node.slug, wrong, spool)
    eventually(lambda: spooled(spool) >= 8, timeout=20, message="samples spooled under the wrong token")
    first = stop_agent(processes, agent)
    assert stored_times(node) == []
    log = agent.log_path.read_text()
    # Loud, but once a minute, not once a sample.
    assert log.count("ERROR") == 1
    assert "the server refuses this agent (HTTP 401: invalid ingest token for this server)" in log

    agent = start_agent(processes, "agent-right", base, node.slug, right, spool)
    eventually(lambda: spooled(spool) == 0, timeout=20, message="the spool replayed with the right token")
    time.sleep(2 * INTERVAL)
    second = stop_agent(processes, agent)
    times = stored_times(node)
    assert len(times) == len(set(times)) == first["taken"] + second["taken"]
    assert second["replayed"] == first["waiting"] >= 8


def write_spool(spool: Path, count: int) -> list[datetime]:
    """A spool as an agent leaves it after an outage: `count` samples of this node, 2 s apart,
    the last a minute ago; their collected_at, oldest first."""
    require_agent()
    once = subprocess.run([str(AGENT), "--once"], capture_output=True, text=True, timeout=60, check=True)
    template = json.loads(once.stdout)["sample"]
    last = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    times = [last - timedelta(seconds=2 * (count - 1 - k)) for k in range(count)]
    spool.mkdir(parents=True)
    for moment in times:
        sample = {**template, "collected_at": moment.isoformat()}
        (spool / sample_key(sample)).write_text(json.dumps(sample))
    return times


BATCH_LINE = re.compile(r"sent (\d+) spooled samples in one request: (\d+) stored, (\d+) already stored, (\d+) refused")


def replay_spool(processes, tmp_path, count: int, **web_settings: str) -> tuple[dict[str, int], str, list, list]:
    """Start the web app and an agent over a spool of `count` samples; stop the agent once the
    spool is empty. The agent's counts, its log, the spooled times and every stored time."""
    node = register("agent-node", "Agent Node")
    token_file = tmp_path / "token"
    token_file.write_text(node.token + "\n")
    spool = tmp_path / "spool"
    spooled_times = write_spool(spool, count)
    port = free_port()
    start_web(processes, port, "web", **web_settings)
    # Debug: the agent logs each batch. A generous --timeout: on a busy test machine a batch of
    # 500 may take seconds to store.
    extra = ["--log-level", "debug", "--timeout", "30"]
    agent = start_agent(processes, "agent", f"http://127.0.0.1:{port}", node.slug, token_file, spool, *extra)
    eventually(lambda: spooled(spool) == 0, timeout=180, interval=0.5, message="the spool replayed")
    stats = stop_agent(processes, agent)
    return stats, agent.log_path.read_text(), spooled_times, stored_times(node)


def test_a_spool_of_1200_samples_is_replayed_in_batches_and_stored_once_each(processes, tmp_path):
    stats, log, spooled_times, times = replay_spool(processes, tmp_path, 1200)

    assert stats["waiting"] == 0
    assert set(spooled_times) <= set(times)  # every spooled sample is stored ...
    assert len(times) == len(set(times)) == 1200 + stats["taken"]  # ... once, with every live one
    assert stats["sent"] == 1200 + stats["taken"]  # none posted twice, none refused
    assert stats["refused"] == stats["lost"] == 0
    assert stats["replayed"] == 1200 + stats["spooled"]
    # In batches (of --replay-batch, 500), not one sample per request.
    assert "the server does not take batches" not in log
    batches = [tuple(map(int, found)) for found in BATCH_LINE.findall(log)]
    assert sum(sent for sent, *_ in batches) >= 1200
    assert max(sent for sent, *_ in batches) == 500
    assert sum(refused for *_, refused in batches) == 0
    assert "spool drained" in log


def test_a_server_with_batches_turned_off_still_gets_every_spooled_sample(processes, tmp_path):
    stats, log, spooled_times, times = replay_spool(processes, tmp_path, 300, MONITORING_INGEST_MAX_BATCH="0")

    assert stats["waiting"] == 0
    assert set(spooled_times) <= set(times)
    assert len(times) == len(set(times)) == 300 + stats["taken"]
    assert stats["sent"] == 300 + stats["taken"]
    assert stats["refused"] == stats["lost"] == 0
    assert stats["replayed"] == 300 + stats["spooled"]
    # Told once, at info level, then one sample per request.
    assert log.count("the server does not take batches of samples") == 1
    assert re.search(r" INFO trainwatch_agent\.shipper: the server does not take batches of samples \(HTTP 400", log)
    assert BATCH_LINE.search(log) is None
