"""The pure classifier: every label from hand-written readings, and each threshold's edge."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitoring.catalogue import LABELS, title_for
from monitoring.classify.classifier import (
    DEFAULT_THRESHOLDS as T,
)
from monitoring.classify.classifier import (
    GpuReading,
    Reading,
    classify,
)


def gpu(util=50.0, memory=60.0, index=0, **kw) -> GpuReading:
    return GpuReading(
        gpu_index=index, util=util, memory_percent=memory, power_w=200.0, power_limit_w=400.0, temperature_c=60.0, **kw
    )


def reading(at=100.0, *, cpu=40.0, iowait=2.0, memory=50.0, swap=0.0, disk=20.0, gpus=None) -> Reading:
    return Reading(
        at=at,
        cpu_usage=cpu,
        cpu_iowait=iowait,
        memory_percent=memory,
        swap_percent=swap,
        disk_util=disk,
        gpus=tuple((gpu(),) if gpus is None else gpus),
    )


def one(**kw):
    return classify([reading(**kw)])


def steady(seconds: float, step: float = 2.0, **kw) -> list[Reading]:
    """Identical readings every `step` seconds over `seconds`."""
    count = int(seconds / step) + 1
    return [reading(at=1000.0 + i * step, **kw) for i in range(count)]


def test_it_reports_gpu_bound_with_the_deciding_numbers():
    verdict = one(cpu=42.0, disk=64.0, gpus=[gpu(98.0)])
    assert verdict.label == "gpu-bound"
    assert verdict.title == "Gpu Bound"
    assert verdict.reason == "GPU 98% saturated while CPU 42% and disk 64% are lower"
    assert 0.6 <= verdict.confidence <= 1.0


@pytest.mark.parametrize(("util", "label"), [(T.gpu_busy, "gpu-bound"), (T.gpu_busy - 0.1, "balanced")])
def test_gpu_bound_starts_at_its_threshold(util, label):
    assert one(gpus=[gpu(util)]).label == label


def test_it_uses_the_busiest_gpu():
    assert one(gpus=[gpu(10.0, index=0), gpu(97.0, index=1)]).label == "gpu-bound"


def test_it_reports_cpu_bound_when_the_gpu_waits_on_the_cpu():
    verdict = one(cpu=97.0, gpus=[gpu(35.0)])
    assert verdict.label == "cpu-bound"
    assert "CPU is 97% busy" in verdict.reason and "GPU at 35%" in verdict.reason


@pytest.mark.parametrize(("feed", "said"), [(120e6, "120 MB/s"), (2.5e9, "2.5 GB/s"), (800.0, "800 B/s")])
def test_a_starved_gpu_names_its_pcie_feed(feed, said):
    verdict = one(cpu=97.0, gpus=[gpu(35.0, pcie_rx_bytes_per_s=feed)])
    assert verdict.label == "cpu-bound"
    assert verdict.reason == f"GPU at 35%, fed {said} from the host, while CPU is 97% busy"


@pytest.mark.parametrize(("cpu", "label"), [(T.cpu_busy, "cpu-bound"), (T.cpu_busy - 0.1, "balanced")])
def test_cpu_bound_starts_at_its_threshold(cpu, label):
    assert one(cpu=cpu, gpus=[gpu(30.0)]).label == label


def test_it_reports_io_bound_from_iowait():
    verdict = one(iowait=35.0, disk=50.0, gpus=[gpu(20.0)])
    assert verdict.label == "io-bound"
    assert "iowait 35%" in verdict.reason


@pytest.mark.parametrize(("disk", "label"), [(T.disk_busy, "io-bound"), (T.disk_busy - 0.1, "balanced")])
def test_io_bound_starts_at_the_disk_threshold(disk, label):
    assert one(disk=disk, gpus=[gpu(30.0)]).label == label


@pytest.mark.parametrize(("iowait", "label"), [(T.iowait_high, "io-bound"), (T.iowait_high - 0.1, "balanced")])
def test_io_bound_starts_at_the_iowait_threshold(iowait, label):
    assert one(iowait=iowait, gpus=[gpu(30.0)]).label == label


def test_it_reports_memory_bound_when_memory_is_full():
    verdict = one(memory=98.0, cpu=90.0, gpus=[gpu(30.0)])
    assert verdict.label == "memory-bound"  # ahead of cpu-bound: swapping slows everything
    assert "memory is 98% used" in verdict.reason


@pytest.mark.parametrize(
    ("memory", "swap", "label"),
    [
        (T.memory_high, 0.0, "memory-bound"),
        (T.memory_high - 0.1, 0.0, "balanced"),
        (T.memory_pressure, T.swap_high, "memory-bound"),
        (T.memory_pressure - 0.1, T.swap_high, "balanced"),
        (T.memory_pressure, T.swap_high - 0.1, "balanced"),
    ],
)
def test_memory_bound_thresholds(memory, swap, label):
    assert one(memory=memory, swap=swap, gpus=[gpu(30.0)]).label == label


def test_it_reports_a_power_capped_gpu_as_throttled():
    verdict = one(gpus=[GpuReading(0, util=99.0, memory_percent=80.0, power_w=399.0, power_limit_w=400.0)])
    assert verdict.label == "gpu-throttled"
    assert "power 399 W of its 400 W limit" in verdict.reason


def test_it_reports_nvml_throttle_reasons():
    verdict = one(gpus=[gpu(95.0, throttle_reasons=("hw_thermal_slowdown", "gpu_idle"))])
    assert verdict.label == "gpu-throttled"
    assert "hw_thermal_slowdown" in verdict.reason and "gpu_idle" not in verdict.reason
    assert verdict.confidence == 0.9


def test_a_harmless_throttle_reason_is_not_throttling():
    assert one(gpus=[gpu(95.0, throttle_reasons=("gpu_idle", "applications_clocks_setting"))]).label == "gpu-bound"


@pytest.mark.parametrize(
    ("ratio", "label"), [(T.power_cap_ratio, "gpu-throttled"), (T.power_cap_ratio - 0.01, "gpu-bound")]
)
def test_power_cap_threshold(ratio, label):
    g = GpuReading(0, util=95.0, memory_percent=80.0, power_w=400.0 * ratio, power_limit_w=400.0)
    assert one(gpus=[g]).label == label


def test_a_hot_gpu_is_throttled():
    g = GpuReading(0, util=92.0, memory_percent=80.0, temperature_c=T.temperature_hot)
    assert one(gpus=[g]).label == "gpu-throttled"


def test_an_idle_gpu_at_its_power_limit_is_not_throttled():
    g = GpuReading(0, util=T.gpu_starved - 1, memory_percent=80.0, power_w=400.0, power_limit_w=400.0)
    assert one(gpus=[g]).label != "gpu-throttled"


def test_it_reports_gpu_memory_held_while_idle_for_a_while():
    window = steady(
        T.idle_held_seconds,
        cpu=3.0,
        disk=1.0,
        gpus=[GpuReading(0, util=0.0, memory_percent=78.0, process_names=("python",))],
    )
    verdict = classify(window)
    assert verdict.label == "gpu-idle-held"
    assert verdict.reason == "GPU 0 holds 78% of its memory at 0% utilization for 30 s (python)"


def test_held_memory_is_not_reported_before_it_lasts():
    window = steady(T.idle_held_seconds - 2, cpu=3.0, disk=1.0, gpus=[GpuReading(0, util=0.0, memory_percent=78.0)])
    assert classify(window).label == "idle"


def test_one_busy_moment_resets_the_held_timer():
    window = steady(T.idle_held_seconds + 10, cpu=3.0, disk=1.0, gpus=[GpuReading(0, util=0.0, memory_percent=78.0)])
    window[-6] = reading(at=window[-6].at, cpu=3.0, disk=1.0, gpus=[GpuReading(0, util=60.0, memory_percent=78.0)])
    assert classify(window).label != "gpu-idle-held"


def test_it_reports_idle_when_nothing_is_busy():
    verdict = one(cpu=3.0, disk=1.0, gpus=[gpu(0.0, memory=0.0)])
    assert verdict.label == "idle"
    assert verdict.reason == "nothing is busy: GPU 0%, CPU 3%, disk 1%"


@pytest.mark.parametrize(("cpu", "label"), [(T.host_idle - 0.1, "idle"), (T.host_idle, "balanced")])
def test_idle_threshold(cpu, label):
    assert one(cpu=cpu, disk=0.0, gpus=[gpu(0.0, memory=0.0)]).label == label


def test_it_reports_balanced_when_nothing_is_saturated():
    verdict = one(cpu=40.0, disk=20.0, gpus=[gpu(80.0)])
    assert verdict.label == "balanced"
    assert "GPU 80%" in verdict.reason


def test_host_pressure_beside_a_fairly_busy_gpu_is_less_certain():
    starving = one(cpu=99.0, gpus=[gpu(30.0)])
    partial = one(cpu=99.0, gpus=[gpu(80.0)])
    assert starving.label == partial.label == "cpu-bound"
    assert partial.confidence < starving.confidence


@pytest.mark.parametrize(
    ("kw", "label"),
    [
        ({"cpu": 95.0}, "cpu-bound"),
        ({"iowait": 40.0}, "io-bound"),
        ({"memory": 97.0}, "memory-bound"),
        ({"cpu": 2.0, "disk": 1.0}, "idle"),
        ({"cpu": 50.0}, "balanced"),
    ],
)
def test_hosts_without_gpus_get_host_only_labels(kw, label):
    verdict = one(gpus=[], **kw)
    assert verdict.label == label
    assert "GPU" not in verdict.reason


def test_a_short_spike_does_not_flip_the_label():
    window = steady(8.0, cpu=40.0, gpus=[gpu(98.0)])
    window[-1] = reading(at=window[-1].at, cpu=40.0, gpus=[gpu(60.0)])
    assert classify(window).label == "gpu-bound"


def test_missing_numbers_do_not_break_it():
    verdict = classify([Reading(at=0.0, gpus=(GpuReading(0),))])
    assert verdict.label in LABELS


def test_confidence_grows_with_the_margin():
    assert one(gpus=[gpu(91.0)]).confidence < one(gpus=[gpu(100.0)]).confidence


def test_every_label_has_a_title():
    assert [title_for(label) for label in LABELS] == [
        "Gpu Bound",
        "Cpu Bound",
        "Io Bound",
        "Memory Bound",
        "Gpu Throttled",
        "Gpu Idle Held",
        "Idle",
        "Balanced",
    ]


def test_the_classifier_imports_nothing_from_django():
    # Imported alone, in a fresh interpreter: nothing it pulls in (the catalogue included) is Django.
    backend = Path(__file__).resolve().parent.parent / "backend"
    code = (
        "import sys; import monitoring.classify.classifier; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=backend, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
