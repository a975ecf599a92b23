"""The running agent: sample on a steady schedule, hand each sample to the shipper,
stop cleanly on SIGTERM or SIGINT."""

from __future__ import annotations

import gc
import logging
import signal
import threading
from typing import Any

from trainwatch_agent import __version__
from trainwatch_agent.backoff import Backoff
from trainwatch_agent.collectors import Sampler
from trainwatch_agent.config import Config
from trainwatch_agent.schedule import Schedule
from trainwatch_agent.shipper import Shipper
from trainwatch_agent.spool import Spool
from trainwatch_agent.transport import CONNECT_TIMEOUT, Transport, agent_info

log = logging.getLogger("trainwatch_agent")


def _on_signal(stop: threading.Event):
    def handle(signum: int, frame: Any) -> None:
        if not stop.is_set():
            log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    return handle


def run(config: Config, stop: threading.Event | None = None) -> int:
    """Sample and ship until `stop` is set (by SIGTERM/SIGINT when run from the command line).

    Raises SpoolError when the spool directory cannot be used.
    """
    stop = stop or threading.Event()
    spool = Spool(config.spool_dir, config.spool_max_samples)
    spool.open()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _on_signal(stop))
    sampler = Sampler()
    sampler.start()
    transport = Transport(config.ingest_url, config.token or "", agent_info(config.labels), config.timeout)
    shipper = Shipper(
        transport,
        spool,
        Backoff(base=1.0, cap=config.max_backoff),
        replay_batch=config.replay_batch,
        batch_seconds=config.batch_seconds,
    )
    log.info(
        "trainwatch-agent %s: a sample every %g s to %s; %s; spool %s holds %d samples",
        __version__,
        config.interval,
        config.ingest_url,
        sampler.gpus.status,
        config.spool_dir,
        len(spool),
    )
    # Everything built so far (modules, the session) lives as long as the agent: keep the
    # garbage collector from scanning it again and again.
    gc.collect()
    gc.freeze()
    shipper.start()
    schedule = Schedule(config.interval)
    taken = 0
    try:
        while schedule.wait(stop):
            shipper.submit(sampler.sample())
            taken += 1
    finally:
        shipper.stop(timeout=config.timeout + CONNECT_TIMEOUT + 5)
        sampler.close()
        transport.close()
        spool.close()
        stats = shipper.stats
        log.info(
            "stopped: took %d samples; sent %d (%d from the spool); refused %d; spooled %d; lost %d; "
            "%d ticks skipped; %d over the spool's cap dropped; %d samples wait in the spool",
            taken,
            stats.sent,
            stats.replayed,
            stats.refused,
            stats.spooled,
            stats.lost,
            schedule.skipped,
            spool.dropped,
            len(spool),
        )
    return 0
