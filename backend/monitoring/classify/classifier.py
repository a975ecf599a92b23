"""What holds a node back: a pure classifier (numbers in, a Bottleneck out).

No Django here. `classify(window)` looks at the newest reading in its context: a
few seconds of readings are reduced to their median so that one odd sample does not flip the
label, and "GPU memory held while idle" must last a while before it is reported.
Every threshold lives in `Thresholds`; changing one means bumping RULES_VERSION.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median

from ..catalogue import title_for

RULES_VERSION = 1


# NVML clock-throttle reasons that mean "the GPU is being held below its speed".
THROTTLING_REASONS = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "hw_thermal_slowdown",
        "sw_thermal_slowdown",
        "hw_power_brake_slowdown",
    }
)


@dataclass(frozen=True)
class Thresholds:
    gpu_busy: float = 90.0  # top GPU util at or above this: the GPU is the bottleneck
    gpu_starved: float = 70.0  # below this a GPU in use is waiting on something
    gpu_active: float = 5.0  # below this a GPU computes nothing
    gpu_memory_held: float = 5.0  # GPU memory % above which memory counts as held
    idle_held_seconds: float = 30.0  # how long held-but-idle must last
    smooth_seconds: float = 10.0  # the median of this many seconds of readings decides
    cpu_busy: float = 85.0
    iowait_high: float = 20.0
    disk_busy: float = 80.0
    memory_high: float = 95.0
    memory_pressure: float = 85.0  # with swap in use above swap_high: memory-bound
    swap_high: float = 20.0
    host_idle: float = 10.0  # CPU and disk below this: nothing is happening
    power_cap_ratio: float = 0.97  # power at or above this share of the limit is capped
    temperature_hot: float = 87.0


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class GpuReading:
    gpu_index: int
    util: float | None = None
    memory_percent: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    throttle_reasons: tuple[str, ...] = ()
    process_names: tuple[str, ...] = ()
    pcie_rx_bytes_per_s: float | None = None  # host to GPU: the data feed


@dataclass(frozen=True)
class Reading:
    """One sample as the classifier sees it; `at` is in seconds (any epoch)."""

    at: float
    cpu_usage: float | None = None
    cpu_iowait: float | None = None
    memory_percent: float | None = None
    swap_percent: float | None = None
    disk_util: float | None = None
    gpus: tuple[GpuReading, ...] = field(default_factory=tuple)


# Where each reading's field comes from: the catalogue's metric of the same name in its block
# (`processes` arrive as the names of the processes).
READING_METRICS = {
    "cpu_usage": "cpu_usage_percent",
    "cpu_iowait": "cpu_iowait_percent",
    "memory_percent": "memory_percent",
    "swap_percent": "swap_percent",
    "disk_util": "disk_util_percent",
}
GPU_READING_METRICS = {
    "util": "utilization_gpu_percent",
    "memory_percent": "memory_percent",
    "temperature_c": "temperature_c",
    "power_w": "power_w",
    "power_limit_w": "power_limit_w",
    "throttle_reasons": "throttle_reasons",
    "process_names": "processes",
    "pcie_rx_bytes_per_s": "pcie_rx_bytes_per_s",
}


@dataclass(frozen=True)
class Bottleneck:
    label: str
    confidence: float
    reason: str

    @property
    def title(self) -> str:
        return title_for(self.label)


def _median(values) -> float | None:
    # The median, not the mean: one odd sample in the window must not flip the label.
    present = [v for v in values if v is not None]
    return median(present) if present else None


def _margin(value: float, threshold: float, ceiling: float) -> float:
    """How far past a threshold a value is, 0..1."""
    if ceiling <= threshold:
        return 1.0
    return max(0.0, min(1.0, (value - threshold) / (ceiling - threshold)))


def _confidence(margin: float, low: float = 0.6, high: float = 0.98) -> float:
    return round(low + (high - low) * margin, 2)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def _rate(bytes_per_second: float) -> str:
    for unit, size in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if bytes_per_second >= size:
            return f"{bytes_per_second / size:.{1 if bytes_per_second < 10 * size else 0}f} {unit}"
    return f"{bytes_per_second:.0f} B/s"


@dataclass(frozen=True)
class _Host:
    cpu: float | None
    iowait: float | None
    memory: float | None
    swap: float | None
    disk: float | None


@dataclass(frozen=True)
class _Gpu:
    gpu_index: int
    util: float
    memory: float
    temperature: float | None
    power: float | None
    power_limit: float | None
    reasons: tuple[str, ...]
    feed: float | None  # host-to-GPU PCIe bytes per second


def _smooth(window: Sequence[Reading], seconds: float) -> tuple[_Host, list[_Gpu]]:
    newest = window[-1].at
    recent = [r for r in window if newest - r.at <= seconds] or [window[-1]]
    host = _Host(
        cpu=_median(r.cpu_usage for r in recent),
        iowait=_median(r.cpu_iowait for r in recent),
        memory=_median(r.memory_percent for r in recent),
        swap=_median(r.swap_percent for r in recent),
        disk=_median(r.disk_util for r in recent),
    )
    gpus = []
    for gpu in window[-1].gpus:
        same = [g for r in recent for g in r.gpus if g.gpu_index == gpu.gpu_index]
        gpus.append(
            _Gpu(
                gpu_index=gpu.gpu_index,
                util=_median(g.util for g in same) or 0.0,
                memory=_median(g.memory_percent for g in same) or 0.0,
                temperature=gpu.temperature_c,
                power=_median(g.power_w for g in same),
                power_limit=gpu.power_limit_w,
                reasons=gpu.throttle_reasons,
                feed=_median(g.pcie_rx_bytes_per_s for g in same),
            )
        )
    return host, gpus


def classify(window: Sequence[Reading], t: Thresholds = DEFAULT_THRESHOLDS) -> Bottleneck:
    """Classify the newest reading of `window` (oldest first), using the others as context."""
    if not window:
        raise ValueError("classify needs at least one reading")
    host, gpus = _smooth(window, t.smooth_seconds)
    if not gpus:
        return _host_only(host, t)

    top = max(gpus, key=lambda g: g.util)
    throttled = _throttled(gpus, t)
    if throttled is not None:
        return throttled
    if top.util >= t.gpu_busy:
        return Bottleneck(
            "gpu-bound",
            _confidence(_margin(top.util, t.gpu_busy, 100.0)),
            f"GPU {top.util:.0f}% saturated while CPU {_pct(host.cpu)} and disk {_pct(host.disk)} are lower",
        )

    held = [g for g in gpus if g.memory >= t.gpu_memory_held]
    if top.util < t.gpu_active and held:
        idle_held = _idle_held(window, t)
        if idle_held is not None:
            return idle_held
    # What the GPU is fed over PCIe shows a starved GPU directly: a trickle while the host is busy.
    fed = "" if top.feed is None else f", fed {_rate(top.feed)} from the host,"
    pressure = _host_pressure(host, t, gpu_note=f"GPU at {top.util:.0f}%{fed} while ")
    if pressure is not None:
        if top.util >= t.gpu_starved:
            # The GPU is fairly busy: the host's pressure is only a partial explanation.
            return Bottleneck(pressure.label, min(pressure.confidence, 0.6), pressure.reason)
        return pressure
    if top.util < t.gpu_active:
        return _idle_or_balanced(host, t, gpu_note=f"GPU {top.util:.0f}%, ")
    return Bottleneck(
        "balanced",
        0.5 if top.util < t.gpu_starved else 0.7,
        f"no resource saturated: GPU {top.util:.0f}%, CPU {_pct(host.cpu)}, disk {_pct(host.disk)}",
    )


def _host_only(host: _Host, t: Thresholds) -> Bottleneck:
    return _host_pressure(host, t, gpu_note="") or _idle_or_balanced(host, t, gpu_note="")


def _host_pressure(host: _Host, t: Thresholds, gpu_note: str) -> Bottleneck | None:
    """memory-, io- or cpu-bound, in that order (swapping slows everything else down)."""
    memory, swap = host.memory or 0.0, host.swap or 0.0
    if memory >= t.memory_high or (memory >= t.memory_pressure and swap >= t.swap_high):
        margin = max(_margin(memory, t.memory_high, 100.0), _margin(swap, t.swap_high, 100.0))
        return Bottleneck(
            "memory-bound",
            _confidence(margin),
            f"{gpu_note}memory is {memory:.0f}% used and swap {swap:.0f}%",
        )
    iowait, disk = host.iowait or 0.0, host.disk or 0.0
    if iowait >= t.iowait_high or disk >= t.disk_busy:
        margin = max(_margin(iowait, t.iowait_high, 60.0), _margin(disk, t.disk_busy, 100.0))
        return Bottleneck(
            "io-bound",
            _confidence(margin),
            f"{gpu_note}disk is {disk:.0f}% busy with iowait {iowait:.0f}%",
        )
    cpu = host.cpu or 0.0
    if cpu >= t.cpu_busy:
        return Bottleneck(
            "cpu-bound",
            _confidence(_margin(cpu, t.cpu_busy, 100.0)),
            f"{gpu_note}CPU is {cpu:.0f}% busy",
        )
    return None


def _idle_or_balanced(host: _Host, t: Thresholds, gpu_note: str) -> Bottleneck:
    cpu, disk = host.cpu or 0.0, host.disk or 0.0
    if cpu < t.host_idle and disk < t.host_idle:
        quiet = 1.0 - max(cpu, disk) / t.host_idle
        return Bottleneck("idle", _confidence(quiet), f"nothing is busy: {gpu_note}CPU {cpu:.0f}%, disk {disk:.0f}%")
    return Bottleneck("balanced", 0.5, f"no resource saturated: {gpu_note}CPU {cpu:.0f}%, disk {disk:.0f}%")


def _throttled(gpus: list[_Gpu], t: Thresholds) -> Bottleneck | None:
    """A working GPU held below its speed by a power or thermal cap."""
    for gpu in sorted(gpus, key=lambda g: -g.util):
        if gpu.util < t.gpu_starved:
            continue
        causes = []
        active = sorted(THROTTLING_REASONS.intersection(gpu.reasons))
        if active:
            causes.append(", ".join(active))
        if gpu.power is not None and gpu.power_limit and gpu.power >= t.power_cap_ratio * gpu.power_limit:
            causes.append(f"power {gpu.power:.0f} W of its {gpu.power_limit:.0f} W limit")
        if gpu.temperature is not None and gpu.temperature >= t.temperature_hot:
            causes.append(f"temperature {gpu.temperature:.0f} °C")
        if causes:
            confidence = 0.9 if active else 0.75
            return Bottleneck(
                "gpu-throttled",
                confidence,
                f"GPU {gpu.gpu_index} at {gpu.util:.0f}% is throttled: {'; '.join(causes)}",
            )
    return None


def _idle_held(window: Sequence[Reading], t: Thresholds) -> Bottleneck | None:
    """GPU memory held at ~0% utilization for at least idle_held_seconds."""
    newest = window[-1]
    span = [r for r in window if newest.at - r.at <= t.idle_held_seconds + t.smooth_seconds]
    if newest.at - span[0].at < t.idle_held_seconds:
        return None
    held_by_gpu: dict[int, GpuReading] = {}
    for gpu in newest.gpus:
        history = [g for r in span for g in r.gpus if g.gpu_index == gpu.gpu_index]
        if all((g.util or 0.0) < t.gpu_active and (g.memory_percent or 0.0) >= t.gpu_memory_held for g in history):
            held_by_gpu[gpu.gpu_index] = gpu
    if not held_by_gpu:
        return None
    held = sorted(held_by_gpu.values(), key=lambda g: -(g.memory_percent or 0.0))
    first, seconds = held[0], newest.at - span[0].at
    if len(held) == 1:
        what = f"GPU {first.gpu_index} holds {first.memory_percent or 0:.0f}% of its memory"
    else:
        what = f"{len(held)} GPUs hold memory (GPU {first.gpu_index}: {first.memory_percent or 0:.0f}%)"
    names = sorted({name for g in held for name in g.process_names})
    who = f" ({', '.join(names[:3])})" if names else ""
    return Bottleneck(
        "gpu-idle-held",
        _confidence(_margin(seconds, t.idle_held_seconds, 10 * t.idle_held_seconds)),
        f"{what} at {first.util or 0:.0f}% utilization for {seconds:.0f} s{who}",
    )
