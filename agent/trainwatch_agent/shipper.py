"""Getting samples to the server: live ones first, then the spool, in a thread of its own.

The sampler hands each new sample to `submit()` and goes back to its schedule; a slow
or absent server never delays sampling. The shipper thread sends each live sample as
it comes, then up to `replay_batch` spooled ones (oldest first), stopping early when a
new live sample is waiting. A sample that cannot be sent now goes to the spool; while
the backoff runs, live samples go straight to the spool without a try.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from trainwatch_agent.backoff import Backoff
from trainwatch_agent.logs import Limiter
from trainwatch_agent.spool import Spool
from trainwatch_agent.transport import CONFIG, REFUSED, SENT, Outcome, Transport

log = logging.getLogger(__name__)

# Live samples waiting in memory beyond this (the sender is stuck on a slow server) go to the spool.
MAX_OUTBOX = 16


@dataclass
class Stats:
    sent: int = 0  # accepted by the server, live or replayed
    replayed: int = 0  # of those, sent from the spool
    refused: int = 0  # 400: dropped
    spooled: int = 0  # written to the spool
    lost: int = 0  # the spool could not be written


class Shipper:
    def __init__(
        self,
        transport: Transport,
        spool: Spool,
        backoff: Backoff,
        *,
        replay_batch: int = 50,
        max_outbox: int = MAX_OUTBOX,
    ) -> None:
        self.transport = transport
        self.spool = spool
        self.backoff = backoff
        self.replay_batch = replay_batch
        self.max_outbox = max_outbox
        self.stats = Stats()
        self._outbox: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition()
        self._stats_lock = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._limiter = Limiter(60.0)
        self._replaying = False

    # --- the sampler's side ---

    def submit(self, sample: dict[str, Any]) -> None:
        overflow = None
        with self._cond:
            self._outbox.append(sample)
            if len(self._outbox) > self.max_outbox:
                overflow = self._outbox.popleft()
            self._cond.notify()
        if overflow is not None:
            self._spool(overflow)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="trainwatch-shipper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Deliver (or spool) what is waiting, then end the thread; spools the rest if it hangs."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the server did not answer within %.0f s of stopping; spooling what is left", timeout)
        with self._cond:
            left, self._outbox = list(self._outbox), deque()
        for sample in left:
            self._spool(sample)

    # --- the shipper thread ---

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._outbox and not self._stopping:
                    self._cond.wait()
                live, self._outbox = list(self._outbox), deque()
                stopping = self._stopping
            for sample in live:
                try:
                    self.deliver(sample)
                except Exception:
                    # A bug must not stop delivery for good: keep the sample and go on.
                    self._log_bug("delivering a sample")
                    self._spool(sample)
            if stopping:
                return
            try:
                self.replay()
            except Exception:
                self._log_bug("replaying the spool")

    def deliver(self, sample: dict[str, Any]) -> None:
        """Send one live sample, or spool it when it cannot go now."""
        if self.backoff.waiting:
            self._spool(sample)
            return
        self._settle(self.transport.send(sample), sample=sample)

    def replay(self) -> None:
        """Send up to replay_batch spooled samples, oldest first, while nothing live waits."""
        for _ in range(self.replay_batch):
            if self._outbox or self._stopping or self.backoff.waiting:
                return
            item = self.spool.oldest()
            if item is None:
                if self._replaying:
                    self._replaying = False
                    log.info("spool drained: every spooled sample is on the server")
                return
            name, sample = item
            outcome = self.transport.send(sample)
            self._settle(outcome, sample=sample, spool_name=name)
            if outcome.kind not in (SENT, REFUSED):
                return

    def _settle(self, outcome: Outcome, sample: dict[str, Any], spool_name: str | None = None) -> None:
        if outcome.kind == SENT:
            self._count("sent")
            if spool_name is not None:
                self.spool.remove(spool_name)
                self._count("replayed")
            self._answered()
        elif outcome.kind == REFUSED:
            self._count("refused")
            if spool_name is not None:
                self.spool.remove(spool_name)
            if self._limiter.ready("refused"):
                log.warning(
                    "the server refused the sample of %s, which is dropped: %s%s",
                    sample.get("collected_at"),
                    outcome.message,
                    _more(self._limiter.suppressed("refused"), "refused"),
                )
            self._answered()
        else:
            if spool_name is None:
                self._spool(sample)
            wait = self.backoff.fail(outcome.retry_after)
            self._failed(outcome, wait)

    def _answered(self) -> None:
        if self.backoff.failures:
            log.info("the server answers again; sending the %d spooled samples", len(self.spool))
            self._limiter.forget("unreachable")
            self._limiter.forget("config")
        self.backoff.succeed()
        if len(self.spool):
            self._replaying = True

    def _failed(self, outcome: Outcome, wait: float) -> None:
        if outcome.kind == CONFIG:
            # Loud, but once a minute: the same answer would come every interval until someone fixes it.
            if self._limiter.ready("config"):
                log.error(
                    "the server refuses this agent (%s): check --url, --server and the token; "
                    "samples are kept in the spool (%d now) and sent once this is fixed",
                    outcome.message,
                    len(self.spool),
                )
        elif self._limiter.ready("unreachable"):
            log.warning(
                "cannot deliver to the server (%s); spooling samples (%d in the spool), next try in %.1f s",
                outcome.message,
                len(self.spool),
                wait,
            )

    def _log_bug(self, doing: str) -> None:
        if self._limiter.ready("bug:" + doing):
            log.exception("unexpected error while %s", doing)

    def _spool(self, sample: dict[str, Any]) -> None:
        self._count("spooled" if self.spool.put(sample) else "lost")

    def _count(self, name: str) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)


def _more(count: int, what: str) -> str:
    return f" ({count} more {what} in the last minute)" if count else ""
