"""A stand-in for the pynvml module: the functions the agent calls, answering from a table per GPU.

A GPU is a dict from NVML function name to its answer; an answer that is an NVMLError
instance is raised instead. Calls are counted per function name.

Events: a GPU whose "register_events" answer is not an error can be registered on an event set;
`raise_xid(index, xid)` then queues an XID event for it, which the next nvmlEventSetWait_v2 on
that set returns (a wait with nothing queued raises NVMLError_Timeout after its timeout).
`events="unsupported"` makes every registration answer NotSupported, `events="missing"` is an
NVML without the event functions at all.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from types import SimpleNamespace


class NVMLError(Exception):
    value = 999

    def __str__(self) -> str:
        return type(self).__name__.replace("NVMLError_", "")


class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's spelling
    value = 3


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801
    value = 12


class NVMLError_DriverNotLoaded(NVMLError):  # noqa: N801
    value = 9


class NVMLError_GpuIsLost(NVMLError):  # noqa: N801
    value = 15


class NVMLError_NotFound(NVMLError):  # noqa: N801
    value = 6


class NVMLError_Unknown(NVMLError):  # noqa: N801
    value = 999


class NVMLError_Timeout(NVMLError):  # noqa: N801
    value = 10


class NVMLError_Uninitialized(NVMLError):  # noqa: N801
    value = 1


nvmlEventTypeXidCriticalError = 0x0000000000000008  # noqa: N816 - pynvml's spelling
NO_INSTANCE = 0xFFFFFFFF  # gpuInstanceId / computeInstanceId of an event outside MIG
EVENT_FUNCTIONS = ("nvmlEventSetCreate", "nvmlDeviceRegisterEvents", "nvmlEventSetWait_v2", "nvmlEventSetFree")


class EventSet:
    def __init__(self) -> None:
        self.handles: set[int] = set()
        self.queue: queue.Queue = queue.Queue()
        self.freed = False
        self.waiting = 0  # waits in progress
        self.freed_while_waiting = False


def utilization(gpu: float, memory: float) -> SimpleNamespace:
    return SimpleNamespace(gpu=gpu, memory=memory)


def memory(total: int, used: int) -> SimpleNamespace:
    return SimpleNamespace(total=total, used=used, free=total - used)


def process(pid: int, used: int | None) -> SimpleNamespace:
    return SimpleNamespace(pid=pid, usedGpuMemory=used)


class FakeNVML:
    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Timeout = NVMLError_Timeout

    def __init__(
        self,
        gpus: list[dict],
        init_error: Exception | None = None,
        driver: str = "550.54.15",
        events: str = "supported",
    ):
        assert events in ("supported", "unsupported", "missing")
        self.gpus = gpus
        self.init_error = init_error
        self.driver = driver
        self.events = events
        self.calls: Counter[str] = Counter()
        self.initialized = False
        self.shut_down = False
        self.event_sets: list[EventSet] = []
        self.sets_in_use_at_shutdown: int | None = None
        # Errors the next waits raise (before anything queued), e.g. a GPU gone missing.
        self.wait_errors: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        if events == "missing":
            for name in EVENT_FUNCTIONS:
                setattr(self, name, None)  # getattr(nvml, name, None) finds nothing usable

    def _answer(self, name: str, handle: int, *key):
        self.calls[name] += 1
        table = self.gpus[handle]
        answer = table.get((name, *key), table.get(name, NVMLError_NotSupported()))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def nvmlInit(self):
        if self.init_error is not None:
            raise self.init_error
        self.initialized = True

    def nvmlShutdown(self):
        # A set still in use when NVML shuts down would be a bug in the collector.
        self.sets_in_use_at_shutdown = sum(not s.freed for s in self.event_sets)
        self.shut_down = True

    def nvmlSystemGetDriverVersion(self):
        return self.driver

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetName(self, h):
        return self._answer("name", h)

    def nvmlDeviceGetUUID(self, h):
        return self._answer("uuid", h)

    def nvmlDeviceGetUtilizationRates(self, h):
        return self._answer("utilization", h)

    def nvmlDeviceGetMemoryInfo(self, h):
        return self._answer("memory", h)

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == 0  # NVML_TEMPERATURE_GPU
        return self._answer("temperature", h)

    def nvmlDeviceGetPowerUsage(self, h):
        return self._answer("power_mw", h)

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._answer("enforced_limit_mw", h)

    def nvmlDeviceGetPowerManagementLimit(self, h):
        return self._answer("management_limit_mw", h)

    def nvmlDeviceGetFanSpeed(self, h):
        return self._answer("fan", h)

    def nvmlDeviceGetClockInfo(self, h, clock):
        return self._answer("clock", h, clock)

    def nvmlDeviceGetMaxClockInfo(self, h, clock):
        return self._answer("max_clock", h, clock)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self._answer("event_reasons", h)

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        return self._answer("throttle_reasons", h)

    def nvmlDeviceGetTotalEccErrors(self, h, error_type, counter_type):
        assert counter_type == 0  # NVML_VOLATILE_ECC
        return self._answer("ecc", h, error_type)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return self._answer("processes", h)

    def nvmlDeviceGetPcieThroughput(self, h, counter):
        return self._answer("pcie_kbps", h, counter)

    def nvmlDeviceGetEncoderUtilization(self, h):
        return self._answer("encoder", h)

    def nvmlDeviceGetDecoderUtilization(self, h):
        return self._answer("decoder", h)

    def nvmlDeviceGetMigMode(self, h):
        return self._answer("mig_mode", h)

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return self._answer("mig_slots", h)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, slot):
        return self._answer("mig_device", h, slot)

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return self._answer("energy_mj", h)

    # --- events ---

    def nvmlEventSetCreate(self):
        self.calls["event_set_create"] += 1
        event_set = EventSet()
        with self._lock:
            self.event_sets.append(event_set)
        return event_set

    def nvmlDeviceRegisterEvents(self, h, event_types, event_set):
        assert event_types == nvmlEventTypeXidCriticalError
        assert not event_set.freed
        if self.events == "unsupported":
            self.calls["register_events"] += 1
            raise NVMLError_NotSupported()
        self._answer("register_events", h)
        event_set.handles.add(h)

    def nvmlEventSetWait_v2(self, event_set, timeout_ms):
        self.calls["event_set_wait"] += 1
        if event_set.freed:
            raise NVMLError_Uninitialized()
        try:
            raise self.wait_errors.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            event_set.waiting += 1
        try:
            return event_set.queue.get(timeout=timeout_ms / 1000.0)
        except queue.Empty:
            raise NVMLError_Timeout() from None
        finally:
            with self._lock:
                event_set.waiting -= 1

    def nvmlEventSetFree(self, event_set):
        assert not event_set.freed, "an event set freed twice"
        with self._lock:
            event_set.freed_while_waiting = event_set.waiting > 0
            event_set.freed = True

    def raise_xid(self, index: int, xid: int, count: int = 1) -> None:
        """What the driver does on an XID error: an event on every set the GPU is registered on."""
        with self._lock:
            sets = [s for s in self.event_sets if index in s.handles and not s.freed]
        for event_set in sets:
            for _ in range(count):
                event_set.queue.put(
                    SimpleNamespace(
                        device=index,
                        eventType=nvmlEventTypeXidCriticalError,
                        eventData=xid,
                        gpuInstanceId=NO_INSTANCE,
                        computeInstanceId=NO_INSTANCE,
                    )
                )

    def events_waiting(self) -> int:
        """Events queued that no wait has taken yet."""
        with self._lock:
            return sum(s.queue.qsize() for s in self.event_sets)


def a100(**overrides) -> dict:
    """An A100 that answers everything: busy, power-capped, two compute processes."""
    gpu = {
        "name": "NVIDIA A100-SXM4-80GB",
        "uuid": "GPU-0a1b2c3d-0000-1111-2222-333344445555",
        "utilization": utilization(98, 71),
        "memory": memory(85899345920, 68719476736),
        "temperature": 64,
        "power_mw": 311250,
        "enforced_limit_mw": 400000,
        "fan": NVMLError_NotSupported(),  # SXM parts have no fan of their own
        ("clock", 1): 1410,
        ("clock", 2): 1593,
        ("max_clock", 1): 1410,
        ("max_clock", 2): 1593,
        "event_reasons": 0x004 | 0x001,  # sw_power_cap + gpu_idle bits
        ("ecc", 0): 3,
        ("ecc", 1): 0,
        "processes": [process(4242, 60129542144), process(4343, 8589934592), process(999999, None)],
        ("pcie_kbps", 1): 6_250_000,  # host to GPU: KB/s
        ("pcie_kbps", 0): 250_000,
        "encoder": [0, 167000],  # [percent, sampling period in µs]
        "decoder": [4, 167000],
        "mig_mode": [0, 0],  # [current, pending]: off
        "energy_mj": 123_456_789,  # since the driver loaded
        "register_events": None,  # XID events: supported
    }
    gpu.update(overrides)
    return gpu


def consumer_card(**overrides) -> dict:
    """A desktop card: a fan, no ECC, an older driver without the event-reasons call."""
    gpu = {
        "name": b"NVIDIA GeForce RTX 3090",
        "uuid": "GPU-ffffffff-0000-1111-2222-333344445555",
        "utilization": utilization(12, 3),
        "memory": memory(25769803776, 1073741824),
        "temperature": 45,
        "power_mw": 35000,
        "enforced_limit_mw": NVMLError_NotSupported(),
        "management_limit_mw": 350000,
        "fan": 30,
        ("clock", 1): 210,
        ("clock", 2): 405,
        ("max_clock", 1): 2100,
        ("max_clock", 2): 9751,
        "event_reasons": NVMLError_NotSupported(),
        "throttle_reasons": 0x001 | 0x020 | 0x040,
        "ecc": NVMLError_NotSupported(),
        "processes": [],
        "pcie_kbps": NVMLError_NotSupported(),
        "encoder": [12, 167000],
        "decoder": [0, 167000],
        "mig_mode": NVMLError_NotSupported(),  # no MIG on desktop cards
        "energy_mj": NVMLError_NotSupported(),  # an older card without the energy counter
        "register_events": NVMLError_NotSupported(),  # no XID events either
    }
    gpu.update(overrides)
    return gpu


def h100_mig(instances: int, **overrides) -> dict:
    """An H100 in MIG mode, `instances` of its 7 slots holding a GPU instance."""
    gpu = a100(name="NVIDIA H100 80GB HBM3", mig_mode=[1, 1], mig_slots=7, **overrides)
    for slot in range(7):
        gpu[("mig_device", slot)] = 1000 + slot if slot < instances else NVMLError_NotFound()
    return gpu
