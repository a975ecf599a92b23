"""Getting samples to the server: live ones first, then the spool, in a thread of its own.

The sampler hands each new sample to `submit()` and goes back to its schedule; a slow
or absent server never delays sampling. The shipper thread sends each live sample as
it comes, one per request, then replays the spool: up to `replay_batch` spooled samples,
oldest first, in one batch request, stopping early when a new live sample is waiting. A
sample that cannot be sent now goes to the spool; while the backoff runs, live samples
go straight to the spool without a try.

With `batch_seconds` set, live samples are held up to that long (and at most
`replay_batch` of them) and sent together in one batch request.

A batch answered 413 is too large for the server: it is sent again in halves (down to
one sample a request) for the rest of that replay. A server that answers a batch with
400 and no batch fields does not take batches: from then on the shipper sends every
sample on its own, as it did before batches existed, and sends that batch again, one
sample at a time. Samples the server refuses are dropped, never retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Optional

from trainwatch_agent.backoff import Backoff
from trainwatch_agent.logs import Limiter
from trainwatch_agent.spool import Spool
from trainwatch_agent.transport import CONFIG, REFUSED, SENT, TOO_LARGE, UNSUPPORTED, Outcome, Transport

log = logging.getLogger(__name__)

# Live samples waiting in memory beyond this (the sender is stuck on a slow server) go to the spool.
MAX_OUTBOX = 16

# A sample on its way: its spool file name (None for a live sample) and the sample. Evaluated at
# import, so not `str | None`: the agent runs on Python 3.9.
Item = tuple[Optional[str], dict[str, Any]]


@dataclass
class Stats:
    sent: int = 0  # accepted by the server (or stored already), live or replayed
    replayed: int = 0  # of those, sent from the spool
    refused: int = 0  # refused by the server (400, 413, or named in a batch's answer): dropped
    spooled: int = 0  # written to the spool
    lost: int = 0  # the spool could not be written


class Shipper:
    def __init__(
        self,
        transport: Transport,
        spool: Spool,
        backoff: Backoff,
        *,
        replay_batch: int = 500,
        batch_seconds: float = 0.0,
        max_outbox: int = MAX_OUTBOX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.spool = spool
        self.backoff = backoff
        self.replay_batch = replay_batch
        self.batch_seconds = batch_seconds
        self.max_outbox = max_outbox
        self.stats = Stats()
        # False once the server showed that it does not take batches: one sample per request.
        self.batches = True
        self._clock = clock
        self._outbox: deque[dict[str, Any]] = deque()
        # With batch_seconds: live samples held for the next batch, with the time each came.
        self._held: deque[tuple[float, dict[str, Any]]] = deque()
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
            left = [sample for _, sample in self._held] + list(self._outbox)
            self._held, self._outbox = deque(), deque()
        for sample in left:
            self._spool(sample)

    # --- the shipper thread ---

    def _run(self) -> None:
        while True:
            with self._cond:
                live = self._take_live()
                while live is None:
                    self._cond.wait(self._wait_time())
                    live = self._take_live()
                stopping = self._stopping
            if self.batch_seconds > 0:
                self._deliver_safely(live, partial(self.deliver_batch, live))
            else:
                for sample in live:
                    self._deliver_safely([sample], partial(self.deliver, sample))
            if stopping:
                return
            try:
                self.replay()
            except Exception:
                self._log_bug("replaying the spool")

    def _take_live(self) -> list[dict[str, Any]] | None:
        """The live samples to send now (with the condition's lock held); None: wait for more."""
        if self.batch_seconds <= 0:
            if self._outbox or self._stopping:
                live, self._outbox = list(self._outbox), deque()
                return live
            return None
        now = self._clock()
        while self._outbox:
            self._held.append((now, self._outbox.popleft()))
        if self._stopping:
            live = [sample for _, sample in self._held]
            self._held = deque()
            return live
        if self._held and (len(self._held) >= self.replay_batch or now >= self._held[0][0] + self.batch_seconds):
            return [self._held.popleft()[1] for _ in range(min(len(self._held), self.replay_batch))]
        return None

    def _wait_time(self) -> float | None:
        """How long the thread may sleep before held samples are due (None: until a sample comes)."""
        if self.batch_seconds <= 0 or not self._held:
            return None
        return max(0.0, self._held[0][0] + self.batch_seconds - self._clock())

    def _deliver_safely(self, samples: list[dict[str, Any]], deliver: Callable[[], None]) -> None:
        try:
            deliver()
        except Exception:
            # A bug must not stop delivery for good: keep the samples and go on.
            self._log_bug("delivering a sample")
            for sample in samples:
                self._spool(sample)

    def deliver(self, sample: dict[str, Any]) -> None:
        """Send one live sample, or spool it when it cannot go now."""
        if self.backoff.waiting:
            self._spool(sample)
            return
        self._settle(self.transport.send(sample), sample=sample)

    def deliver_batch(self, samples: list[dict[str, Any]]) -> None:
        """Send live samples in one batch request (or as few as the server takes); spool what cannot go now."""
        self._send([(None, sample) for sample in samples], live=True)

    def replay(self) -> None:
        """Send up to replay_batch spooled samples, oldest first, while nothing live waits."""
        if self._interrupted():
            return
        items: list[Item] = list(self.spool.oldest_batch(self.replay_batch))
        if items:
            self._send(items, live=False)
        if not len(self.spool) and self._replaying:
            self._replaying = False
            log.info("spool drained: every spooled sample is on the server")

    def _interrupted(self) -> bool:
        return bool(self._outbox) or self._stopping or self.backoff.waiting

    def _send(self, items: list[Item], live: bool) -> None:
        """Send `items` in batches as large as the server takes; replays stop when a live sample waits."""
        size = min(len(items), self.replay_batch)
        while items:
            if live and self.backoff.waiting:
                for _, sample in items:
                    self._spool(sample)
                return
            if not live and self._interrupted():
                return
            if not self.batches:
                self._send_singly(items, live)
                return
            chunk, rest = items[:size], items[size:]
            outcome = self.transport.send_batch([sample for _, sample in chunk])
            if outcome.kind == TOO_LARGE and len(chunk) > 1:
                size = max(1, len(chunk) // 2)
                log.debug("%d samples are too many for one request (%s); trying %d", len(chunk), outcome.message, size)
                continue
            if outcome.kind == UNSUPPORTED:
                self.batches = False
                log.info(
                    "the server does not take batches of samples (%s); sending one sample per request from now on",
                    outcome.message,
                )
                self._send_singly(items, live)
                return
            if outcome.kind == TOO_LARGE:  # one sample too large: the server will never take it
                outcome = Outcome(REFUSED, outcome.status, outcome.message, refused=[(0, outcome.message)])
            self._settle_batch(outcome, chunk, live)
            if outcome.kind not in (SENT, REFUSED):
                if live:
                    for _, sample in rest:
                        self._spool(sample)
                return
            items = rest

    def _send_singly(self, items: list[Item], live: bool) -> None:
        """One request per sample (a server without batches), stopping at the first failure."""
        for position, (name, sample) in enumerate(items):
            if live and self.backoff.waiting:
                for _, left in items[position:]:
                    self._spool(left)
                return
            if not live and self._interrupted():
                return
            outcome = self.transport.send(sample)
            self._settle(outcome, sample=sample, spool_name=name)
            if outcome.kind not in (SENT, REFUSED) and not live:
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
            self._log_refused(sample, outcome.message)
            self._answered()
        else:
            if spool_name is None:
                self._spool(sample)
            wait = self.backoff.fail(outcome.retry_after)
            self._failed(outcome, wait)

    def _settle_batch(self, outcome: Outcome, chunk: list[Item], live: bool) -> None:
        if outcome.kind in (SENT, REFUSED):
            # Answered: every sample of the batch is on the server or refused for good.
            refused: dict[int, str] = {}
            if outcome.kind == REFUSED:
                refused = dict.fromkeys(range(len(chunk)), outcome.message)
            refused.update(outcome.refused)
            if not live:
                self.spool.remove_many([name for name, _ in chunk if name is not None])
            sent = len(chunk) - len(refused)
            self._count("sent", sent)
            if not live:
                self._count("replayed", sent)
            self._count("refused", len(refused))
            for index, error in refused.items():
                self._log_refused(chunk[index][1], error)
            log.debug(
                "sent %d %s samples in one request: %d stored, %d already stored, %d refused",
                len(chunk),
                "live" if live else "spooled",
                outcome.accepted,
                outcome.duplicates,
                len(refused),
            )
            self._answered()
        else:
            if live:
                for _, sample in chunk:
                    self._spool(sample)
            wait = self.backoff.fail(outcome.retry_after)
            self._failed(outcome, wait)

    def _log_refused(self, sample: dict[str, Any], message: str) -> None:
        if self._limiter.ready("refused"):
            log.warning(
                "the server refused the sample of %s, which is dropped: %s%s",
                sample.get("collected_at"),
                message,
                _more(self._limiter.suppressed("refused"), "refused"),
            )

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

    def _count(self, name: str, amount: int = 1) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + amount)


def _more(count: int, what: str) -> str:
    return f" ({count} more {what} in the last minute)" if count else ""
