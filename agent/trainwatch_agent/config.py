"""Settings from command-line flags or TRAINWATCH_* environment variables; a flag wins.

Every value is checked here, before anything starts: a missing or malformed one is a
ConfigError whose message is the one line the user sees (exit code 2).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from trainwatch_agent import __version__

SLUG = re.compile(r"^[-A-Za-z0-9_]{1,64}$")
TOKEN = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces: it goes into an HTTP header
LABEL_KEY = re.compile(r"^[^=,\s][^=,]{0,63}$")
MAX_LABELS = 64
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A setting that is missing or malformed; str() is one line naming it."""


@dataclass
class Config:
    url: str | None = None
    server: str | None = None
    token: str | None = None
    interval: float = 2.0
    spool_dir: Path = field(default_factory=lambda: default_spool_dir())
    spool_max_samples: int = 43200
    labels: dict[str, str] = field(default_factory=dict)
    once: bool = False
    log_level: str = "info"
    timeout: float = 10.0
    max_backoff: float = 30.0
    replay_batch: int = 500
    batch_seconds: float = 0.0

    @property
    def ingest_url(self) -> str:
        return f"{self.url}/api/ingest/servers/{self.server}/metrics/"


def default_spool_dir(environ: Mapping[str, str] | None = None, euid: int | None = None) -> Path:
    environ = os.environ if environ is None else environ
    euid = os.geteuid() if euid is None else euid
    if environ.get("STATE_DIRECTORY"):
        # systemd's StateDirectory= (may list several, colon-separated; the first is ours).
        return Path(environ["STATE_DIRECTORY"].split(":")[0]) / "spool"
    if euid == 0:
        return Path("/var/lib/trainwatch-agent/spool")
    state = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "trainwatch-agent" / "spool"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise ConfigError(f"{message} (see --help)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="trainwatch-agent",
        description="Sample this node (CPU, memory, disks, network, NVIDIA GPUs) and post the samples to TrainWatch.",
        epilog="Every flag can also be set from the environment variable named in brackets; the flag wins.",
    )
    p.add_argument("--version", action="version", version=f"trainwatch-agent {__version__}")
    p.add_argument("--url", help="base URL of the TrainWatch web app, e.g. http://trainwatch:8000 [TRAINWATCH_URL]")
    p.add_argument("--server", help="this node's server slug, as registered [TRAINWATCH_SERVER]")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", help="the server's ingest token [TRAINWATCH_TOKEN]")
    token.add_argument("--token-file", help="a file holding the ingest token [TRAINWATCH_TOKEN_FILE]")
    p.add_argument("--interval", help="seconds between samples, fractions allowed (default 2) [TRAINWATCH_INTERVAL]")
    p.add_argument("--spool-dir", help="where unsent samples wait (default: see docs) [TRAINWATCH_SPOOL_DIR]")
    p.add_argument(
        "--spool-max-samples",
        help="most samples kept in the spool; the oldest go first (default: one day's worth) "
        "[TRAINWATCH_SPOOL_MAX_SAMPLES]",
    )
    p.add_argument(
        "--label",
        action="append",
        metavar="KEY=VALUE",
        help="a label sent with every sample; repeatable [TRAINWATCH_LABELS=k=v,k2=v2]",
    )
    p.add_argument("--once", action="store_true", help="print one sample as JSON and exit; sends nothing")
    p.add_argument("--log-level", help="debug, info, warning or error (default info) [TRAINWATCH_LOG_LEVEL]")
    p.add_argument("--timeout", help="seconds to wait for the server's answer (default 10) [TRAINWATCH_TIMEOUT]")
    p.add_argument(
        "--max-backoff", help="longest wait between retries, in seconds (default 30) [TRAINWATCH_MAX_BACKOFF]"
    )
    p.add_argument(
        "--replay-batch",
        help="spooled samples sent in one request once the server answers; also the most live samples "
        "one --batch-seconds request holds (default 500) [TRAINWATCH_REPLAY_BATCH]",
    )
    p.add_argument(
        "--batch-seconds",
        help="hold live samples up to this many seconds and send them in one request; 0 sends each "
        "sample as it is taken (default 0) [TRAINWATCH_BATCH_SECONDS]",
    )
    return p


def _pick(flag_value: str | None, environ: Mapping[str, str], env_name: str) -> tuple[str | None, str]:
    """The flag's value if given, else the environment's; with the name to blame in an error."""
    if flag_value is not None:
        return flag_value, "--" + env_name[len("TRAINWATCH_") :].lower().replace("_", "-")
    value = environ.get(env_name)
    return (value if value != "" else None), env_name


def _number(raw: str, where: str, low: float, high: float, integer: bool = False) -> float:
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{where}: {raw!r} is not {kind}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{where}: must be between {low:g} and {high:g}, not {raw}")
    return value


def _url(raw: str, where: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where}: {raw!r} is not an http(s) URL, e.g. http://trainwatch.example:8000")
    return raw.strip().rstrip("/")


def _labels(items: Sequence[str], where: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not LABEL_KEY.match(key):
            raise ConfigError(f"{where}: {item!r} is not KEY=VALUE (a key of 1 to 64 characters)")
        if len(value) > 256 or "\x00" in value:
            raise ConfigError(f"{where}: the value of {key!r} is longer than 256 characters")
        labels[key] = value
    if len(labels) > MAX_LABELS:
        raise ConfigError(f"{where}: at most {MAX_LABELS} labels")
    return labels


def _token(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    if args.token is not None:
        return _check_token(args.token, "--token")
    if args.token_file is not None:
        return _read_token(args.token_file, "--token-file")
    token, token_file = environ.get("TRAINWATCH_TOKEN"), environ.get("TRAINWATCH_TOKEN_FILE")
    if token and token_file:
        raise ConfigError("TRAINWATCH_TOKEN and TRAINWATCH_TOKEN_FILE are both set; keep one")
    if token:
        return _check_token(token, "TRAINWATCH_TOKEN")
    if token_file:
        return _read_token(token_file, "TRAINWATCH_TOKEN_FILE")
    return None


def _read_token(path: str, where: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{where}: cannot read {path}: {reason}") from None
    if not token:
        raise ConfigError(f"{where}: {path} is empty")
    return _check_token(token, f"{where} {path}")


def _check_token(token: str, where: str) -> str:
    token = token.strip()
    if not TOKEN.match(token):
        raise ConfigError(f"{where}: the token must be printable ASCII without spaces")
    return token


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """The agent's settings from `argv` (without the program name) and `environ`."""
    environ = os.environ if environ is None else environ
    args = parser().parse_args(argv)
    config = Config(once=args.once)

    raw, where = _pick(args.interval, environ, "TRAINWATCH_INTERVAL")
    if raw is not None:
        config.interval = _number(raw, where, 0.1, 3600)
    raw, where = _pick(args.log_level, environ, "TRAINWATCH_LOG_LEVEL")
    if raw is not None:
        if raw.lower() not in LOG_LEVELS:
            raise ConfigError(f"{where}: {raw!r} is not one of {', '.join(LOG_LEVELS)}")
        config.log_level = raw.lower()
    label_items = [i for i in (environ.get("TRAINWATCH_LABELS") or "").split(",") if i.strip()]
    config.labels = _labels(label_items, "TRAINWATCH_LABELS")
    # Flags add to (and override per key) the labels from the environment.
    config.labels.update(_labels(args.label or [], "--label"))
    if len(config.labels) > MAX_LABELS:
        raise ConfigError(f"--label: at most {MAX_LABELS} labels in all")
    if config.once:
        return config

    raw, where = _pick(args.url, environ, "TRAINWATCH_URL")
    if raw is None:
        raise ConfigError("no server URL: set --url or TRAINWATCH_URL (e.g. http://trainwatch.example:8000)")
    config.url = _url(raw, where)
    raw, where = _pick(args.server, environ, "TRAINWATCH_SERVER")
    if raw is None:
        raise ConfigError("no server slug: set --server or TRAINWATCH_SERVER (as given to register_server)")
    if not SLUG.match(raw):
        raise ConfigError(f"{where}: {raw!r} is not a slug (1 to 64 letters, digits, '-' or '_')")
    config.server = raw
    config.token = _token(args, environ)
    if config.token is None:
        raise ConfigError("no ingest token: set --token-file, --token, TRAINWATCH_TOKEN_FILE or TRAINWATCH_TOKEN")

    raw, where = _pick(args.spool_dir, environ, "TRAINWATCH_SPOOL_DIR")
    config.spool_dir = Path(raw).expanduser() if raw is not None else default_spool_dir(environ)
    raw, where = _pick(args.spool_max_samples, environ, "TRAINWATCH_SPOOL_MAX_SAMPLES")
    if raw is not None:
        config.spool_max_samples = int(_number(raw, where, 1, 10_000_000, integer=True))
    else:
        config.spool_max_samples = math.ceil(86400 / config.interval)
    raw, where = _pick(args.timeout, environ, "TRAINWATCH_TIMEOUT")
    if raw is not None:
        config.timeout = _number(raw, where, 0.5, 300)
    raw, where = _pick(args.max_backoff, environ, "TRAINWATCH_MAX_BACKOFF")
    if raw is not None:
        config.max_backoff = _number(raw, where, 0.5, 3600)
    raw, where = _pick(args.replay_batch, environ, "TRAINWATCH_REPLAY_BATCH")
    if raw is not None:
        config.replay_batch = int(_number(raw, where, 1, 10_000, integer=True))
    raw, where = _pick(args.batch_seconds, environ, "TRAINWATCH_BATCH_SECONDS")
    if raw is not None:
        config.batch_seconds = _number(raw, where, 0, 3600)
    return config
