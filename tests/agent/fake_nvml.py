"""A stand-in for the pynvml module: the functions the agent calls, answering from a table per GPU.

A GPU is a dict from NVML function name to its answer; an answer that is an NVMLError
instance is raised instead. Calls are counted per function name.
"""

from __future__ import annotations

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

    def __init__(self, gpus: list[dict], init_error: Exception | None = None, driver: str = "550.54.15"):
        self.gpus = gpus
        self.init_error = init_error
        self.driver = driver
        self.calls: Counter[str] = Counter()
        self.initialized = False
        self.shut_down = False

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
    }
    gpu.update(overrides)
    return gpu


def h100_mig(instances: int, **overrides) -> dict:
    """An H100 in MIG mode, `instances` of its 7 slots holding a GPU instance."""
    gpu = a100(name="NVIDIA H100 80GB HBM3", mig_mode=[1, 1], mig_slots=7, **overrides)
    for slot in range(7):
        gpu[("mig_device", slot)] = 1000 + slot if slot < instances else NVMLError_NotFound()
    return gpu
