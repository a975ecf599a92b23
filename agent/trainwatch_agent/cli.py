"""The `trainwatch-agent` command."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

from trainwatch_agent import logs, values
from trainwatch_agent.config import Config, ConfigError, load
from trainwatch_agent.spool import SpoolError

# --once measures CPU shares over this long (or the interval, if shorter).
ONCE_WINDOW_SECONDS = 1.0


def _fail(message: str) -> None:
    print(f"trainwatch-agent: error: {message}", file=sys.stderr)
    sys.exit(2)


def once(config: Config) -> dict:
    """One sample with its agent block, as it would be posted."""
    from trainwatch_agent.collectors import Sampler
    from trainwatch_agent.transport import agent_info

    sampler = Sampler()
    sampler.start()
    try:
        time.sleep(min(config.interval, ONCE_WINDOW_SECONDS))
        sample = sampler.sample()
    finally:
        sampler.close()
    return values.valid_unicode({"sample": sample, "agent": agent_info(config.labels)})


def main(argv: Sequence[str] | None = None) -> None:
    try:
        config = load(argv)
    except ConfigError as exc:
        _fail(str(exc))
    logs.setup(config.log_level)
    if config.once:
        json.dump(once(config), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    from trainwatch_agent.agent import run

    try:
        code = run(config)
    except SpoolError as exc:
        _fail(str(exc))
    sys.exit(code)
