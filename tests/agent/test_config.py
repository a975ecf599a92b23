"""Settings from flags and TRAINWATCH_* variables: flags win, bad values are one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trainwatch_agent.config import ConfigError, default_spool_dir, load

BASE = {"TRAINWATCH_URL": "http://web:8000", "TRAINWATCH_SERVER": "gpu-box-01", "TRAINWATCH_TOKEN": "s3cret"}


def test_it_reads_everything_from_the_environment(tmp_path):
    env = {
        **BASE,
        "TRAINWATCH_INTERVAL": "0.5",
        "TRAINWATCH_SPOOL_DIR": str(tmp_path / "spool"),
        "TRAINWATCH_LABELS": "rack=r1, role=trainer",
    }
    config = load([], env)
    assert config.url == "http://web:8000"
    assert config.server == "gpu-box-01"
    assert config.token == "s3cret"
    assert config.interval == 0.5
    assert config.spool_dir == tmp_path / "spool"
    assert config.spool_max_samples == 172800  # a day at 0.5 s
    assert config.labels == {"rack": "r1", "role": "trainer"}
    assert config.ingest_url == "http://web:8000/api/ingest/servers/gpu-box-01/metrics/"


def test_flags_win_over_the_environment(tmp_path):
    argv = ["--url", "https://other/", "--server", "box-2", "--token", "flag-token", "--interval", "5"]
    argv += ["--spool-max-samples", "100", "--label", "role=eval", "--label", "zone=b"]
    config = load(argv, {**BASE, "TRAINWATCH_INTERVAL": "1", "TRAINWATCH_LABELS": "rack=r1,role=trainer"})
    assert (config.url, config.server, config.token, config.interval) == ("https://other", "box-2", "flag-token", 5.0)
    assert config.spool_max_samples == 100
    # Labels: the environment's, with the flags added and overriding per key.
    assert config.labels == {"rack": "r1", "role": "eval", "zone": "b"}


def test_the_defaults(tmp_path):
    config = load([], BASE)
    assert config.interval == 2.0
    assert config.spool_max_samples == 43200  # a day at 2 s
    assert config.labels == {}
    assert config.timeout == 10.0
    assert config.replay_batch == 500
    assert config.batch_seconds == 0.0  # live samples go one at a time


def test_the_batch_settings_from_flags_or_the_environment():
    config = load(["--replay-batch", "200", "--batch-seconds", "10"], BASE)
    assert (config.replay_batch, config.batch_seconds) == (200, 10.0)
    config = load([], {**BASE, "TRAINWATCH_REPLAY_BATCH": "1000", "TRAINWATCH_BATCH_SECONDS": "2.5"})
    assert (config.replay_batch, config.batch_seconds) == (1000, 2.5)
    assert load(["--batch-seconds", "0"], {**BASE, "TRAINWATCH_BATCH_SECONDS": "30"}).batch_seconds == 0.0


def test_it_reads_the_token_from_a_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    env = {k: v for k, v in BASE.items() if k != "TRAINWATCH_TOKEN"}
    assert load(["--token-file", str(token_file)], env).token == "from-a-file"
    assert load([], {**env, "TRAINWATCH_TOKEN_FILE": str(token_file)}).token == "from-a-file"
    # A --token-file flag wins over the TRAINWATCH_TOKEN variable.
    assert load(["--token-file", str(token_file)], BASE).token == "from-a-file"


@pytest.mark.parametrize(
    "argv, env, message",
    [
        ([], {}, "no server URL: set --url or TRAINWATCH_URL"),
        ([], {**BASE, "TRAINWATCH_URL": "web:8000"}, "TRAINWATCH_URL: 'web:8000' is not an http(s) URL"),
        (["--server", "bad slug"], BASE, "--server: 'bad slug' is not a slug"),
        ([], {k: v for k, v in BASE.items() if k != "TRAINWATCH_SERVER"}, "no server slug"),
        ([], {k: v for k, v in BASE.items() if k != "TRAINWATCH_TOKEN"}, "no ingest token"),
        (["--token-file", "/nonexistent/token"], BASE, "--token-file: cannot read /nonexistent/token"),
        (["--interval", "fast"], BASE, "--interval: 'fast' is not a number"),
        ([], {**BASE, "TRAINWATCH_INTERVAL": "0"}, "TRAINWATCH_INTERVAL: must be between 0.1 and 3600, not 0"),
        (["--interval", "nan"], BASE, "--interval: must be between"),
        (["--spool-max-samples", "1.5"], BASE, "--spool-max-samples: '1.5' is not a whole number"),
        (["--label", "novalue"], BASE, "--label: 'novalue' is not KEY=VALUE"),
        ([], {**BASE, "TRAINWATCH_LABELS": "a=1,=2"}, "TRAINWATCH_LABELS: '=2' is not KEY=VALUE"),
        ([], {**BASE, "TRAINWATCH_TOKEN_FILE": "/x"}, "TRAINWATCH_TOKEN and TRAINWATCH_TOKEN_FILE are both set"),
        (["--token", "has space"], BASE, "--token: the token must be printable ASCII"),
        (["--token", "a", "--token-file", "b"], BASE, "not allowed with argument"),
        (["--log-level", "loud"], BASE, "--log-level: 'loud' is not one of"),
        (["--replay-batch", "0"], BASE, "--replay-batch: must be between 1 and 10000, not 0"),
        ([], {**BASE, "TRAINWATCH_REPLAY_BATCH": "many"}, "TRAINWATCH_REPLAY_BATCH: 'many' is not a whole number"),
        (["--batch-seconds", "-1"], BASE, "--batch-seconds: must be between 0 and 3600, not -1"),
        ([], {**BASE, "TRAINWATCH_BATCH_SECONDS": "soon"}, "TRAINWATCH_BATCH_SECONDS: 'soon' is not a number"),
        (["--frobnicate"], BASE, "unrecognized arguments: --frobnicate"),
    ],
)
def test_it_refuses_a_missing_or_malformed_setting(argv, env, message):
    with pytest.raises(ConfigError) as refused:
        load(argv, env)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_it_refuses_an_empty_token_file(tmp_path):
    (tmp_path / "token").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load(["--token-file", str(tmp_path / "token")], BASE)


def test_once_needs_no_server_settings():
    config = load(["--once", "--label", "rack=r9"], {})
    assert config.once and config.url is None
    assert config.labels == {"rack": "r9"}


def test_the_default_spool_directory_follows_who_runs_the_agent(tmp_path):
    assert default_spool_dir({}, euid=0) == Path("/var/lib/trainwatch-agent/spool")
    assert default_spool_dir({"STATE_DIRECTORY": "/var/lib/trainwatch-agent"}, euid=990) == Path(
        "/var/lib/trainwatch-agent/spool"
    )
    assert default_spool_dir({"XDG_STATE_HOME": str(tmp_path)}, euid=1000) == tmp_path / "trainwatch-agent" / "spool"
    assert default_spool_dir({}, euid=1000) == Path.home() / ".local/state/trainwatch-agent/spool"


def run_cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainwatch_agent", *argv],
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_command_prints_one_line_and_exits_2_on_a_bad_setting():
    result = run_cli("--url", "http://web:8000", "--server", "box", "--token", "t", "--interval", "-1")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "trainwatch-agent: error: --interval: must be between 0.1 and 3600, not -1\n"


def test_the_command_exits_2_when_the_spool_directory_cannot_be_used(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli(
        "--url", "http://127.0.0.1:9", "--server", "box", "--token", "t", "--spool-dir", str(blocker / "spool")
    )
    assert result.returncode == 2
    assert result.stderr.startswith("trainwatch-agent: error: cannot use spool directory")
    assert result.stderr.count("\n") == 1


def test_the_command_prints_its_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "trainwatch-agent 0.1.0"
