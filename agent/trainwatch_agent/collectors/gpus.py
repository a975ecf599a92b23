"""NVIDIA GPUs through NVML (the nvidia-ml-py package, imported as pynvml).

NVML is looked for once, when the collector starts: no library, no driver or no GPU
means `gpus: []` in every sample, never an error. Each field is read on its own and
becomes null when NVML refuses it (NVMLError), so a GPU that lacks a fan or ECC only
loses those fields. A field NVML reports as not supported is not asked for again.

Beyond the contract's fields each GPU carries fan_percent, SM and memory clocks (now and
maximum), throttle_reasons (the active clock-event reasons, by name), ECC error counts
(volatile: since the driver was last loaded), its compute processes (each with the workload it
belongs to: a Slurm job, a pod, a container or its process group, see workloads.py), PCIe throughput each way
(NVML samples it over 20 ms), video encoder and decoder utilization, MIG: whether it is on
and how many GPU instances exist (null where the GPU has no MIG), its total energy since the
driver loaded (joules), and the XID errors NVML reported since the previous sample. XID errors
arrive as NVML events, not readings: a thread started with the collector waits for them (see
xid.py); a GPU NVML will not report them for has `xid_errors: null`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psutil

from trainwatch_agent import values
from trainwatch_agent.collectors.workloads import WorkloadResolver
from trainwatch_agent.collectors.xid import XidWatcher

log = logging.getLogger(__name__)

# NVML constants, spelled here so that the collector also works against older pynvml
# versions and test fakes that lack some of them.
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_PCIE_UTIL_TX_BYTES = 0
NVML_PCIE_UTIL_RX_BYTES = 1
NVML_DEVICE_MIG_ENABLE = 1
NVML_EVENT_TYPE_XID_CRITICAL_ERROR = 0x0000000000000008  # nvmlEventTypeXidCriticalError

# nvmlClocksEventReason* / nvmlClocksThrottleReason* bits, in NVML's order.
THROTTLE_REASONS = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
    (0x200, "board_limit"),
    (0x400, "reliability"),
)

MAX_PROCESSES = 1024
# Errors after which asking again is pointless: the field does not exist on this GPU/driver.
_PERMANENT_ERRORS = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound")


def throttle_reason_names(mask: int | None) -> list[str] | None:
    if mask is None:
        return None
    return [name for bit, name in THROTTLE_REASONS if mask & bit]


def _import_pynvml() -> Any:
    import pynvml

    return pynvml


class GpuCollector:
    """Reads every GPU NVML can see; `nvml` is the pynvml module (tests pass a fake)."""

    def __init__(self, nvml: Any = None, *, xid_wait_ms: int = 500, proc_root: str | None = None) -> None:
        self._nvml = nvml
        self.workloads = WorkloadResolver(proc_root)
        self._xid_wait_ms = xid_wait_ms
        self.xid: XidWatcher | None = None
        self._handles: list[tuple[int, Any]] = []
        self._static: dict[tuple[int, str], Any] = {}
        self._unsupported: set[tuple[int, str]] = set()
        self._permanent: tuple[type, ...] = ()
        self._process_names: dict[int, tuple[str | None, str | None]] = {}
        self.status = "not started"

    # --- detection, once ---

    def start(self) -> None:
        try:
            nvml = self._nvml if self._nvml is not None else _import_pynvml()
        except ImportError as exc:
            self._disable(f"the nvidia-ml-py package cannot be imported ({exc})")
            return
        self._nvml = nvml
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError, or OSError from a broken library: no GPUs either way
            self._disable(f"NVML is not available ({exc})")
            return
        try:
            count = nvml.nvmlDeviceGetCount()
        except Exception as exc:
            self._disable(f"NVML cannot count GPUs ({exc})")
            return
        self._permanent = tuple(
            cls for cls in (getattr(nvml, name, None) for name in _PERMANENT_ERRORS) if isinstance(cls, type)
        )
        for index in range(count):
            try:
                self._handles.append((index, nvml.nvmlDeviceGetHandleByIndex(index)))
            except nvml.NVMLError as exc:
                log.warning("GPU %d: NVML gives no handle (%s); it is left out", index, exc)
        driver = self._call(-1, "nvmlSystemGetDriverVersion")
        self.status = f"{len(self._handles)} GPU(s) via NVML" + (
            f", driver {values.text(driver, 64)}" if driver else ""
        )
        if self._handles:
            self.xid = XidWatcher(nvml, self._handles, NVML_EVENT_TYPE_XID_CRITICAL_ERROR, wait_ms=self._xid_wait_ms)
            try:
                self.xid.start()
            except Exception:  # a bug there must not cost the GPUs' readings
                log.exception("the XID event watcher failed to start")
                with contextlib.suppress(Exception):
                    self.xid.close()
                self.xid = None
            else:
                log.info("%s", self.xid.status)

    def _disable(self, reason: str) -> None:
        self._handles = []
        self.status = f"no GPUs: {reason}"

    def close(self) -> None:
        # The event thread stops and its event set is freed before NVML shuts down.
        xid, self.xid = self.xid, None
        if xid is not None:
            xid.close()
        if self._handles:
            self._handles = []
            with contextlib.suppress(Exception):  # shutting down anyway
                self._nvml.nvmlShutdown()

    # --- one sample ---

    def collect(self) -> dict[str, Any]:
        gpus = [self._gpu(index, handle) for index, handle in self._handles]
        seen = {p["pid"] for gpu in gpus for p in (gpu["processes"] or ())}
        if self._process_names:
            self._process_names = {pid: v for pid, v in self._process_names.items() if pid in seen}
        self.workloads.keep_only(seen)
        return {"gpus": gpus}

    def _call(self, index: int, function: str, *args: Any) -> Any:
        """nvml.<function>(*args), or None when NVML refuses it."""
        key = (index, function)
        if key in self._unsupported:
            return None
        fn = getattr(self._nvml, function, None)
        if fn is None:
            self._unsupported.add(key)
            return None
        try:
            return fn(*args)
        except self._nvml.NVMLError as exc:
            if self._permanent and isinstance(exc, self._permanent):
                self._unsupported.add(key)
            return None
        except UnicodeDecodeError:
            # nvidia-ml-py decodes names strictly: a name that is not UTF-8 is one unreadable
            # field, never the whole GPU.
            return None

    def _static_call(self, index: int, function: str, *args: Any) -> Any:
        """Like _call, for values that never change while the driver is loaded."""
        key = (index, function + repr(args[1:]))
        if key not in self._static:
            value = self._call(index, function, *args)
            if value is None:
                return None
            self._static[key] = value
        return self._static[key]

    def _gpu(self, index: int, handle: Any) -> dict[str, Any]:
        call = self._call
        utilization = call(index, "nvmlDeviceGetUtilizationRates", handle)
        memory = call(index, "nvmlDeviceGetMemoryInfo", handle)
        memory_total = values.counter(getattr(memory, "total", None))
        memory_used = values.counter(getattr(memory, "used", None))
        power = call(index, "nvmlDeviceGetPowerUsage", handle)
        limit = call(index, "nvmlDeviceGetEnforcedPowerLimit", handle)
        if limit is None:
            limit = call(index, "nvmlDeviceGetPowerManagementLimit", handle)
        return {
            "gpu_index": index,
            "name": values.text(self._static_call(index, "nvmlDeviceGetName", handle), 200),
            "uuid": values.text(self._static_call(index, "nvmlDeviceGetUUID", handle), 100),
            "utilization_gpu_percent": values.percent(getattr(utilization, "gpu", None)),
            "utilization_memory_percent": values.percent(getattr(utilization, "memory", None)),
            "memory_total_bytes": memory_total,
            "memory_used_bytes": memory_used,
            "memory_percent": values.ratio_percent(memory_used, memory_total),
            "temperature_c": values.temperature(call(index, "nvmlDeviceGetTemperature", handle, NVML_TEMPERATURE_GPU)),
            "power_w": _milliwatts(power),
            "power_limit_w": _milliwatts(limit),
            "fan_percent": values.percent(call(index, "nvmlDeviceGetFanSpeed", handle)),
            "sm_clock_mhz": values.non_negative(call(index, "nvmlDeviceGetClockInfo", handle, NVML_CLOCK_SM)),
            "sm_clock_max_mhz": values.non_negative(
                self._static_call(index, "nvmlDeviceGetMaxClockInfo", handle, NVML_CLOCK_SM)
            ),
            "memory_clock_mhz": values.non_negative(call(index, "nvmlDeviceGetClockInfo", handle, NVML_CLOCK_MEM)),
            "memory_clock_max_mhz": values.non_negative(
                self._static_call(index, "nvmlDeviceGetMaxClockInfo", handle, NVML_CLOCK_MEM)
            ),
            "throttle_reasons": throttle_reason_names(self._throttle_mask(index, handle)),
            "ecc_errors_corrected": values.counter(self._ecc(index, handle, NVML_MEMORY_ERROR_TYPE_CORRECTED)),
            "ecc_errors_uncorrected": values.counter(self._ecc(index, handle, NVML_MEMORY_ERROR_TYPE_UNCORRECTED)),
            "processes": self._processes(index, handle),
            "pcie_rx_bytes_per_s": _kilobytes(
                call(index, "nvmlDeviceGetPcieThroughput", handle, NVML_PCIE_UTIL_RX_BYTES)
            ),
            "pcie_tx_bytes_per_s": _kilobytes(
                call(index, "nvmlDeviceGetPcieThroughput", handle, NVML_PCIE_UTIL_TX_BYTES)
            ),
            "encoder_util_percent": _sampled_percent(call(index, "nvmlDeviceGetEncoderUtilization", handle)),
            "decoder_util_percent": _sampled_percent(call(index, "nvmlDeviceGetDecoderUtilization", handle)),
            **self._mig(index, handle),
            "energy_joules_total": _millijoules(call(index, "nvmlDeviceGetTotalEnergyConsumption", handle)),
            "xid_errors": self.xid.drain(index) if self.xid is not None else None,
        }

    def _mig(self, index: int, handle: Any) -> dict[str, Any]:
        modes = self._call(index, "nvmlDeviceGetMigMode", handle)
        current = modes[0] if isinstance(modes, (list, tuple)) and modes else None
        if current is None:
            return {"mig_mode": None, "mig_instances": None}
        if current != NVML_DEVICE_MIG_ENABLE:
            return {"mig_mode": False, "mig_instances": 0}
        slots = values.counter(self._call(index, "nvmlDeviceGetMaxMigDeviceCount", handle)) or 0
        # An empty slot answers NotFound; only the instances that exist have a handle.
        instances = sum(
            self._call(index, "nvmlDeviceGetMigDeviceHandleByIndex", handle, slot) is not None for slot in range(slots)
        )
        return {"mig_mode": True, "mig_instances": instances}

    def _throttle_mask(self, index: int, handle: Any) -> int | None:
        # "Clock event reasons" is the newer name of the same bit mask (drivers 535+).
        mask = self._call(index, "nvmlDeviceGetCurrentClocksEventReasons", handle)
        if mask is None:
            mask = self._call(index, "nvmlDeviceGetCurrentClocksThrottleReasons", handle)
        return values.counter(mask)

    def _ecc(self, index: int, handle: Any, error_type: int) -> Any:
        # The function name alone would mark both error types unsupported together, which is right:
        # a GPU without ECC (or with ECC off) refuses both.
        return self._call(index, "nvmlDeviceGetTotalEccErrors", handle, error_type, NVML_VOLATILE_ECC)

    def _processes(self, index: int, handle: Any) -> list[dict[str, Any]] | None:
        running = self._call(index, "nvmlDeviceGetComputeRunningProcesses", handle)
        if running is None:
            return None
        processes = []
        for proc in list(running)[:MAX_PROCESSES]:
            pid = values.counter(getattr(proc, "pid", None))
            if pid is None:
                continue
            name, user = self._describe(pid)
            processes.append(
                {
                    "pid": pid,
                    "name": name,
                    "user": user,
                    "used_memory_bytes": values.counter(getattr(proc, "usedGpuMemory", None)),
                    "type": "compute",
                    "workload": self._workload(pid, name, user),
                }
            )
        return processes

    def _workload(self, pid: int, name: str | None, user: str | None) -> dict[str, Any] | None:
        try:
            return self.workloads.workload(pid, user, name)
        except Exception:  # a parser bug costs the workload, never the GPU's processes
            log.debug("no workload for pid %d", pid, exc_info=True)
            return None

    def _describe(self, pid: int) -> tuple[str | None, str | None]:
        """The process's name and user; None for what cannot be read (gone, another namespace, no access)."""
        if pid in self._process_names:
            return self._process_names[pid]
        name = user = None
        try:
            process = psutil.Process(pid)
            name = values.text(process.name(), 256)
            user = values.text(process.username(), 128)
        except (psutil.Error, OSError, KeyError):
            pass
        if name is not None:
            self._process_names[pid] = (name, user)
        return name, user


def _milliwatts(value: Any) -> float | None:
    number = values.non_negative(value)
    return None if number is None else round(number / 1000.0, 2)


def _millijoules(value: Any) -> float | None:
    """NVML's energy counter is in millijoules (an unsigned 64-bit count since the driver loaded)."""
    number = values.counter(value)
    # To the millijoule; beyond 1e15 J (no real counter) the server would refuse the number.
    return None if number is None else values.non_negative(number / 1000.0, 3)


def _kilobytes(value: Any) -> float | None:
    """NVML's PCIe throughput is in KB/s."""
    number = values.non_negative(value)
    return None if number is None else number * 1024.0


def _sampled_percent(value: Any) -> float | None:
    """Encoder and decoder utilization come as [percent, sampling period in µs]."""
    if isinstance(value, (list, tuple)) and value:
        return values.percent(value[0])
    return None
