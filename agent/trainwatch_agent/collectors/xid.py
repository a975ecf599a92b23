"""XID errors from NVML's event API, gathered by a thread between samples.

NVML reports an XID error (a GPU or driver fault: 79 is "fallen off the bus", 48 a double-bit ECC
error, 13 a graphics engine exception) as an event on an event set, never as a value to read, so
a daemon thread waits on the set and keeps what arrives per GPU until the next sample takes it.
NVML gives no time with an event: `at` is when the agent received it (UTC).

A GPU whose registration NVML refuses (or every GPU, when the NVML library lacks the event
functions) has no list: its `xid_errors` are null, not `[]`.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger(__name__)

NVML_ERROR_TIMEOUT = 10  # what NVMLError_Timeout's .value is
# The most events one GPU sends in one sample (the server's schema.MAX_EVENTS).
MAX_EVENTS = 64
MAX_XID = 2**31 - 1  # the server's column for the number
WAIT_MS = 500  # how long one wait on the event set lasts: also how long close() may wait for it
BACKOFF_S = 1.0  # after an error other than a timeout
JOIN_S = 5.0


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def handle_key(handle: Any) -> Any:
    """What identifies a device handle: pynvml's are ctypes pointers, which compare by identity,
    and an event's `.device` is a new pointer object to the same device."""
    if isinstance(handle, ctypes._Pointer):
        return ctypes.cast(handle, ctypes.c_void_p).value
    return handle


class _Pending:
    """One GPU's events since the last sample: the first MAX_EVENTS, and how many more came."""

    __slots__ = ("dropped", "events")

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.dropped = 0


class XidWatcher:
    """Registers each GPU for `event_types` (the XID event bit) at start(); drain(index) takes one
    GPU's events."""

    def __init__(
        self,
        nvml: Any,
        handles: Iterable[tuple[int, Any]],
        event_types: int,
        *,
        wait_ms: int = WAIT_MS,
        backoff_s: float = BACKOFF_S,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._nvml = nvml
        self._handles = list(handles)
        self._event_types = event_types
        self._wait_ms = wait_ms
        self._backoff_s = backoff_s
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}  # only the GPUs that are registered
        self._indexes: dict[Any, int] = {}  # handle_key -> GPU index
        self._set: Any = None
        self._wait: Callable[[Any, int], Any] | None = None
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.status = "not started"

    # --- start and stop ---

    def start(self) -> None:
        nvml = self._nvml
        create = getattr(nvml, "nvmlEventSetCreate", None)
        register = getattr(nvml, "nvmlDeviceRegisterEvents", None)
        self._wait = getattr(nvml, "nvmlEventSetWait_v2", None) or getattr(nvml, "nvmlEventSetWait", None)
        if create is None or register is None or self._wait is None:
            self.status = "no XID events: this NVML has no event functions"
            return
        if not self._handles:
            self.status = "no XID events: no GPUs"
            return
        try:
            self._set = create()
        except Exception as exc:  # NVMLError, or a library too old for the function
            self.status = f"no XID events: NVML cannot create an event set ({exc})"
            return
        refused = []
        for index, handle in self._handles:
            try:
                register(handle, self._event_types, self._set)
            except Exception as exc:  # NotSupported on GPUs without XID events; GpuIsLost, ...
                refused.append(f"GPU {index} ({exc})")
                continue
            self._indexes[handle_key(handle)] = index
            self._pending[index] = _Pending()
        if refused:
            log.info("XID events are not available for %s", ", ".join(refused))
        if not self._pending:
            self._free()
            self.status = "no XID events: NVML refuses them for every GPU"
            return
        self.thread = threading.Thread(target=self._run, name="trainwatch-xid", daemon=True)
        self.thread.start()
        self.status = f"XID events from {len(self._pending)} GPU(s)"

    def close(self) -> None:
        self._stop.set()
        thread, self.thread = self.thread, None
        if thread is not None:
            thread.join(JOIN_S)
            if thread.is_alive():
                # Freeing the set under a wait in progress is not safe; the process is ending.
                log.warning("the XID event thread did not stop within %.0f s; its event set is not freed", JOIN_S)
                self._set = None
                return
        self._free()

    def _free(self) -> None:
        event_set, self._set = self._set, None
        free = getattr(self._nvml, "nvmlEventSetFree", None)
        if event_set is not None and free is not None:
            try:
                free(event_set)
            except Exception as exc:  # shutting down anyway
                log.debug("nvmlEventSetFree failed: %s", exc)

    # --- what a sample takes ---

    def pending(self, index: int) -> int:
        """How many events GPU `index` has received since the last drain (dropped ones included)."""
        pending = self._pending.get(index)
        if pending is None:
            return 0
        with self._lock:
            return len(pending.events) + pending.dropped

    def drain(self, index: int) -> list[dict[str, Any]] | None:
        """The events of GPU `index` since the last drain; None when its events are not watched."""
        pending = self._pending.get(index)
        if pending is None:
            return None
        with self._lock:
            events, dropped = pending.events, pending.dropped
            pending.events, pending.dropped = [], 0
        if dropped:
            log.warning(
                "GPU %d reported %d XID errors since the previous sample; the first %d are sent, %d are dropped",
                index,
                len(events) + dropped,
                MAX_EVENTS,
                dropped,
            )
        return events

    # --- the thread ---

    def _run(self) -> None:
        assert self._wait is not None
        warned = False
        while not self._stop.is_set():
            try:
                data = self._wait(self._set, self._wait_ms)
            except Exception as exc:
                if self._is_timeout(exc):
                    continue  # nothing happened
                # Logged once: a GPU that is lost may fail every wait for as long as the agent runs.
                if not warned:
                    log.warning("waiting for XID events failed (%s); retrying every %.0f s", exc, self._backoff_s)
                    warned = True
                else:
                    log.debug("waiting for XID events failed (%s)", exc)
                self._stop.wait(self._backoff_s)
                continue
            try:
                self._record(data)
            except Exception:  # a malformed event costs that event only
                log.exception("an XID event could not be read")

    def _is_timeout(self, exc: Exception) -> bool:
        timeout = getattr(self._nvml, "NVMLError_Timeout", None)
        if isinstance(timeout, type) and isinstance(exc, timeout):
            return True
        return getattr(exc, "value", None) == NVML_ERROR_TIMEOUT

    def _record(self, data: Any) -> None:
        if not int(getattr(data, "eventType", 0)) & self._event_types:
            return
        at = self._clock().isoformat()
        index = self._indexes.get(handle_key(data.device))
        xid = int(data.eventData)
        if index is None:
            log.warning("XID %d reported for a device that is not one of the watched GPUs; it is dropped", xid)
            return
        if not 0 <= xid <= MAX_XID:
            log.warning("GPU %d reported an XID out of range (%d); it is dropped", index, xid)
            return
        pending = self._pending[index]
        with self._lock:
            if len(pending.events) < MAX_EVENTS:
                pending.events.append({"xid": xid, "at": at})
            else:
                pending.dropped += 1
